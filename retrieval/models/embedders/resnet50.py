"""resnet50: each box cropped from the original image and squashed to 224x224, ResNet50 trunk + GAP, 2048-d.

Preprocessing, per box: crop ``x1, y1, x2, y2`` (original pixels, widened to
whole pixels) from the RGB image, *squash* it to 224x224 (aspect ratio not
kept, so the whole box is seen and nothing is padded), scale to [0, 1],
normalise with the ImageNet mean and std, run the ResNet50 trunk and global
average pooling → 2048 values, then L2-normalise.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from ..accel.fused import fuse_convolutions
from ..accel.speed import fold_batchnorms, resolve_precision, to_inference_layout
from ..pooling import GAP
from ..registry import EmbedderEntry
from ..weights import load_weights, seeded_init

RESNET50_DIMENSION = 2048
CROP_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROPS_PER_FORWARD = 32


def crop_and_resize(image: np.ndarray, box: Sequence[float], size: int = CROP_SIZE) -> np.ndarray:
    """Crop ``box`` (original pixels, widened outward to whole pixels, at least 1x1) and squash to ``size`` x ``size``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        box: ``x1, y1, x2, y2`` in original pixels.
    Returns:
        ``(size, size, 3)`` uint8 RGB.
    """
    height, width = image.shape[:2]
    x1 = min(max(int(math.floor(box[0])), 0), width - 1)
    y1 = min(max(int(math.floor(box[1])), 0), height - 1)
    x2 = max(min(int(math.ceil(box[2])), width), x1 + 1)
    y2 = max(min(int(math.ceil(box[3])), height), y1 + 1)
    crop = image[y1:y2, x1:x2]
    shrinking = crop.shape[0] > size or crop.shape[1] > size
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class ResNet50Embedder:
    """ResNet50 (torchvision) trunk + global average pooling, for crops."""

    dimension = RESNET50_DIMENSION

    def __init__(self, weights: str, device: torch.device, precision: str = "auto") -> None:
        with seeded_init():
            model = resnet50(weights=None)
        self.identity = load_weights(model, weights, ResNet50_Weights.DEFAULT, "embedder")
        model.avgpool = GAP()
        model.fc = nn.Identity()  # pooled output, flattened: (N, 2048)
        self.dtype = resolve_precision(precision, device)
        fold_batchnorms(model.eval())
        if device.type == "cpu":
            fuse_convolutions(model)
        self.model = to_inference_layout(model, self.dtype).to(device)
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def embed(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``boxes[i]`` is ``(N_i, 4)`` in image i's original pixels → ``(N_i, 2048)`` unit rows."""
        crops = [
            crop_and_resize(image, box)
            for image, image_boxes in zip(images, boxes)
            for box in np.reshape(image_boxes, (-1, 4))
        ]
        counts = [int(np.reshape(b, (-1, 4)).shape[0]) for b in boxes]
        if not crops:
            return [np.zeros((0, self.dimension), dtype=np.float32) for _ in boxes]
        vectors = np.concatenate(
            [
                self._forward(crops[start : start + CROPS_PER_FORWARD])
                for start in range(0, len(crops), CROPS_PER_FORWARD)
            ]
        )
        return list(np.split(vectors, np.cumsum(counts)[:-1]))

    def _forward(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(B, 224, 224, 3)`` uint8 crops → ``(B, 2048)`` float32 unit rows."""
        batch = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        batch = ((batch - self.mean) / self.std).to(self.dtype).contiguous(memory_format=torch.channels_last)
        return F.normalize(self.model(batch).float(), dim=1).cpu().numpy()


ENTRY = EmbedderEntry(
    build=lambda settings, device, detector: ResNet50Embedder(settings.weights, device, settings.precision),
    summary="2048-d ResNet50 GAP vector of each crop",
)
