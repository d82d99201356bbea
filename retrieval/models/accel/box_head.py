"""Faster R-CNN's box head reading channels-last ROI features as they are, without a reordering copy.

``TwoMLPHead`` flattens each ``(256, 7, 7)`` pooled ROI in channel-major order before ``fc6``. The CPU ROI
pooler (roi_align.py) gives channels-last features, so that flatten copies all of them (1000 proposals x
12,544 values per image). Reordering ``fc6``'s input columns once to pixel-major order lets the flatten be a
view of the features; the sums are the same products in another order (a test checks the outputs against
the plain head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead


class ChannelsLastBoxHead(nn.Module):
    """``head`` (torchvision's ``TwoMLPHead``) for ``(N, C, h, w)`` channels-last input → ``(N, 1024)``."""

    def __init__(self, head: TwoMLPHead, channels: int) -> None:
        super().__init__()
        weight = head.fc6.weight.detach()
        outputs, inputs = weight.shape
        side = round((inputs // channels) ** 0.5)
        pixel_major = weight.view(outputs, channels, side, side).permute(0, 2, 3, 1).reshape(outputs, inputs)
        self.fc6_weight = nn.Parameter(pixel_major.contiguous(), requires_grad=False)
        self.fc6_bias = head.fc6.bias
        self.fc7 = head.fc7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # a view for channels-last x
        return F.relu(self.fc7(F.relu(F.linear(rows, self.fc6_weight, self.fc6_bias))))
