"""The manifest: what made an index's vectors, written as ``manifest.json``.

It records the format version, the settings, each model's name and weights
identity (sha256 for files), the vector dimension, the gallery root and the
counts. Queries rebuild their models from it.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import StoreError
from ..settings import IndexSettings

FORMAT_VERSION = 2  # 2: items with keys (metadata schema 2), vector stores by name; 1 is read and migrated
READABLE_VERSIONS = (1, 2)
FLAT_FAISS = {"store": "faiss", "kind": "flat", "factory": "Flat", "params": {}, "trained_on": 0}
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``.

    Attributes:
        settings: the ``IndexSettings`` the index was built with.
        embedder: ``{"name": "roi" | "resnet50", "dimension": D, "weights": identity}``.
        detector: ``{"name": "fasterrcnn_<architecture>", "weights": identity}`` (for a checkpoint, identity
            holds its path, sha256, architecture and classes), or ``None``
            when no detector was used (``resnet50`` with whole images or annotations).
        gallery_root: the gallery folder, absolute.
        vectors: the vector store's description: ``{"store": name, ...}`` (for ``faiss`` the index kind, factory
            string, search parameters and training count).
        counts: ``{"images", "objects", "skipped"}`` (indexed images, vectors, skipped files), with ``"videos"``
            and ``"frames"`` (indexed videos and their sampled frames) when the index holds any.
        versions: library versions that built the index (informative).
    """

    settings: IndexSettings
    embedder: dict
    detector: dict | None
    gallery_root: str
    vectors: dict = field(default_factory=lambda: dict(FLAT_FAISS))
    counts: dict = field(default_factory=lambda: {"images": 0, "objects": 0, "skipped": 0})
    versions: dict = field(default_factory=lambda: library_versions())
    created_at: str = field(default_factory=lambda: _now())
    updated_at: str = field(default_factory=lambda: _now())
    format_version: int = FORMAT_VERSION

    @property
    def dimension(self) -> int:
        return int(self.embedder["dimension"])

    def with_counts(self, images: int, objects: int, skipped: int, videos: int = 0, frames: int = 0) -> "Manifest":
        counts = {"images": images, "objects": objects, "skipped": skipped}
        if videos or frames:
            counts.update(videos=videos, frames=frames)
        return replace(self, counts=counts, updated_at=_now())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "embedder": self.embedder,
            "detector": self.detector,
            "dimension": self.dimension,
            "gallery_root": self.gallery_root,
            "vectors": self.vectors,
            "counts": self.counts,
            "settings": self.settings.to_dict(),
            "versions": self.versions,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def save(self, directory: Path) -> None:
        atomic_write_text(Path(directory) / MANIFEST_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "Manifest":
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise StoreError(f"{directory} is not an index (no {MANIFEST_NAME}); build one with 'retrieval index'")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            version = data["format_version"]
            if version not in READABLE_VERSIONS:
                raise StoreError(
                    f"{path} has format version {version}; this version of retrieval reads "
                    f"{', '.join(map(str, READABLE_VERSIONS))}: rebuild the index with this version "
                    "('retrieval index GALLERY --index DIR --rebuild') or use a newer retrieval"
                )
            return cls(
                settings=IndexSettings.recorded(data["settings"]),
                embedder=data["embedder"],
                detector=data["detector"],
                gallery_root=data["gallery_root"],
                vectors={"store": "faiss", **data.get("vectors", FLAT_FAISS)},  # format 1: FAISS, flat before kinds
                counts=data["counts"],
                versions=data.get("versions", {}),
                created_at=data.get("created_at", ""),
                updated_at=data.get("updated_at", ""),
                format_version=version,
            )
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise StoreError(f"{path} is damaged ({type(error).__name__}: {error}); rebuild the index") from None


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries behind the vectors (read from package metadata, not imported)."""
    versions = {}
    for name, package in (("torch", "torch"), ("torchvision", "torchvision"), ("faiss", "faiss-cpu")):
        try:
            versions[name] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
