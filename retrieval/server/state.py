"""What a running server holds: the searcher (models loaded once), a detector for uploaded images, its
limits, and a thread that moves the searcher to each newly committed state of the index."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import threading
from dataclasses import dataclass

from ..errors import RetrievalError
from ..images import LoadedImage, decode_image_bytes
from ..models import FasterRCNNModel, build_detector, resolve_device
from ..search.searcher import Searcher
from ..validation import check_int, check_positive
from .auth import check_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """Request limits: an upload over ``max_upload_bytes`` or an image over ``max_pixels`` gets a 413;
    ``max_top_k`` bounds ``top_k``."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_top_k: int = 100

    def __post_init__(self) -> None:
        check_int("max_upload_bytes", self.max_upload_bytes, low=1)
        check_int("--max-pixels", self.max_pixels, low=1)
        check_int("max_top_k", self.max_top_k, low=1)

    @classmethod
    def from_options(cls, max_upload_mb: float = 20, max_pixels: int = 40_000_000) -> "ServerLimits":
        """The limits ``retrieval serve`` is given: ``--max-upload-mb`` (MiB, above 0) and ``--max-pixels``."""
        megabytes = check_positive("--max-upload-mb", max_upload_mb)
        return cls(max_upload_bytes=max(1, math.ceil(megabytes * 2**20)), max_pixels=max_pixels)


class NoDetector(RetrievalError):
    """The index's objects came from annotations or whole images: there is no detector to run."""


class ServerState:
    """The searcher and models behind every request.

    Model forwards run one at a time (``inference``): parallel requests would only share the same cores.
    ``watch`` polls the index every ``poll_seconds`` and swaps in a newer committed state (loading other
    models only after a ``--rebuild`` with other ones); a request being answered keeps the state it started with.
    With a ``token`` (16 or more printable ASCII characters), every request but the page's files must carry it
    (``Authorization: Bearer <token>``; see ``auth.py``); ``None`` serves without one.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        device: str = "auto",
        precision: str = "auto",
        limits: ServerLimits = ServerLimits(),
        token: str | None = None,
    ) -> None:
        self.token = None if token is None else check_token(token)
        self.searcher = Searcher(index_dir, device=device, precision=precision)
        self.limits = limits
        self.device = device
        self.precision = precision
        self.inference = threading.Lock()
        self._detector: tuple[dict, FasterRCNNModel] | None = None  # (the settings it was built for, it)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def detector(self) -> FasterRCNNModel:
        """The index's detector (its weights and thresholds): the roi embedder itself, or loaded on first use."""
        settings = self.searcher.snapshot.manifest.settings
        if not settings.uses_detector:
            raise NoDetector(f"this index's objects come from {settings.objects!r}, not from a detector")
        if isinstance(self.searcher.embedder, FasterRCNNModel):
            return self.searcher.embedder
        wanted = settings.vector_settings()
        if self._detector is None or self._detector[0] != wanted:
            model = build_detector(dataclasses.replace(settings, precision=self.precision), resolve_device(self.device))
            self._detector = (wanted, model)
        return self._detector[1]

    def decode_upload(self, data: bytes, name: str) -> LoadedImage:
        """An uploaded file as a ``LoadedImage`` (``ImageError`` when it is no image or over the pixel limit)."""
        rgb = decode_image_bytes(data, name=name, max_pixels=self.limits.max_pixels)
        return LoadedImage(rgb=rgb, sha256=hashlib.sha256(data).hexdigest(), file_size=len(data), mtime_ns=0)

    def watch(self, poll_seconds: float) -> None:
        """Start the thread that picks up newly committed states of the index."""
        self._watcher = threading.Thread(target=self._watch, args=(poll_seconds,), name="index-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                if self.searcher.refresh():
                    snapshot = self.searcher.snapshot
                    log.info("index updated: %d objects (generation %d)", len(snapshot.vectors), snapshot.generation)
            except RetrievalError as error:
                log.warning("index could not be reloaded, still answering from the last state: %s", error)
