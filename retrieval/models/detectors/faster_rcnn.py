"""torchvision Faster R-CNN (ResNet50-FPN) as a detector and as the ``roi`` embedder.

One forward of the backbone serves both jobs: detection runs
``transform → backbone → rpn → roi_heads``, and the final boxes are pooled again
through the ROI pooler and box head on the same backbone features to give each
detection its 1024-d vector. A given box (annotation, query) is embedded the
same way: backbone on the whole image, box mapped into the resized frame.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import clip_boxes_to_image

from ...errors import SettingsError
from ...objects import ImageObjects
from ...validation import check_classes, check_detector_input
from ..accel.box_head import ChannelsLastBoxHead
from ..accel.fpn import InPlaceTopDownFPN
from ..accel.fused import fuse_convolutions
from ..accel.memory import keep_freed_memory
from ..accel.roi_align import roi_pooler_for
from ..accel.speed import Cast, fold_batchnorms, resolve_precision, to_inference_layout
from ..model_build import build_with_weights
from ..names import COCO_CATEGORIES
from ..weights import file_sha256, read_weights
from .architectures import COCO_CLASSES, DEFAULT_DETECTOR, DETECTOR_NAMES, build_architecture
from .architectures import COCO_WEIGHTS as ARCHITECTURE_WEIGHTS
from .checkpoint import model_from_checkpoint, read_checkpoint
from .frames import to_original_frame, to_resized_frame
from .inputs import CachedAnchors, input_batch
from .postprocess import top_detections

ROI_DIMENSION = 1024
MIN_RESIZED_SIDE = 32  # one cell of the coarsest backbone stride
GPU_IMAGES_PER_FORWARD = 16  # H100, 800x1066 inputs: 137 img/s at 8, 149 at 16, 160 at 32


def build_faster_rcnn(min_size: int = 800, max_size: int = 1333) -> FasterRCNN:
    """The fasterrcnn_resnet50_fpn architecture (91 COCO classes), as torchvision builds it for trained weights.

    FrozenBatchNorm2d everywhere, so torchvision's COCO state_dict and any
    ``torch.save(model.state_dict())`` of such a model load strictly.
    """
    return build_architecture(DEFAULT_DETECTOR, COCO_CLASSES, min_size, max_size)


class FasterRCNNModel:
    """A loaded Faster R-CNN in eval mode, on one device.

    Images are ``(H, W, 3)`` uint8 RGB arrays; boxes in and out are ``(N, 4)``
    ``x1, y1, x2, y2`` in original image pixels.
    """

    dimension = ROI_DIMENSION

    def __init__(
        self,
        weights: str,
        device: torch.device,
        min_size: int = 800,
        max_size: int = 1333,
        score_threshold: float = 0.5,
        max_objects: int = 20,
        classes: Sequence[str] = (),
        precision: str = "auto",
        detector: str = DEFAULT_DETECTOR,
    ) -> None:
        """``detector``: an architecture name (``architectures.DETECTOR_NAMES``; COCO classes, ``weights`` as
        for ``--detector-weights``) or a checkpoint file of ``retrieval train-detector`` (its own classes and
        weights; ``weights`` must then be ``default``). ``SettingsError`` for an input size, threshold or count
        out of range (``validation.check_detector_input``), before anything is loaded; a bad weights file or
        checkpoint (``WeightsError``) or an unknown class is refused before the model is built."""
        min_size, max_size, score_threshold, max_objects = check_detector_input(
            min_size, max_size, score_threshold, max_objects
        )
        if detector in DETECTOR_NAMES:
            model, self.identity, self.categories = _coco_detector(detector, weights, classes, min_size, max_size)
        else:
            model, self.identity, self.categories = _checkpoint_detector(detector, weights, classes, min_size, max_size)
        self.architecture = self.identity.get("detector", detector)
        self.dtype = resolve_precision(precision, device)
        self.model = _fast_inference(model.eval(), self.dtype, device)
        self.device = device
        self.images_per_forward = 1 if device.type == "cpu" else GPU_IMAGES_PER_FORWARD
        self.max_objects = max_objects
        self.class_ids = (
            torch.tensor(sorted(self.categories.index(name) for name in classes), device=device) if classes else None
        )
        self.model.roi_heads.score_thresh = score_threshold

    def detect(self, images: Sequence[np.ndarray], with_vectors: bool) -> list[ImageObjects]:
        """Detect objects in each image; with ``with_vectors`` also embed each final box (``roi``).

        The vector of a detection is exactly what ``embed`` gives for its (returned) box.
        """
        return [found for part in self._parts(len(images)) for found in self._detect(images[part], with_vectors)]

    def embed(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Embed given boxes: ``boxes[i]`` is ``(N_i, 4)`` in image i's original pixels → ``(N_i, 1024)`` unit rows."""
        return [vectors for part in self._parts(len(images)) for vectors in self._embed(images[part], boxes[part])]

    def _parts(self, count: int) -> list[slice]:
        """Slices of the images for one forward each: one image on the CPU (padding images to a common size
        costs more than batching saves there), several on a GPU."""
        return [slice(start, start + self.images_per_forward) for start in range(0, count, self.images_per_forward)]

    @torch.inference_mode()
    def _detect(self, images: Sequence[np.ndarray], with_vectors: bool) -> list[ImageObjects]:
        batch, features, frames = self._backbone(images)
        proposals, _ = self.model.rpn(batch, features)
        heads = self.model.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, batch.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        detections = top_detections(
            heads, class_logits, box_regression, proposals, batch.image_sizes, self.max_objects, self.class_ids
        )
        found, resized_boxes = [], []
        for image, frame, resized_hw, (b, s, lab) in zip(images, frames, batch.image_sizes, detections):
            original = clip_boxes_to_image(to_original_frame(b, resized_hw, frame), image.shape[:2])
            inside = (original[:, 2] > original[:, 0]) & (original[:, 3] > original[:, 1])
            original, s, lab = original[inside], s[inside], lab[inside]
            resized_boxes.append(to_resized_frame(original, frame, resized_hw))
            found.append(
                ImageObjects(
                    boxes=original.float().cpu().numpy().reshape(-1, 4),
                    labels=[self.categories[int(i)] for i in lab],
                    scores=s.float().cpu().numpy(),
                )
            )
        if not with_vectors:
            return found
        vectors = self._pool(features, resized_boxes, batch.image_sizes)
        return [objects.with_vectors(v) for objects, v in zip(found, vectors)]

    @torch.inference_mode()
    def _embed(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        batch, features, frames = self._backbone(images)
        resized = [
            to_resized_frame(torch.as_tensor(b, dtype=torch.float32, device=self.device).reshape(-1, 4), frame, hw)
            for b, frame, hw in zip(boxes, frames, batch.image_sizes)
        ]
        return self._pool(features, resized, batch.image_sizes)

    def _backbone(self, images: Sequence[np.ndarray]):
        """Resize and normalise (GeneralizedRCNNTransform's steps, ``inputs.input_batch``), then run the FPN
        backbone once.

        Returns the batch, the FPN features and each image's frame ``(H, W)`` as the transform saw it:
        the image itself, or the image padded at the bottom or right when it is so thin that resizing
        would leave it less than one feature-map cell wide. Padding does not move original pixel
        coordinates.
        """
        padded = [self._pad_thin(image) for image in images]
        tensors = [torch.from_numpy(image).to(self.device) for image in padded]
        batch = input_batch(tensors, self.model.transform, self.dtype)
        return batch, self.model.backbone(batch.tensors), [image.shape[:2] for image in padded]

    def _pad_thin(self, image: np.ndarray) -> np.ndarray:
        """Pad the short side so that after the transform's resize it is at least ``MIN_RESIZED_SIDE`` pixels."""
        height, width = image.shape[:2]
        transform = self.model.transform
        min_size, max_size = float(transform.min_size[-1]), float(transform.max_size)
        scale = min(min_size / min(height, width), max_size / max(height, width))
        needed = math.ceil(MIN_RESIZED_SIDE / scale)
        if min(height, width) * scale >= MIN_RESIZED_SIDE:
            return image
        return np.pad(image, ((0, max(0, needed - height)), (0, max(0, needed - width)), (0, 0)))

    def _pool(self, features, boxes: list[torch.Tensor], image_sizes) -> list[np.ndarray]:
        """ROI-pool resized-frame boxes through the box head: ``(N_i, 1024)`` L2-normalised rows per image."""
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            return [np.zeros((0, self.dimension), dtype=np.float32) for _ in boxes]
        heads = self.model.roi_heads
        pooled = heads.box_head(heads.box_roi_pool(features, boxes, image_sizes))
        vectors = F.normalize(pooled.float(), dim=1).cpu().numpy()
        return list(np.split(vectors, np.cumsum(counts)[:-1]))


def _coco_detector(detector: str, weights: str, classes: Sequence[str], min_size: int, max_size: int):
    """``(model, identity, categories)`` of an architecture name with COCO classes: the weights are read and
    ``classes`` checked before the model is built."""
    read = read_weights(weights, ARCHITECTURE_WEIGHTS[detector], "detector")
    check_classes(classes, COCO_CATEGORIES)
    model, identity = build_with_weights(
        lambda: build_architecture(detector, COCO_CLASSES, min_size, max_size), read, detector
    )
    if identity["source"] == "default" and detector == DEFAULT_DETECTOR:
        overwrite_eps(model, 0.0)  # what torchvision does for COCO_V1
    return model, identity, COCO_CATEGORIES


def _checkpoint_detector(path: str, weights: str, classes: Sequence[str], min_size: int, max_size: int):
    """``(model, identity, categories)`` of a ``retrieval train-detector`` checkpoint: it is read and
    ``classes`` checked against its own before the model is built."""
    if weights != "default":
        raise SettingsError(
            f"detector checkpoint {path} carries its own weights: leave out --detector-weights ({weights})"
        )
    payload = read_checkpoint(path)
    categories = ("__background__", *payload["classes"])
    check_classes(classes, categories)
    model = model_from_checkpoint(payload, path, min_size, max_size)
    absolute = Path(path).absolute()
    identity = {
        "source": "checkpoint",
        "path": str(absolute),
        "sha256": file_sha256(absolute),
        "detector": payload["detector"],
        "classes": list(payload["classes"]),
    }
    return model, identity, categories


def _fast_inference(model: FasterRCNN, dtype: torch.dtype, device: torch.device) -> FasterRCNN:
    """The same detector, arranged to run fast, each step tested against the plain one:

    - batch norms folded into the backbone's convolutions (speed.py);
    - the FPN's top-down sums made in place (fpn.py);
    - on the CPU: freed activations kept for the next forward (memory.py); each convolution fused with the
      activation and residual add after it (fused.py); ROI pooling on channels-last features
      (roi_align.py), read by the box head without a reordering copy (box_head.py); on CUDA torchvision's
      ROI pooling;
    - backbone, RPN head and box head in ``dtype`` with channels-last memory;
    - anchors made once per input size, in fp32 (inputs.py); box decoding, scores and NMS in fp32.
    """
    fold_batchnorms(model.backbone.body)
    if hasattr(model.backbone, "fpn"):
        model.backbone.fpn = InPlaceTopDownFPN(model.backbone.fpn)
    if device.type == "cpu":
        keep_freed_memory()
        fuse_convolutions(model.backbone.body)
        fuse_convolutions(model.rpn.head)
        if type(model.roi_heads.box_head) is TwoMLPHead:  # resnet50_fpn_v2's is convolutions first
            model.roi_heads.box_head = ChannelsLastBoxHead(model.roi_heads.box_head, model.backbone.out_channels)
    model.backbone = to_inference_layout(model.backbone, dtype)
    model.rpn.head = to_inference_layout(model.rpn.head, dtype)
    if dtype != torch.float32:
        model.rpn.head = Cast(model.rpn.head, dtype)
        model.roi_heads.box_head = Cast(model.roi_heads.box_head, dtype)
    model.roi_heads.box_roi_pool = roi_pooler_for(model.roi_heads.box_roi_pool, device, dtype)
    model.rpn.anchor_generator = CachedAnchors(model.rpn.anchor_generator)
    return model.to(device)
