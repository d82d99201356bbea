"""The crop embedder every backbone shares: boxes → square crops → trunk → pooling → unit vectors.

A backbone (ResNet50, EfficientNet-Lite, any torchvision, torch.hub or timm model) only provides a
``Trunk``: the network without its classifier and how its input must look. This module does the rest, the
same way for all of them:

1. each box grows by the context ``margin`` and becomes a ``input_size`` x ``input_size`` crop, ``squash``ed
   or ``pad``ded (``models/crops.py``);
2. the crops are scaled to [0, 1] and normalised with the trunk's mean and std;
3. the trunk gives a feature map ``(B, C, h, w)``, tokens ``(B, T, C)`` (``prefix_tokens`` of them first,
   the CLS token at 0) or its own pooled vector ``(B, C)``;
4. pooling (``models/pooling.py``): GAP, GeM or MAC over the map or the patch tokens, or the CLS token /
   the model's own vector; then L2 normalisation;
5. with several ``scales`` the unit vectors of each scale are averaged and re-normalised (multi-scale
   descriptors as in cnnimageretrieval-pytorch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SettingsError
from .accel.fused import fuse_convolutions
from .accel.memory import keep_freed_memory
from .accel.speed import fold_batchnorms, resolve_precision, to_inference_layout
from .crop_options import CropOptions
from .crops import crop_box
from .pooling import gap, gem, mac

CROPS_PER_FORWARD = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUTS = ("map", "tokens", "vector")


@dataclass
class Trunk:
    """A backbone without its classifier, and the input it wants.

    Attributes:
        module: ``(B, 3, S, S)`` normalised float input → the ``output`` kind of features.
        output: ``map`` ``(B, C, h, w)``, ``tokens`` ``(B, T, C)`` or ``vector`` ``(B, C)``.
        dimension: ``C``.
        input_size: the side it was trained at (the default crop side).
        mean, std: per-channel normalisation of [0, 1] RGB.
        patch_size: input sides must be multiples of this (14 for DINOv2's ViTs; 1 for CNNs).
        prefix_tokens: for ``tokens``: how many non-patch tokens come first (CLS, registers).
        identity: the weights' identity (recorded in the manifest).
        natural_pooling: what ``pooling="auto"`` means for this trunk.
    """

    module: nn.Module
    output: str
    dimension: int
    identity: dict
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    patch_size: int = 1
    prefix_tokens: int = 1
    natural_pooling: str = field(default="")

    def __post_init__(self) -> None:
        if not self.natural_pooling:
            self.natural_pooling = "gap" if self.output == "map" else "cls"


class CropEmbedder:
    """Embeds boxes by cropping them and running a ``Trunk``; see the module docstring for the steps."""

    def __init__(self, trunk: Trunk, options: CropOptions, device: torch.device, precision: str = "auto") -> None:
        self.dimension = trunk.dimension
        self.identity = trunk.identity
        self.pooling = check_pooling(options.pooling, trunk)
        self.options = options
        self.sides = crop_sides(options.input_size or trunk.input_size, options.scales, trunk.patch_size)
        self.prefix_tokens = trunk.prefix_tokens
        self.output = trunk.output
        self.fill = tuple(round(255 * m) for m in trunk.mean)  # padding: the mean, zero after normalising
        self.dtype = resolve_precision(precision, device)
        module = fold_batchnorms(trunk.module.eval())
        if device.type == "cpu":
            keep_freed_memory()
            fuse_convolutions(module)
        self.model = to_inference_layout(module, self.dtype).to(device)
        self.device = device
        self.mean = torch.tensor(trunk.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(trunk.std, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def embed(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``boxes[i]`` is ``(N_i, 4)`` in image i's original pixels → ``(N_i, dimension)`` float32 unit rows."""
        pairs = [(image, box) for image, image_boxes in zip(images, boxes) for box in np.reshape(image_boxes, (-1, 4))]
        counts = [int(np.reshape(b, (-1, 4)).shape[0]) for b in boxes]
        if not pairs:
            return [np.zeros((0, self.dimension), dtype=np.float32) for _ in boxes]
        total = sum(self._embed_at(pairs, side) for side in self.sides)
        vectors = F.normalize(total, dim=1).numpy() if len(self.sides) > 1 else total.numpy()
        return list(np.split(vectors, np.cumsum(counts)[:-1]))

    def _embed_at(self, pairs: list, side: int) -> torch.Tensor:
        """``(N, dimension)`` float32 unit vectors of every (image, box) pair at crop side ``side``."""
        options = self.options
        chunks = []
        for start in range(0, len(pairs), CROPS_PER_FORWARD):
            crops = [
                crop_box(image, box, side, options.crop, options.margin, self.fill)
                for image, box in pairs[start : start + CROPS_PER_FORWARD]
            ]
            chunks.append(self._forward(crops))
        return torch.cat(chunks)

    def _forward(self, crops: list[np.ndarray]) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 crops → ``(B, dimension)`` float32 unit rows (on the CPU)."""
        batch = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        batch = ((batch - self.mean) / self.std).to(self.dtype).contiguous(memory_format=torch.channels_last)
        features = self.model(batch)
        return F.normalize(self._pool(features.float()), dim=1).cpu()

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk output → ``(B, C)``."""
        if self.output == "vector":
            return features
        if self.output == "tokens":
            if self.pooling == "cls":
                return features[:, 0]
            patches = features[:, self.prefix_tokens :]  # (B, P, C) → a (B, C, P, 1) map
            features = patches.transpose(1, 2).unsqueeze(-1)
        pooled = {"gap": gap, "mac": mac}.get(self.pooling)
        pooled = pooled(features) if pooled else gem(features, self.options.gem_p)
        return pooled.flatten(1)


def check_pooling(pooling: str, trunk: Trunk) -> str:
    """``pooling`` resolved (``auto`` → the trunk's natural one) and checked against the trunk's output."""
    chosen = trunk.natural_pooling if pooling == "auto" else pooling
    if trunk.output == "vector" and chosen != "cls":
        raise SettingsError(
            f"--pooling {pooling}: this model gives its own pooled vector, not a feature map; use --pooling auto"
        )
    if trunk.output == "map" and chosen == "cls":
        raise SettingsError("--pooling cls needs a transformer's CLS token; this model gives a feature map")
    return chosen


def crop_sides(input_size: int, scales: Sequence[float], patch_size: int = 1) -> list[int]:
    """The crop side of each scale: ``input_size * scale`` rounded to a multiple of ``patch_size``.

    ``input_size`` itself must be such a multiple (ViTs with patch 14 take 224 = 16 x 14, not 200).
    """
    if input_size % patch_size:
        lower = input_size // patch_size * patch_size
        raise SettingsError(
            f"--input-size {input_size} is not a multiple of the model's patch size {patch_size}: "
            f"use {lower} or {lower + patch_size}"
        )
    return [max(patch_size, round(input_size * scale / patch_size) * patch_size) for scale in scales]
