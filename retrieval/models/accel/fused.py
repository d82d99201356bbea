"""Convolutions fused with the activation (and residual add) after them, as one oneDNN call on the CPU.

With batch norms folded (``speed.fold_batchnorms``), a ResNet bottleneck is conv → ReLU → conv → ReLU →
conv → + identity → ReLU. Run one op at a time, every ReLU and add is another pass over a large
activation in memory: about 40% of the detector backbone's time on this 2-core CPU. oneDNN applies
them as post-ops of the convolution, while the output is still in cache; PyTorch exposes that as
``torch.ops.mkldnn._convolution_pointwise``, the op that ``torch.compile``'s CPU backend emits for the
same pattern. MobileNetV3 (the mobilenet detectors' trunk) is the same story with hardswish, hardsigmoid and
many small activations: its inverted residual blocks end in a convolution plus the block's input, and its
squeeze-excitation branches are two 1x1 convolutions, each with its activation. EfficientNet-Lite's
inverted residual blocks (and torchvision's MobileNetV2) use ReLU6, oneDNN's ``hardtanh`` post-op with
bounds 0 and 6: fused, a Lite0 crop embeds about 1.5x as fast. Where that op is missing (another PyTorch
build, a GPU), ``fuse_convolutions`` leaves the model as it is. Tests check fused outputs against the
unfused models.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import SqueezeExcitation

from ..backbones.efficientnet_lite_net import MBConv, SameConv2d, same_padding

ACTIVATIONS = {  # activation module → oneDNN post-op and its scalars
    nn.ReLU: ("relu", ()),
    nn.ReLU6: ("hardtanh", (0.0, 6.0)),
    nn.Hardswish: ("hardswish", ()),
    nn.Hardsigmoid: ("hardsigmoid", ()),
}
RELU6 = ACTIVATIONS[nn.ReLU6]


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
        clipped = torch.ops.mkldnn._convolution_pointwise(
            x, w, None, [0, 0], [1, 1], [1, 1], 1, "hardtanh", [0.0, 1.5], ""
        )
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.all(y == 2.0) and torch.all(z == 4.0) and torch.all(clipped == 1.5))


class FusedConv(nn.Module):
    """``conv`` followed by ``activation`` (a post-op of ``ACTIVATIONS``, with its ``scalars``, or ``"none"``),
    optionally adding a residual first, as one oneDNN call.

    ``forward(x, residual=None)``: ``activation(conv(x) + residual)``; ``x`` and ``residual`` are
    ``(N, C, H, W)`` in the convolution's dtype (channels-last memory is fastest). A strided ``SameConv2d``
    pads each input as it does (TensorFlow's ``SAME``) before the call.
    """

    def __init__(self, conv: nn.Conv2d, activation: str = "none", scalars: tuple[float, ...] = ()) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"cannot fuse {conv}: only numeric zero padding")
        self.weight, self.bias = conv.weight, conv.bias
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.groups = conv.groups
        self.activation, self.scalars = activation, list(scalars)
        self.same_kernel = conv.kernel_size[0] if isinstance(conv, SameConv2d) and conv.stride[0] > 1 else 0

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.same_kernel:
            x = F.pad(x, same_padding(x, self.same_kernel, self.stride[0]))
        geometry = (self.padding, self.stride, self.dilation, self.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, *geometry, self.activation, self.scalars, ""
            )
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, self.weight, self.bias, *geometry, "add", 1.0, _unary(self.activation), self.scalars, ""
        )


def _unary(activation: str) -> str | None:
    """The activation as the binary (add) op takes it: ``None`` for no activation."""
    return None if activation == "none" else activation


class FusedBottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (norms folded away) with each convolution fused with what follows it."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        self.conv1 = FusedConv(block.conv1, "relu")
        self.conv2 = FusedConv(block.conv2, "relu")
        self.conv3 = FusedConv(block.conv3, "relu")
        self.downsample = FusedConv(block.downsample[0]) if block.downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), residual=identity)


class FusedInvertedResidual(nn.Module):
    """MobileNetV3's ``InvertedResidual`` with a shortcut (norms folded away): its last convolution, the
    projection, adds the block's input in the same oneDNN call."""

    def __init__(self, block: InvertedResidual) -> None:
        super().__init__()
        self.expand = block.block[:-1]
        self.project = FusedConv(block.block[-1][0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.expand(x), residual=x)


class FusedMBConv(nn.Module):
    """EfficientNet-Lite's ``MBConv`` (norms folded away): the expansion and the depthwise convolution each
    fused with its ReLU6, the projection with the block's input added when the block has a shortcut."""

    def __init__(self, block: MBConv) -> None:
        super().__init__()
        expands = hasattr(block, "_expand_conv")
        self.expand = FusedConv(block._expand_conv, *RELU6) if expands else nn.Identity()
        self.depthwise = FusedConv(block._depthwise_conv, *RELU6)
        self.project = FusedConv(block._project_conv)
        self.residual = block.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(self.expand(x))
        return self.project(y, residual=x) if self.residual else self.project(y)


class FusedSqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` with each of its two 1x1 convolutions fused with its activation."""

    def __init__(self, block: SqueezeExcitation) -> None:
        super().__init__()
        self.avgpool = block.avgpool
        self.fc1 = FusedConv(block.fc1, *ACTIVATIONS[type(block.activation)])
        self.fc2 = FusedConv(block.fc2, *ACTIVATIONS[type(block.scale_activation)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(self.avgpool(x))) * x


def fuse_convolutions(module: nn.Module) -> nn.Module:
    """Fuse, in place, the convolutions of ResNet, MobileNetV3 and EfficientNet-Lite trunks and every
    convolution → activation sequence (RPN heads, ``Conv2dNormActivation``; a module's own
    ``conv_norm_activations`` triples of attribute names); returns ``module``.

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
            continue
        if isinstance(child, MBConv) and all(isinstance(norm, nn.Identity) for norm in _norms(child)):
            setattr(module, name, FusedMBConv(child))
            continue
        _fuse(child)
        if isinstance(child, InvertedResidual) and child.use_res_connect and _ends_in_plain_conv(child.block):
            setattr(module, name, FusedInvertedResidual(child))
        elif type(child) is SqueezeExcitation and _fusable_activations(child):
            setattr(module, name, FusedSqueezeExcitation(child))
    stem = [getattr(module, name, None) for name in ("conv1", "bn1", "relu")]
    is_stem = not isinstance(module, (Bottleneck, BasicBlock)) and isinstance(stem[0], nn.Conv2d)  # a block reuses relu
    if is_stem and isinstance(stem[1], nn.Identity) and isinstance(stem[2], nn.ReLU):
        module.conv1, module.relu = FusedConv(stem[0], "relu"), nn.Identity()  # ResNet stem
    _fuse_named(module)
    if isinstance(module, nn.Sequential):
        _fuse_sequence(module)


def _fuse_named(module: nn.Module) -> None:
    """The ``(conv, norm, activation)`` attribute triples that ``module`` names in ``conv_norm_activations``,
    each with its norm folded away, become one fused convolution each; the activation becomes ``nn.Identity``."""
    for conv_name, norm_name, activation_name in getattr(module, "conv_norm_activations", ()):
        conv, norm, activation = (getattr(module, name) for name in (conv_name, norm_name, activation_name))
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.Identity) and type(activation) in ACTIVATIONS:
            setattr(module, conv_name, FusedConv(conv, *ACTIVATIONS[type(activation)]))
            setattr(module, activation_name, nn.Identity())


def _norms(block: MBConv) -> list[nn.Module]:
    """The norms of an ``MBConv`` (``nn.Identity`` once folded)."""
    return [getattr(block, norm) for _, norm in MBConv.conv_norm_pairs if hasattr(block, norm)]


def _fuse_sequence(sequence: nn.Sequential) -> None:
    """Each convolution followed (past folded norms, ``nn.Identity``) by an activation of ``ACTIVATIONS``
    becomes one fused convolution; the activation becomes ``nn.Identity``."""
    for position, layer in enumerate(sequence):
        after = position + 1
        while after < len(sequence) and type(sequence[after]) is nn.Identity:
            after += 1
        if type(layer) is nn.Conv2d and after < len(sequence) and type(sequence[after]) in ACTIVATIONS:
            sequence[position] = FusedConv(layer, *ACTIVATIONS[type(sequence[after])])
            sequence[after] = nn.Identity()


def _ends_in_plain_conv(block: nn.Sequential) -> bool:
    """True when the last layer is ``Sequential(Conv2d, Identity)``: a projection whose norm was folded."""
    last = block[-1]
    return (
        isinstance(last, nn.Sequential)
        and len(last) == 2
        and type(last[0]) is nn.Conv2d
        and type(last[1]) is nn.Identity
    )


def _fusable_activations(block: SqueezeExcitation) -> bool:
    return type(block.activation) in ACTIVATIONS and type(block.scale_activation) in ACTIVATIONS


def _folded(block: Bottleneck) -> bool:
    norms = [block.bn1, block.bn2, block.bn3] + ([block.downsample[1]] if block.downsample is not None else [])
    return all(isinstance(norm, nn.Identity) for norm in norms) and (
        block.downsample is None or (len(block.downsample) == 2 and isinstance(block.downsample[0], nn.Conv2d))
    )
