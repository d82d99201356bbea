"""Fast paths for inference, each one checked against the plain torchvision path it replaces (tests).

- ``resolve_precision``: bf16 where the hardware runs it fast (AMX / AVX-512 BF16 CPUs, recent GPUs).
- ``fold_batchnorms``: frozen or eval batch norms folded into the convolution before them (exact in fp32).
- ``to_inference_layout``: weights in the chosen dtype, channels-last memory for convolutions.
- ``Cast``: runs a module in a low precision and hands fp32 back, so scores, box decoding and NMS stay fp32.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ...errors import SettingsError
from ..names import PRECISIONS

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16)."""
    try:
        flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``--precision`` on ``device``.

    ``auto``: bf16 on a CPU with fast bf16 and on CUDA GPUs that support it (fp16 on older ones),
    fp32 elsewhere. ``fp16`` is for GPUs only.
    """
    if name not in PRECISIONS:
        raise SettingsError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if name == "fp16" and device.type != "cuda":
        raise SettingsError("--precision fp16 runs on CUDA GPUs only; use bf16 or fp32 on the CPU")
    return _DTYPES[name]


def fold_batchnorms(module: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution into it, in place; returns ``module``.

    Covers torchvision's ResNet layouts (``convN`` followed by ``bnN`` in one module), a norm right after a
    convolution in any ``Sequential`` (ResNet downsample branches, ``Conv2dNormActivation`` of MobileNetV3 and
    EfficientNet: ``Sequential(conv, norm, activation)``); other modules name their pairs of attributes in a
    ``conv_norm_pairs`` class attribute (EfficientNet-Lite's ``(("_conv_stem", "_bn0"), ...)``). Norms must be
    frozen or in eval mode.
    """
    for child in module.children():
        fold_batchnorms(child)
    pairs = ((f"conv{index}", f"bn{index}") for index in range(1, 4))
    for conv_name, norm_name in (*pairs, *getattr(module, "conv_norm_pairs", ())):
        conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
        if isinstance(conv, nn.Conv2d) and _is_norm(norm):
            _fold(conv, norm)
            setattr(module, norm_name, nn.Identity())
    if isinstance(module, nn.Sequential):
        for position in range(len(module) - 1):
            if isinstance(module[position], nn.Conv2d) and _is_norm(module[position + 1]):
                _fold(module[position], module[position + 1])
                module[position + 1] = nn.Identity()
    return module


def to_inference_layout(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module`` in ``dtype`` with channels-last convolution weights (the layout oneDNN and cuDNN prefer)."""
    return module.to(dtype).to(memory_format=torch.channels_last)


class Cast(nn.Module):
    """Run ``module`` on inputs cast to ``dtype``; outputs (tensors, or lists, tuples or dicts of them) come back
    as fp32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, *inputs):
        return _to(self.module(*_to(inputs, self.dtype)), torch.float32)


def _is_norm(module: nn.Module | None) -> bool:
    """A plain batch norm in eval mode (exactly that type: a subclass such as timm's ``BatchNormAct2d`` also
    applies an activation, which folding would drop)."""
    return type(module) is FrozenBatchNorm2d or (type(module) is nn.BatchNorm2d and not module.training)


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """conv → norm becomes one conv: w' = w·s, b' = (b - mean)·s + beta, with s = gamma / sqrt(var + eps)."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias, requires_grad=False)


def _to(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, dtype) for v in value)
    if isinstance(value, dict):
        return type(value)((key, _to(v, dtype)) for key, v in value.items())
    return value
