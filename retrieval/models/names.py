"""Names the settings check before any model is loaded (no torch import here)."""

DETECTOR_NAMES = ("resnet50_fpn", "resnet50_fpn_v2", "mobilenet_v3_large_fpn", "mobilenet_v3_large_320_fpn")
DEFAULT_DETECTOR = "resnet50_fpn"
INPUT_SIZES: dict[str, tuple[int, int]] = {  # (min_size, max_size) torchvision builds each detector with
    "resnet50_fpn": (800, 1333),
    "resnet50_fpn_v2": (800, 1333),
    "mobilenet_v3_large_fpn": (800, 1333),
    "mobilenet_v3_large_320_fpn": (320, 640),
}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
TRAINING_DEVICES = ("cpu", "cuda")  # train-detector and evaluate-detector: no auto

# The COCO detectors' classes: model class i is COCO_CATEGORIES[i], as torchvision's COCO_V1 weights number them
# (0 the background, "N/A" the ids COCO left unused); the same for every architecture of DETECTOR_NAMES.
# fmt: off
COCO_CATEGORIES: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
# fmt: on
POOLINGS = ("auto", "gap", "gem", "mac", "cls")
CROP_MODES = ("squash", "pad")
