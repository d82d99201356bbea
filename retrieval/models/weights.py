"""Model weights: ``default`` (torchvision's), a state_dict file, or seeded ``random``.

Every weights choice has an *identity*, a JSON-ready dict recorded in the index
manifest, so that a query can check it uses the same model that made the
vectors:

- ``{"source": "default", "name": "FasterRCNN_ResNet50_FPN_Weights.COCO_V1", "file": ..., "sha256": ...}``
- ``{"source": "file", "path": "/abs/weights.pth", "sha256": ...}``
- ``{"source": "random", "seed": 0, "state_sha256": ...}`` (hash of the initialised tensors)

Weights are never unpickled: files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum

from ..errors import WeightsError
from .state_files import is_state_dict, kind_of, load_state_dict, read_weights_file

log = logging.getLogger(__name__)

RANDOM_SEED = 0
STATE_DICT_EXPECTED = "a state_dict saved with torch.save(model.state_dict())"


def weights_cache_dir() -> Path:
    """The folder where torchvision keeps downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@contextlib.contextmanager
def seeded_init(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Build models inside this block to get the same random initialisation every time.

    The global torch RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ReadWeights:
    """Weights read from their file (``state``, a state_dict) or ``random`` (``state`` None), before any model
    is built, so that a missing or bad file is refused first; ``apply_weights`` loads them into the model."""

    what: str  # what they are for, for messages ("detector", "embedder")
    identity: dict  # without "state_sha256" for random ones: that needs the model
    state: dict | None = None
    path: Path | None = None


def read_weights(spec: str, default: WeightsEnum, what: str) -> ReadWeights:
    """``spec`` (``"default"``, ``"random"`` or a path to a state_dict file) read and checked.

    Args:
        default: the torchvision weights enum used for ``"default"``.
        what: what the weights are for, for messages (``"detector"``, ``"embedder"``).
    """
    if spec == "random":
        return ReadWeights(what, {"source": "random", "seed": RANDOM_SEED})
    if not str(spec).strip():
        raise WeightsError(f"no {what} weights given (an empty value): pass 'default', 'random' or a state_dict file")
    if spec == "default":
        path = default_weights_file(default)
        identity = {"source": "default", "name": str(default), "file": path.name}
    else:
        path = Path(spec).expanduser().absolute()
        if not path.is_file():
            raise WeightsError(
                f"{what} weights file {path} not found: pass an existing state_dict file, 'default' or 'random'"
            )
        identity = {"source": "file", "path": str(path)}
    state = _read_state_dict_file(path, what)
    return ReadWeights(what, identity | {"sha256": file_sha256(path)}, state, path)


def apply_weights(model: nn.Module, weights: ReadWeights) -> dict:
    """Load ``weights`` into ``model`` (built inside ``seeded_init``) and return their identity."""
    if weights.state is None:
        log.warning(
            "%s uses random weights (seed %d): results are not meaningful beyond tests", weights.what, RANDOM_SEED
        )
        return weights.identity | {"state_sha256": state_fingerprint(model)}
    source = f"{weights.what} weights file {weights.path}"
    load_state_dict(model, weights.state, f"{source} does not fit the {weights.what} architecture")
    return weights.identity


def load_weights(model: nn.Module, spec: str, default: WeightsEnum, what: str) -> dict:
    """``read_weights`` then ``apply_weights``: load ``spec`` into ``model`` and return its identity."""
    return apply_weights(model, read_weights(spec, default, what))


def default_weights_file(weights: WeightsEnum) -> Path:
    """The local file of torchvision ``weights``, downloaded into the torch cache on first use."""
    url = weights.url
    filename = os.path.basename(urlparse(url).path)
    cached = weights_cache_dir() / filename
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, cached)
    match = re.search(r"-([a-f0-9]*)\.", filename)
    try:
        torch.hub.download_url_to_file(url, str(cached), match.group(1) if match else None, progress=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        reason = getattr(error, "reason", None) or error
        raise WeightsError(
            f"could not download {filename} ({reason}); put that file (from {url}) in {cached.parent}/, "
            "or pass a weights file path, or 'random' for a smoke run"
        ) from None
    return cached


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_fingerprint(model: nn.Module) -> str:
    """Hex sha256 over every tensor of ``model.state_dict()`` (names and bytes, in order)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_state_dict_file(path: Path, what: str) -> dict:
    source = f"{what} weights file"
    state = read_weights_file(path, source, STATE_DICT_EXPECTED)
    if not is_state_dict(state):
        raise WeightsError(
            f"{source} {path} holds {kind_of(state)}, not a state_dict (a dict of tensor names to "
            f"tensors); expected {STATE_DICT_EXPECTED}"
        )
    return state
