"""A torch.hub model (DINOv2's ``dinov2_vits14``, …) as a crop embedder's trunk.

Where the code comes from is ``hub_repo.py``. Weights:

- ``default``: the entrypoint called as it is; its own download goes through torch's cache
  (``torch.hub.get_dir()/checkpoints``) and works offline once the file is there. A failed download is one
  ``WeightsError`` naming the file and where to put it.
- a state_dict ``PATH`` or ``random``: the entrypoint called with ``pretrained=False`` when it takes that
  keyword (DINOv2's download even from a local checkout otherwise, dinov2 #91), inside ``seeded_init``; then
  the file is loaded into it (``models/weights.py``).

Output: with ``--pooling auto``/``cls`` the model's own output (DINOv2's ``forward``: the CLS token after the
last norm, a ``vector`` trunk; a ``(B, C, h, w)`` map for a CNN); with ``gap``/``gem``/``mac`` the patch tokens
of ``forward_features(x)["x_norm_patchtokens"]`` when the model has them (a ``tokens`` trunk, the CLS token
first), else its map. Input sides must be multiples of the model's ``patch_size`` (14 for DINOv2).

The identity names the repo (or local path), the ref (or the checkout's git commit), the sha256 of its
hubconf.py, the entrypoint, the weights and a sha256 of every loaded tensor (``state_sha256``).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Callable, Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from ...errors import SettingsError, WeightsError
from ..crop_embedder import CropOptions, Trunk, crop_sides
from ..weights import apply_weights, file_sha256, read_weights, seeded_init, state_fingerprint, weights_cache_dir
from .hub_repo import HUBCONF, checkout, entrypoint, on_sys_path, parse_hub_name

DEFAULT_INPUT_SIZE = 224  # 16 patches of 14 for DINOv2
PATCH_POOLINGS = ("gap", "gem", "mac")
_KINDS = {2: "vector", 3: "tokens", 4: "map"}  # trunk output by the number of dimensions


class PatchTokens(nn.Module):
    """``(B, 3, S, S)`` → ``(B, 1 + P, C)``: a DINOv2-style model's normalised CLS token, then its patch tokens."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)
        return torch.cat([features["x_norm_clstoken"].unsqueeze(1), features["x_norm_patchtokens"]], dim=1)


def build_hub_trunk(embedder: str, weights: str, options: CropOptions) -> Trunk:
    """The trunk of ``embedder`` (``hub:REPO:MODEL``) with ``weights`` (``default``, a state_dict path or
    ``random``), its output chosen by ``options.pooling`` and probed at ``options.input_size`` (0: 224)."""
    name = parse_hub_name(embedder)
    read = None if weights == "default" else read_weights(weights, None, "embedder")
    folder, ref = checkout(name)
    entry = entrypoint(folder, name, embedder)
    with on_sys_path(folder):
        model = call_entrypoint(entry, embedder, pretrained=read is None)
    weights_identity = apply_weights(model, read) if read else {"source": "default", "name": embedder}
    identity = {
        "repo": name.repo,
        "ref": ref,
        "hubconf_sha256": file_sha256(folder / HUBCONF),
        "model": name.model,
        **weights_identity,
        "state_sha256": state_fingerprint(model),
    }
    model.eval()
    patch_size = patch_size_of(model, embedder)
    side = options.input_size or DEFAULT_INPUT_SIZE
    crop_sides(side, options.scales, patch_size)  # a side the model refuses, refused before the probe
    module, output, dimension = probe_output(model, options.pooling, side, embedder)
    return Trunk(module, output, dimension, identity, input_size=DEFAULT_INPUT_SIZE, patch_size=patch_size)


def call_entrypoint(entry: Callable, label: str, pretrained: bool) -> nn.Module:
    """``entry()``, with ``pretrained=False`` when not ``pretrained`` and it takes that keyword, in
    ``seeded_init``; a failed weights download is a ``WeightsError`` naming the file and where it goes."""
    takes = "pretrained" in inspect.signature(entry).parameters
    with seeded_init(), recorded_downloads() as urls:
        try:
            model = entry(**({} if pretrained or not takes else {"pretrained": False}))
        except (OSError, RuntimeError) as error:  # URLError, HTTPError, socket errors; a bad hash
            if not urls and not isinstance(error, OSError):
                raise
            raise WeightsError(download_failure(label, urls, error)) from None
    if not isinstance(model, nn.Module):
        raise SettingsError(f"--embedder {label}: the entrypoint gave {type(model).__name__}, not a torch model")
    return model


@contextlib.contextmanager
def recorded_downloads() -> Iterator[list[str]]:
    """Inside the block, the URLs ``torch.hub.download_url_to_file`` is asked for (what
    ``load_state_dict_from_url`` calls on a cache miss) are appended to the yielded list; the function is
    swapped for a recording one meanwhile (module-wide, so models are built one at a time)."""
    urls: list[str] = []
    original = torch.hub.download_url_to_file

    def recording(url, *args, **kwargs):
        urls.append(url)
        return original(url, *args, **kwargs)

    torch.hub.download_url_to_file = recording
    try:
        yield urls
    finally:
        torch.hub.download_url_to_file = original


def download_failure(label: str, urls: list[str], error: Exception) -> str:
    """The one line for a hub model whose pretrained weights could not be had."""
    reason = getattr(error, "reason", None) or error
    instead = "or pass --weights PATH (a state_dict file), or random for a smoke run"
    if not urls:
        return f"{label}: loading its pretrained weights failed ({reason}); {instead}"
    filename = os.path.basename(urlparse(urls[-1]).path)
    return (
        f"{label}: could not download its weights {filename} ({reason}); put that file (from {urls[-1]}) "
        f"in {weights_cache_dir()}/, {instead}"
    )


def patch_size_of(model: nn.Module, label: str) -> int:
    """The model's ``patch_size`` attribute (an int or an ``(h, w)`` pair of equal ints), 1 without one."""
    size = getattr(model, "patch_size", 1)
    sides = {int(side) for side in size} if isinstance(size, (tuple, list)) else {int(size)}
    if len(sides) != 1 or min(sides) < 1:
        raise SettingsError(f"--embedder {label}: patch size {size!r} is not one side of square patches")
    return sides.pop()


@torch.inference_mode()
def probe_output(model: nn.Module, pooling: str, side: int, label: str) -> tuple[nn.Module, str, int]:
    """``(module, output kind, dimension)`` of the trunk, found by running ``model`` on one ``side`` x ``side``
    zero image: ``PatchTokens(model)`` for a patch pooling of a model with ``x_norm_patchtokens``, else
    ``model`` itself, its kind read from its output's dimensions (``(B, C)``, ``(B, T, C)``, ``(B, C, h, w)``)."""
    probe = torch.zeros(1, 3, side, side)
    if pooling in PATCH_POOLINGS and callable(getattr(model, "forward_features", None)):
        features = model.forward_features(probe)
        if isinstance(features, dict) and "x_norm_patchtokens" in features:
            return PatchTokens(model), "tokens", int(features["x_norm_patchtokens"].shape[-1])
    output = model(probe)
    kind = _KINDS.get(output.ndim) if isinstance(output, torch.Tensor) else None
    if kind is None:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise SettingsError(
            f"--embedder {label}: the model gives {shape}, not a (B, C) vector, (B, T, C) tokens or a (B, C, h, w) map"
        )
    return model, kind, int(output.shape[-1] if kind == "tokens" else output.shape[1])
