"""The Faster R-CNN detectors one can choose (``--detector NAME``), built as torchvision builds them for
its COCO weights, so that those weights (and any ``state_dict`` of such a model) load strictly.

=============================  ==============================================  ===========================
name                           torchvision builder / COCO weights              input size (min, max)
=============================  ==============================================  ===========================
``resnet50_fpn`` (default)     fasterrcnn_resnet50_fpn, COCO_V1                800, 1333
``resnet50_fpn_v2``            fasterrcnn_resnet50_fpn_v2, COCO_V1             800, 1333
``mobilenet_v3_large_fpn``     fasterrcnn_mobilenet_v3_large_fpn, COCO_V1      800, 1333
``mobilenet_v3_large_320_fpn`` fasterrcnn_mobilenet_v3_large_320_fpn, COCO_V1  320, 640
=============================  ==============================================  ===========================

Frozen batch norms wherever torchvision uses them for its trained models (the v2 model keeps its
ordinary batch norms, as torchvision does).
"""

from __future__ import annotations

from torchvision.models import WeightsEnum, mobilenet_v3_large
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    fasterrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import misc as misc_nn_ops

from ...errors import SettingsError
from ..names import DEFAULT_DETECTOR, DETECTOR_NAMES

COCO_WEIGHTS: dict[str, WeightsEnum] = {
    "resnet50_fpn": FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
    "resnet50_fpn_v2": FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "mobilenet_v3_large_fpn": FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
    "mobilenet_v3_large_320_fpn": FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
}
COCO_CLASSES = 91  # torchvision's COCO numbering, background and "N/A" gaps included


def check_detector_name(name: str) -> None:
    if name not in COCO_WEIGHTS:
        raise SettingsError(f"unknown detector {name!r}: use one of {', '.join(DETECTOR_NAMES)} or a checkpoint file")


def build_architecture(
    name: str, num_classes: int = COCO_CLASSES, min_size: int = 800, max_size: int = 1333
) -> FasterRCNN:
    """The ``name`` detector with ``num_classes`` outputs (background included), randomly initialised."""
    check_detector_name(name)
    size = {"min_size": min_size, "max_size": max_size}
    if name == "resnet50_fpn":
        backbone = resnet_fpn_backbone(
            backbone_name="resnet50", weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d, trainable_layers=3
        )
        return FasterRCNN(backbone, num_classes=num_classes, **size)
    if name == "resnet50_fpn_v2":
        return fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=num_classes, **size)
    trunk = mobilenet_v3_large(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    backbone = _mobilenet_extractor(trunk, True, 3)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    extra = {"rpn_score_thresh": 0.05}
    if name == "mobilenet_v3_large_320_fpn":
        extra |= {"rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150}
    return FasterRCNN(backbone, num_classes=num_classes, rpn_anchor_generator=anchors, **size, **extra)


def replace_predictor(model: FasterRCNN, num_classes: int) -> None:
    """Give ``model`` a new, randomly initialised box predictor for ``num_classes`` (background included)."""
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
