"""Fine-tuned detector checkpoints (``retrieval train-detector``): one file holding everything needed to
rebuild the detector, readable with ``torch.load(weights_only=True)`` (tensors and plain containers only).

Contents: ``format``, ``detector`` (an architecture name), ``classes`` (the dataset's class names; model
class ``i + 1`` is ``classes[i]``, 0 is background), ``min_size``/``max_size``, ``model`` (its
``state_dict``), ``epoch``, ``metrics`` (validation figures of that epoch), ``settings`` (the training
options), and in the last checkpoint of a run ``optimizer`` and ``scheduler`` states for ``--resume``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.detection import FasterRCNN

from ...atomic import atomic_write
from ...errors import WeightsError
from ..state_files import is_state_dict, kind_of, load_state_dict, read_weights_file
from .architectures import DETECTOR_NAMES, build_architecture

FORMAT = "retrieval-detector/1"
CHECKPOINT_EXPECTED = "a checkpoint written by 'retrieval train-detector' (--detector takes one)"


def save_checkpoint(path: Path, model: FasterRCNN, detector: str, classes: list[str], **extra) -> None:
    """Write ``model`` and what rebuilds it to ``path`` atomically; ``extra`` adds plain values or state dicts."""
    transform = model.transform
    payload = {
        "format": FORMAT,
        "detector": detector,
        "classes": list(classes),
        "min_size": int(transform.min_size[-1]),
        "max_size": int(transform.max_size),
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        **extra,
    }
    atomic_write(Path(path), lambda temp: torch.save(payload, temp))


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, checked; ``WeightsError`` naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"detector checkpoint {path} not found: give a file written by 'retrieval train-detector'")
    payload = read_weights_file(path, "detector checkpoint", CHECKPOINT_EXPECTED)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if is_state_dict(payload):
            raise WeightsError(
                f"{path} is a plain state_dict, not a detector checkpoint of 'retrieval train-detector': "
                "give it as --detector-weights (with --detector one of the architecture names)"
            )
        raise WeightsError(
            f"detector checkpoint {path} holds {kind_of(payload)} that is not a checkpoint (format {FORMAT}); "
            f"expected {CHECKPOINT_EXPECTED}"
        )
    if payload.get("detector") not in DETECTOR_NAMES or not payload.get("classes"):
        raise WeightsError(f"detector checkpoint {path} names no known detector or no classes; it is damaged")
    return payload


def model_from_checkpoint(payload: dict, path: str | Path, min_size: int | None = None, max_size: int | None = None):
    """The detector a checkpoint describes, its weights loaded (input size: the given one, else the checkpoint's)."""
    model = build_architecture(
        payload["detector"],
        num_classes=len(payload["classes"]) + 1,
        min_size=min_size or payload["min_size"],
        max_size=max_size or payload["max_size"],
    )
    if not is_state_dict(payload.get("model")):
        raise WeightsError(f"detector checkpoint {path} holds no model state_dict; it is damaged")
    load_state_dict(model, payload["model"], f"detector checkpoint {path} does not fit its own architecture")
    return model
