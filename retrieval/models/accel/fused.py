"""Convolutions fused with the ReLU (and residual add) after them, as one oneDNN call on the CPU.

With batch norms folded (``speed.fold_batchnorms``), a ResNet bottleneck is conv → ReLU → conv → ReLU →
conv → + identity → ReLU. Run one op at a time, every ReLU and add is another pass over a large
activation in memory: about 40% of the detector backbone's time on this 2-core CPU. oneDNN applies
them as post-ops of the convolution, while the output is still in cache; PyTorch exposes that as
``torch.ops.mkldnn._convolution_pointwise``, the op that ``torch.compile``'s CPU backend emits for the
same pattern. Where that op is missing (another PyTorch build, a GPU), ``fuse_convolutions`` leaves the
model as it is. A test checks fused outputs against the unfused model.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


@functools.lru_cache(maxsize=None)
def fusion_available() -> bool:
    """True when this PyTorch runs oneDNN's fused convolutions on the CPU (checked once, on a tiny input)."""
    try:
        x = torch.ones(1, 2, 3, 3).contiguous(memory_format=torch.channels_last)
        w = torch.ones(2, 2, 1, 1).contiguous(memory_format=torch.channels_last)
        y = torch.ops.mkldnn._convolution_pointwise(x, w, None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
        z = torch.ops.mkldnn._convolution_pointwise.binary(
            x, y, w, None, [0, 0], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], ""
        )
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.all(y == 2.0) and torch.all(z == 4.0))


class FusedConv(nn.Module):
    """``conv`` followed by ``relu`` (or nothing), optionally adding a residual first, as one oneDNN call.

    ``forward(x, residual=None)``: ``relu(conv(x) + residual)``; ``x`` and ``residual`` are ``(N, C, H, W)``
    in the convolution's dtype (channels-last memory is fastest).
    """

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"cannot fuse {conv}: only numeric zero padding")
        self.weight, self.bias = conv.weight, conv.bias
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.groups = conv.groups
        self.activation = "relu" if relu else "none"

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        geometry = (self.padding, self.stride, self.dilation, self.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, *geometry, self.activation, [], ""
            )
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, self.weight, self.bias, *geometry, "add", 1.0, self.activation, [], ""
        )


class FusedBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (norms folded away) with each convolution fused with what follows it."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        self.conv1 = FusedConv(block.conv1, relu=True)
        self.conv2 = FusedConv(block.conv2, relu=True)
        self.conv3 = FusedConv(block.conv3, relu=True)
        self.downsample = FusedConv(block.downsample[0], relu=False) if block.downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), residual=identity)


def fuse_convolutions(module: nn.Module) -> nn.Module:
    """Fuse, in place, the convolutions of ResNet trunks and conv → ReLU sequences (RPN head); returns ``module``.

    For modules that run on the CPU. Batch norms must already be folded (they are ``nn.Identity``).
    Without ``fusion_available()`` nothing changes.
    """
    if fusion_available():
        _fuse(module)
    return module


def _fuse(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, Bottleneck) and _folded(child):
            setattr(module, name, FusedBottleneck(child))
        else:
            _fuse(child)
    stem = [getattr(module, name, None) for name in ("conv1", "bn1", "relu")]
    is_stem = not isinstance(module, (Bottleneck, BasicBlock)) and isinstance(stem[0], nn.Conv2d)  # a block reuses relu
    if is_stem and isinstance(stem[1], nn.Identity) and isinstance(stem[2], nn.ReLU):
        module.conv1, module.relu = FusedConv(stem[0], relu=True), nn.Identity()  # ResNet stem
    if isinstance(module, nn.Sequential):
        for position in range(len(module) - 1):
            if isinstance(module[position], nn.Conv2d) and isinstance(module[position + 1], nn.ReLU):
                module[position], module[position + 1] = FusedConv(module[position], relu=True), nn.Identity()


def _folded(block: Bottleneck) -> bool:
    norms = [block.bn1, block.bn2, block.bn3] + ([block.downsample[1]] if block.downsample is not None else [])
    return all(isinstance(norm, nn.Identity) for norm in norms) and (
        block.downsample is None or (len(block.downsample) == 2 and isinstance(block.downsample[0], nn.Conv2d))
    )
