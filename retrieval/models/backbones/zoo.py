"""A model zoo's trunk (``torchvision:NAME``, ``timm:NAME``) as a crop embedder, with its crop sides checked."""

from __future__ import annotations

import torch

from ...errors import SettingsError
from ..crop_embedder import CropEmbedder, CropOptions, Trunk, crop_sides


def zoo_embedder(trunk: Trunk, settings, device: torch.device, label: str) -> CropEmbedder:
    """``trunk`` with the settings' crop, pooling and precision; ``label`` (``torchvision:vit_b_16``) names it
    in messages."""
    options = CropOptions.of(settings)
    check_crop_sides(trunk, options, label)
    return CropEmbedder(trunk, options, device, settings.precision)


def check_crop_sides(trunk: Trunk, options: CropOptions, label: str) -> None:
    """Refuse crop sides the trunk cannot take (ViTs and MaxViT take only the side they were built for).

    Each side other than the trunk's own is tried once on a ``(1, 3, side, side)`` zero input.
    """
    sides = crop_sides(options.input_size or trunk.input_size, options.scales, trunk.patch_size)
    for side in sorted(set(sides) - {trunk.input_size}):
        try:
            with torch.inference_mode():
                trunk.module.eval()(torch.zeros(1, 3, side, side))
        except (AssertionError, RuntimeError):  # the model's own check or a shape mismatch inside it
            raise SettingsError(
                f"{label} cannot take {side}x{side} crops: use --input-size 0 (its own {trunk.input_size}) "
                "and --scales 1"
            ) from None


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none), for one-line messages."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
