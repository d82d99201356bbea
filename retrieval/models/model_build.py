"""Building a model with its weights without initialising tensors that are about to be replaced.

- Weights from a file (``default`` or a path): the model is built on the meta device (no memory, no
  random init: about 0.8 s less for the Faster R-CNN on 2 cores) and takes the file's tensors.
- ``random`` weights: the seeded init *is* the weights, and it depends only on the architecture, the seed and
  the torch and torchvision versions (their init code). The first build saves the tensors with their
  fingerprint in the cache folder, in a file named by those; later builds make the model on the meta
  device and take that file's tensors, skipping the init and the fingerprint (about 1 s together).

Cache folder: ``weights.cache_dir()`` (``$RETRIEVAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/retrieval``, else
``~/.cache/retrieval``); random weights live in its ``seeded-weights/`` (about 170 MB for the Faster R-CNN,
100 MB for ResNet50). A cache file that cannot be read is made again; a folder that cannot be written is passed over.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from ..atomic import atomic_write
from .state_files import load_state_dict
from .weights import (
    RANDOM_SEED,
    ReadWeights,
    apply_weights,
    cache_dir,
    random_weights_warning,
    seeded_init,
    state_fingerprint,
)

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def build_with_weights(build: Callable[[], nn.Module], weights: ReadWeights, name: str) -> tuple[nn.Module, dict]:
    """``(model, identity)``: ``build()`` with ``weights`` loaded, as ``apply_weights`` gives after a seeded
    build, without the init work. ``name`` names the architecture for the seeded cache (``"resnet50_fpn"``)."""
    if weights.state is None:
        model, fingerprint = seeded_model(build, name)
        random_weights_warning(weights)
        return model, weights.identity | {"state_sha256": fingerprint}
    model = _empty(build)
    load_state_dict(model, weights.state, weights.misfit, assign=True)
    if _holds_meta_tensors(model):  # a buffer the state_dict does not carry: build it the usual way
        with seeded_init():
            model = build()
        return model, apply_weights(model, weights)
    return model, weights.identity


def seeded_model(build: Callable[[], nn.Module], name: str) -> tuple[nn.Module, str]:
    """``(model, fingerprint)`` of ``build()`` inside ``seeded_init``, from the cache when it holds it."""
    path = seeded_cache_path(name)
    cached = _from_cache(build, path)
    if cached is not None:
        return cached
    with seeded_init():
        model = build()
    fingerprint = state_fingerprint(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"state": model.state_dict(), "fingerprint": fingerprint}
        atomic_write(path, lambda temp: torch.save(payload, temp))
    except OSError as error:
        log.debug("seeded weights not cached at %s: %s", path, error)
    return model, fingerprint


def seeded_cache_path(name: str) -> Path:
    """The cache file of ``name``'s seeded weights: named by the architecture and a hash of the seed, the
    torch and torchvision versions and this cache's format."""
    key = json.dumps([name, RANDOM_SEED, torch.__version__, torchvision.__version__, CACHE_FORMAT])
    return cache_dir() / "seeded-weights" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _from_cache(build: Callable[[], nn.Module], path: Path) -> tuple[nn.Module, str] | None:
    """The model on the meta device with the cached tensors assigned, or None when there is no usable file."""
    try:
        if not path.is_file():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = _empty(build)
        model.load_state_dict(payload["state"], strict=True, assign=True)
        fingerprint = str(payload["fingerprint"])
    except Exception as error:  # a torn or foreign file: torch raises many types; make it again
        log.debug("seeded weights cache %s not used: %s", path, error)
        return None
    return None if _holds_meta_tensors(model) else (model, fingerprint)


def _empty(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` on the meta device with ``torch.nn.init``'s functions doing nothing: shapes without data.

    Skipping the init is not only cheaper: initialising meta tensors runs torch's reference ops, whose first
    use imports TorchDynamo (seconds)."""
    names = [name for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(nn.init, name) for name in names}
    try:
        for name in names:
            setattr(nn.init, name, _leave)
        with torch.device("meta"):
            return build()
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _leave(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def _holds_meta_tensors(model: nn.Module) -> bool:
    return any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers()))
