"""Names the settings check before any model is loaded (no torch import here)."""

DETECTOR_NAMES = ("resnet50_fpn", "resnet50_fpn_v2", "mobilenet_v3_large_fpn", "mobilenet_v3_large_320_fpn")
DEFAULT_DETECTOR = "resnet50_fpn"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
