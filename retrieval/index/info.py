"""``retrieval info``: what an index holds and what made it."""

from __future__ import annotations

import os

from .snapshot import IndexSnapshot


def index_info(index_dir: str | os.PathLike) -> dict:
    """``{"images", "objects", "skipped": [{"path", "reason"}], "embedder", "dimension", "vectors", "manifest"}``.

    ``vectors`` is the FAISS index: ``{"kind", "factory", "params", "trained_on"}`` (vector_index.IndexPlan).

    Counts come from the committed metadata, not from the manifest's copy.
    """
    return snapshot_info(IndexSnapshot.load(index_dir))


def snapshot_info(snapshot: IndexSnapshot) -> dict:
    """``index_info`` of a loaded snapshot."""
    manifest = snapshot.manifest
    return {
        "index": str(snapshot.directory),
        "gallery_root": manifest.gallery_root,
        "images": len(snapshot.image_paths),
        "objects": int(snapshot.index.ntotal),
        "skipped": [{"path": path, "reason": reason} for path, reason in snapshot.skipped],
        "embedder": manifest.embedder["name"],
        "dimension": manifest.dimension,
        "vectors": manifest.vectors,
        "manifest": manifest.to_dict(),
    }
