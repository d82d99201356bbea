"""The crop and pooling options of a crop embedder, as one light dataclass (no torch import): the settings take
their defaults from it, and ``CropEmbedder`` reads them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class CropOptions:
    """The crop and pooling settings (``IndexSettings``' fields of the same names; see there)."""

    pooling: str = "auto"
    gem_p: float = 3.0
    scales: tuple[float, ...] = (1.0,)
    crop: str = "squash"
    margin: float = 0.0
    input_size: int = 0

    @classmethod
    def of(cls, settings) -> "CropOptions":
        """The options of ``settings`` (an ``IndexSettings``, or anything with these attributes)."""
        values = {field.name: getattr(settings, field.name) for field in dataclasses.fields(cls)}
        return cls(**{**values, "scales": tuple(values["scales"])})


CROP_DEFAULTS = CropOptions()
