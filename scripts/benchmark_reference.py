"""The reference pipelines of the benchmark: indexing written the plain way the seed projects did it.

For comparison only; nothing in ``retrieval`` uses this. Per image, in fp32: decode with Pillow,
``to_tensor``, one forward of torchvision's unmodified Faster R-CNN (its own postprocess: class-wise
NMS at the model's score threshold, ``detections_per_img`` boxes), then

- ``roi``: the final boxes pooled through the model's own ROI pooler and box head on the same backbone
  features (1024-d), the way FasterRCNN_Embed_Extract read its embeddings;
- ``resnet50``: each box cropped with Pillow, squashed to 224x224, normalised, and run through
  torchvision's ResNet50 (fc removed) one crop at a time (2048-d).

On ``--device cuda`` the same steps run on the GPU (fp32, one image and one crop per forward).
Vectors are L2-normalised and kept in a list; at the end they go into an exact FAISS index, as the
project's pipeline also ends with one.

As a whole command, the way a seed script ran (its heavy imports at the top, seeded random weights,
score threshold 0, the FAISS index written at the end)::

    python scripts/benchmark_reference.py --embedder roi --images DIR --objects 10 --out index.faiss
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models import resnet50
from torchvision.transforms import functional as TF

from retrieval.models.crop_embedder import IMAGENET_MEAN, IMAGENET_STD
from retrieval.models.detectors.faster_rcnn import build_faster_rcnn
from retrieval.models.weights import seeded_init


class ReferenceIndexer:
    """Seed-style indexing with the same seeded random weights as ``--weights random`` (or a state_dict file)."""

    def __init__(
        self,
        embedder: str,
        min_size: int,
        max_size: int,
        score_threshold: float,
        max_objects: int,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        self.device = device
        with seeded_init():
            self.detector = build_faster_rcnn(min_size, max_size).eval().to(device)
        self.detector.roi_heads.score_thresh = score_threshold
        self.detector.roi_heads.detections_per_img = max_objects
        self.embedder = embedder
        if embedder == "resnet50":
            with seeded_init():
                self.resnet = resnet50(weights=None).eval().to(device)
            self.resnet.fc = torch.nn.Identity()

    @torch.no_grad()
    def index(self, paths: Sequence[Path]) -> tuple[faiss.Index, int]:
        """Index ``paths``; returns the FAISS index and the number of objects."""
        vectors = []
        for path in paths:
            image = Image.open(path).convert("RGB")
            boxes, image_vectors = self._detect_and_embed(image)
            vectors.append(image_vectors)
        matrix = np.vstack(vectors).astype(np.float32)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(matrix.shape[1]))
        index.add_with_ids(matrix, np.arange(len(matrix), dtype=np.int64))
        return index, len(matrix)

    def _detect_and_embed(self, image: Image.Image) -> tuple[torch.Tensor, np.ndarray]:
        """``(boxes (N, 4) original pixels, vectors (N, D))`` for one image."""
        model = self.detector
        pixels = TF.to_tensor(image).to(self.device)
        batch, _ = model.transform([pixels])
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
        detections, _ = model.roi_heads(features, proposals, batch.image_sizes)
        resized_boxes = detections[0]["boxes"]
        original = model.transform.postprocess(detections, batch.image_sizes, [pixels.shape[-2:]])[0]["boxes"]
        if self.embedder == "roi":
            heads = model.roi_heads
            pooled = heads.box_head(heads.box_roi_pool(features, [resized_boxes], batch.image_sizes))
            return original, F.normalize(pooled, dim=1).cpu().numpy()
        rows = []
        for x1, y1, x2, y2 in original.tolist():
            crop = image.crop((int(x1), int(y1), max(int(x2), int(x1) + 1), max(int(y2), int(y1) + 1)))
            crop = TF.normalize(TF.to_tensor(crop.resize((224, 224), Image.BILINEAR)), IMAGENET_MEAN, IMAGENET_STD)
            rows.append(F.normalize(self.resnet(crop.unsqueeze(0).to(self.device)), dim=1).cpu().numpy())
        return original, np.vstack(rows) if rows else np.zeros((0, 2048), np.float32)


def main() -> None:
    """The seed-style job as one script: build the models, index every photo in --images, write the index."""
    parser = argparse.ArgumentParser(description="Seed-style indexing as a whole command (for the benchmark).")
    parser.add_argument("--embedder", required=True, choices=("roi", "resnet50"))
    parser.add_argument("--images", required=True, type=Path, help="folder of .jpg, .jpeg or .png photos")
    parser.add_argument("--objects", type=int, default=10, help="detections kept per image")
    parser.add_argument("--out", required=True, help="the FAISS index file to write")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    indexer = ReferenceIndexer(args.embedder, 800, 1333, 0.0, args.objects, torch.device(args.device))
    index, objects = indexer.index(paths)
    faiss.write_index(index, args.out)
    print(f"{len(paths)} images, {objects} objects -> {args.out}")


if __name__ == "__main__":
    main()
