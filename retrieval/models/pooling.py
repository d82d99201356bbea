"""Pooling of a convolutional feature map into one vector per image, as small modules over functional code
(the layout of cnnimageretrieval-pytorch's ``layers/pooling.py`` and ``layers/functional.py``).

Every function maps ``(N, C, H, W)`` features to ``(N, C, 1, 1)``; the modules wrap them, so a trunk's
``avgpool`` can be swapped for any of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gap(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: the mean of each channel."""
    return F.adaptive_avg_pool2d(x, 1)


def mac(x: torch.Tensor) -> torch.Tensor:
    """Maximum activation of convolutions: the maximum of each channel."""
    return F.adaptive_max_pool2d(x, 1)


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean: ``(mean(clamp(x, eps) ** p)) ** (1 / p)``; p = 1 is GAP, p → ∞ tends to MAC."""
    return F.adaptive_avg_pool2d(x.clamp(min=eps).pow(p), 1).pow(1.0 / p)


class GAP(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gap(x)


class MAC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mac(x)


class GeM(nn.Module):
    """GeM with a learnable (or fixed) exponent ``p``."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.4f}, eps={self.eps}"
