"""The FPN's top-down pathway with the upsampled coarser map added in place, in one pass over memory.

torchvision's ``FeaturePyramidNetwork`` makes each finer level as ``lateral + interpolate(top, "nearest")``:
the upsampled copy of ``top`` is a new full-size map (28 MB at 200x272x256 in bf16), then the sum is another.
Where ``lateral`` is exactly twice ``top``'s height and width (always, for inputs padded to a multiple of 32
as the detector's transform pads them), nearest upsampling repeats each pixel of ``top`` in a 2x2 block, so
adding ``top`` broadcast over a ``(h, 2, w, 2)`` view of ``lateral`` gives the same numbers, in place, with
no upsampled copy. Other sizes go torchvision's way. A test checks the outputs are equal to torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork


class InPlaceTopDownFPN(nn.Module):
    """``fpn`` (torchvision's ``FeaturePyramidNetwork``, its own blocks) with the in-place top-down sum.

    ``forward(x)``: ``x`` an ordered dict of ``(N, C_i, H_i, W_i)`` maps, finest first → the same dict of FPN
    outputs as ``fpn(x)``.
    """

    def __init__(self, fpn: FeaturePyramidNetwork) -> None:
        super().__init__()
        self.inner_blocks, self.layer_blocks, self.extra_blocks = fpn.inner_blocks, fpn.layer_blocks, fpn.extra_blocks

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names, features = list(x.keys()), list(x.values())
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            last_inner = add_upsampled(self.inner_blocks[idx](features[idx]), last_inner)
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, features, names)
        return OrderedDict(zip(names, results))


def add_upsampled(lateral: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``lateral + interpolate(top, size=lateral's, mode="nearest")``, both ``(N, C, H, W)``; computed in place
    in ``lateral`` (which must not be needed afterwards) when it is exactly twice ``top``'s size and both are
    channels-last of one dtype."""
    n, channels, height, width = top.shape
    exact_double = tuple(lateral.shape) == (n, channels, 2 * height, 2 * width) and lateral.dtype == top.dtype
    layout = torch.channels_last
    if exact_double and lateral.is_contiguous(memory_format=layout) and top.is_contiguous(memory_format=layout):
        pixels = lateral.permute(0, 2, 3, 1).view(n, height, 2, width, 2, channels)
        pixels.add_(top.permute(0, 2, 3, 1).view(n, height, 1, width, 1, channels))
        return lateral
    return lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
