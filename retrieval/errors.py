"""Errors a user can cause, each with a message that names the thing and the fix.

The CLI prints any ``RetrievalError`` as one line and exits non-zero; anything
else is a bug in this package and keeps its traceback.
"""


class RetrievalError(Exception):
    """Base class for every error caused by input, files or settings."""


class ImageError(RetrievalError):
    """An image file cannot be read, decoded or is refused (too large, empty)."""


class BoxError(RetrievalError):
    """A box is malformed, has no area, or lies outside its image."""


class WeightsError(RetrievalError):
    """Model weights cannot be found, downloaded or loaded."""


class AnnotationsError(RetrievalError):
    """An annotations file (COCO JSON or YOLO labels) is missing or malformed."""


class GroundTruthError(RetrievalError):
    """A ground-truth file for ``evaluate`` is missing or malformed."""


class StoreError(RetrievalError):
    """An index directory is missing, inconsistent, or was built with other models."""


class SettingsError(RetrievalError):
    """An option value is invalid or does not fit the other options."""


class QueryFileError(RetrievalError):
    """A batch query file (``query --batch``) is missing or malformed, or one of its lines is."""


class EngineError(RetrievalError):
    """An indexing engine cannot run: Ray is not installed, its cluster cannot be reached or has no room,
    or its workers keep dying."""
