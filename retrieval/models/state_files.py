"""Reading weights files safely, and loading a state_dict into a model, with errors that say what is wrong.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never other
pickled objects. Torch's own advice for a file it refuses (rerun with ``weights_only=False``) would run
whatever the file holds, so it is never passed on: the messages name the file and what is expected.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from ..text import plural

SHOWN_KEYS = 3  # key names quoted in a mismatch message, per kind


def read_weights_file(path: Path, what: str, expected: str) -> object:
    """The contents of the torch file ``path``, read with ``weights_only=True``.

    Args:
        what: the file's role, for messages (``"embedder weights file"``, ``"detector checkpoint"``).
        expected: what the file should be, for messages (``"a state_dict saved with ..."``).
    """
    if path.stat().st_size == 0:
        raise WeightsError(f"{what} {path} is empty (0 bytes); expected {expected}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (UnpicklingError, RuntimeError, KeyError, EOFError)
        found = re.search(r"GLOBAL (\S+)", str(error)) if isinstance(error, pickle.UnpicklingError) else None
        if found:
            raise WeightsError(
                f"{what} {path} holds a pickled Python object ({found.group(1)}), not only tensors, and is never "
                f"unpickled; expected {expected}"
            ) from None
        raise WeightsError(
            f"{what} {path} is not a PyTorch state_dict (it is corrupt, or in another format); expected {expected}"
        ) from None


def is_state_dict(value: object) -> bool:
    """True for a dict of names to tensors, what ``model.state_dict()`` gives."""
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def kind_of(value: object) -> str:
    """``"a list"``, ``"an int"``: what a file held, for messages."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def load_state_dict(model: nn.Module, state: dict, source: str, assign: bool = False) -> None:
    """Load ``state`` into ``model`` strictly; ``WeightsError`` starting with ``source`` (``"detector weights
    file X"``) that counts the missing, unexpected and mis-shaped keys and names the first few of each.

    ``assign``: the model's tensors become the state's (cast to the model's dtypes) instead of being copied
    into: for a model built on the meta device, whose tensors hold no data.
    """
    own = model.state_dict()
    shapes = [
        f"{key} {tuple(state[key].shape)} where the model has {tuple(tensor.shape)}"
        for key, tensor in own.items()
        if key in state and state[key].shape != tensor.shape
    ]
    if assign:
        state = {key: value.to(own[key].dtype) if key in own else value for key, value in state.items()}
    outcome = None if shapes else model.load_state_dict(state, strict=False, assign=assign)  # hooks adapt old keys
    parts = [
        _keys(outcome.missing_keys if outcome else [], "key", "missing"),
        _keys(outcome.unexpected_keys if outcome else [], "unexpected key", ""),
        _keys(shapes, "key", "of another shape"),
    ]
    parts = [part for part in parts if part]
    if parts:
        raise WeightsError(f"{source}: {'; '.join(parts)}")


def _keys(keys: list[str], noun: str, adjective: str) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:SHOWN_KEYS]) + (f", and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
    return f"{plural(len(keys), noun)}{' ' + adjective if adjective else ''} ({shown})"
