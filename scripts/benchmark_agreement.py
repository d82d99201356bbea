"""The benchmark's agreement section: the project's embeddings against plain fp32 torchvision, same boxes.

"Plain" is torchvision's own modules, unmodified, in fp32 and NCHW: Faster R-CNN's transform,
backbone, ``MultiScaleRoIAlign`` and box head for ``roi``; ResNet50 on the project's crops for
``resnet50``. "Project" is what indexing runs: the chosen precision, folded norms, fused convolutions,
channels-last ROI align. Both use the same seeded random weights, so any difference is arithmetic.

With random weights every vector shares a large common component, which puts plain cosines near 1
whatever the rest does; the centred cosine (after subtracting the plain vectors' mean) is the
stricter figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import resnet50
from torchvision.models.detection.transform import resize_boxes

from retrieval.images import load_image
from retrieval.models import FasterRCNNModel, ResNet50Embedder
from retrieval.models.detectors.faster_rcnn import build_faster_rcnn
from retrieval.models.crop_embedder import IMAGENET_MEAN, IMAGENET_STD
from retrieval.models.crops import crop_box
from retrieval.models.weights import seeded_init


def agreement_rows(photos: list[Path], args, progress: Callable[[str], None]) -> list[dict]:
    """One row per embedder: cosine statistics over every detected box of ``photos``."""
    device = torch.device(args.device)
    progress(f"agreement: detecting {args.objects} boxes in each of {len(photos)} photos")
    images = [load_image(path).rgb for path in photos]
    project = FasterRCNNModel(
        "random", device, args.min_size, args.max_size, 0.0, args.objects, precision=args.precision
    )
    found = project.detect(images, with_vectors=True)
    boxes = [objects.boxes for objects in found]
    progress("agreement: plain fp32 roi and resnet50 vectors")
    with seeded_init():  # exactly what --weights random builds
        detector = build_faster_rcnn(args.min_size, args.max_size).eval()
    with seeded_init():
        crop_model = resnet50(weights=None).eval()
    crop_model.fc = torch.nn.Identity()
    plain_roi = np.vstack([plain_roi_vectors(detector, image, b) for image, b in zip(images, boxes)])
    project_roi = np.vstack([objects.vectors for objects in found])
    embedder = ResNet50Embedder("random", device, args.precision)
    project_crops = np.vstack(embedder.embed(images, boxes))
    plain_crops = np.vstack([plain_resnet50_vectors(crop_model, image, b) for image, b in zip(images, boxes)])
    return [_row("roi", plain_roi, project_roi), _row("resnet50", plain_crops, project_crops)]


@torch.inference_mode()
def plain_roi_vectors(model: torch.nn.Module, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(N, 1024)`` unit box-head outputs of an unmodified fp32 Faster R-CNN for ``boxes`` (original pixels)."""
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    batch, _ = model.transform([pixels])
    features = model.backbone(batch.tensors)
    resized = resize_boxes(torch.from_numpy(boxes).float(), list(image.shape[:2]), list(batch.image_sizes[0]))
    pooled = model.roi_heads.box_head(model.roi_heads.box_roi_pool(features, [resized], batch.image_sizes))
    return F.normalize(pooled, dim=1).numpy()


@torch.inference_mode()
def plain_resnet50_vectors(model: torch.nn.Module, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(N, 2048)`` unit GAP vectors of an unmodified fp32 ResNet50 (fc removed) on the project's crops."""
    crops = torch.from_numpy(np.stack([crop_box(image, box, 224) for box in boxes])).permute(0, 3, 1, 2)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return F.normalize(model((crops.float() / 255.0 - mean) / std), dim=1).numpy()


def _row(embedder: str, plain: np.ndarray, project: np.ndarray) -> dict:
    cosine = (plain * project).sum(1)
    mean = plain.mean(axis=0)
    a, b = plain - mean, project - mean
    centred = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {
        "embedder": embedder,
        "vectors": len(plain),
        "cosine_mean": round(float(cosine.mean()), 5),
        "cosine_min": round(float(cosine.min()), 5),
        "centred_mean": round(float(centred.mean()), 4),
        "centred_min": round(float(centred.min()), 4),
    }
