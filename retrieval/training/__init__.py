"""Fine-tuning a detector on one's own classes, and judging detections.

- ``data.py``: a YOLO or COCO dataset folder → train and val samples (pixel boxes, class numbers).
- ``metrics.py``: precision / recall / F1 / mean IoU at one IoU and score threshold, and COCO mAP.
- ``train.py``: ``retrieval train-detector``. ``evaluate.py``: ``retrieval evaluate-detector``.
"""

SPLITS = ("val", "train")  # the dataset splits evaluate-detector scores (light: the CLI's options use it)
