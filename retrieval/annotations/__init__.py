"""Boxes users already have, COCO files and YOLO labels, parsed once for indexing and for training.

``coco.py`` reads a COCO file, ``yolo.py`` YOLO label files and class names, ``gallery.py`` matches their
entries to the images of a folder (``AnnotationSet``). Boxes come out as ``x1, y1, x2, y2`` original pixels.
"""

from .coco import CocoBox, CocoFile, CocoImage, read_coco
from .gallery import AnnotationSet, coco_annotations, load_annotations
from .yolo import YoloBox, find_class_names, labels_folder_of, parse_line, read_label_file

__all__ = [
    "AnnotationSet",
    "CocoBox",
    "CocoFile",
    "CocoImage",
    "YoloBox",
    "coco_annotations",
    "find_class_names",
    "labels_folder_of",
    "load_annotations",
    "parse_line",
    "read_coco",
    "read_label_file",
]
