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
import json
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

from ..atomic import atomic_write_text
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

    @property
    def misfit(self) -> str:
        """How a load that does not fit starts its message."""
        return f"{self.what} weights file {self.path} does not fit the {self.what} architecture"


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
        random_weights_warning(weights)
        return weights.identity | {"state_sha256": state_fingerprint(model)}
    load_state_dict(model, weights.state, weights.misfit)
    return weights.identity


def random_weights_warning(weights: ReadWeights) -> None:
    """Log that ``weights`` (random ones) make results meaningless beyond tests."""
    log.warning("%s uses random weights (seed %d): results are not meaningful beyond tests", weights.what, RANDOM_SEED)


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
    """Hex sha256 of a file, read in 1 MiB chunks; remembered in the cache folder (``cache_dir()``) under the
    file's path, size, inode and modification and change times, so that an unchanged weights file is hashed
    once rather than at every start (a write to the file changes its change time)."""
    path = Path(path).absolute()
    stat = path.stat()
    key = json.dumps([str(path), stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns])
    remembered = cache_dir() / "file-sha256" / hashlib.sha256(key.encode()).hexdigest()
    try:
        known = remembered.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        known = ""
    if re.fullmatch(r"[0-9a-f]{64}", known):
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    try:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(remembered, digest.hexdigest())
    except OSError as error:
        log.debug("sha256 of %s not remembered at %s: %s", path, remembered, error)
    return digest.hexdigest()


def cache_dir() -> Path:
    """This project's cache folder: ``$RETRIEVAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/retrieval``, else
    ``~/.cache/retrieval``."""
    if os.environ.get("RETRIEVAL_CACHE_DIR"):
        return Path(os.environ["RETRIEVAL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "retrieval"


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
