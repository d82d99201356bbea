"""The detector's input batch, as torchvision's ``GeneralizedRCNNTransform`` makes it in eval mode, in fewer
passes over the pixels; and the RPN's anchors, computed once per input size.

torchvision scales a float image to [0, 1], normalises it (``(x - mean) / std``) at full size, resizes it
(bilinear, ``scale = min(min_size / short side, max_size / long side)``) and pads the batch to a multiple of
32. Bilinear resizing is a weighted mean of neighbours (weights summing to one), so it commutes with that
per-channel affine map: here the uint8 image is resized first and then mapped in one pass, on the resized
pixels only, straight into the padded batch in the model's dtype and channels-last memory. The same sizes
and, up to fp32 rounding, the same values (a test compares).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform, _resize_image_and_masks


def input_batch(images: list[torch.Tensor], transform: GeneralizedRCNNTransform, dtype: torch.dtype) -> ImageList:
    """``images``: ``(H_i, W_i, 3)`` uint8 RGB tensors on the model's device. Returns the batch torchvision's
    ``transform`` would make of them scaled to [0, 1]: ``(N, 3, H, W)`` in ``dtype``, channels-last, each
    image resized to ``image_sizes[i]`` and zero-padded at the bottom and right to a multiple of
    ``transform.size_divisible``."""
    mean = torch.as_tensor(transform.image_mean, dtype=torch.float32, device=images[0].device)
    std = torch.as_tensor(transform.image_std, dtype=torch.float32, device=images[0].device)
    scale, shift = (1.0 / (255.0 * std)).view(3, 1, 1), (-mean / std).view(3, 1, 1)
    resized = [
        _resize_image_and_masks(image.permute(2, 0, 1).float(), transform.min_size[-1], transform.max_size)[0]
        for image in images
    ]
    stride = transform.size_divisible
    height = math.ceil(max(image.shape[1] for image in resized) / stride) * stride
    width = math.ceil(max(image.shape[2] for image in resized) / stride) * stride
    batch = resized[0].new_zeros((len(images), 3, height, width), dtype=dtype)
    batch = batch.contiguous(memory_format=torch.channels_last)
    for slot, image in zip(batch, resized):
        slot[:, : image.shape[1], : image.shape[2]] = torch.addcmul(shift, image, scale)
    return ImageList(batch, [(int(image.shape[1]), int(image.shape[2])) for image in resized])


class CachedAnchors(nn.Module):
    """An ``AnchorGenerator`` that remembers its anchors for the last input size: a video's frames all have
    the same one. Anchors depend only on the batch's padded size and the feature maps' sizes (not on the
    pixels, nor on each image's own size), so a remembered set is exactly what the generator would give.
    They are always made in fp32: the generator makes them in the features' dtype, and bf16 has steps of 2
    pixels at 256 and beyond."""

    def __init__(self, generator: AnchorGenerator) -> None:
        super().__init__()
        self.generator = generator
        self._key: tuple | None = None
        self._anchors: torch.Tensor | None = None

    def num_anchors_per_location(self) -> list[int]:
        return self.generator.num_anchors_per_location()

    def forward(self, images: ImageList, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per image, ``(A, 4)`` anchors in the batch frame, as ``AnchorGenerator.forward``."""
        key = (tuple(images.tensors.shape[-2:]), tuple(tuple(f.shape[-2:]) for f in features))
        if key != self._key:
            shapes = [torch.empty((1, 1, *f.shape[-2:]), device=f.device) for f in features]  # fp32 stand-ins
            self._anchors, self._key = self.generator(images, shapes)[0], key
        return [self._anchors] * len(images.image_sizes)
