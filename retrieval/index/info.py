"""``retrieval info``: what an index holds and what made it, read from its manifest and metadata alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .layout import active_store
from .manifest import Manifest
from .metadata import read_overview

if TYPE_CHECKING:
    from .snapshot import IndexSnapshot


def index_info(index_dir: str | os.PathLike) -> dict:
    """``{"images", "videos", "frames", "objects", "skipped": [{"path", "reason"}], "incomplete": [{"path",
    "reason"}], "embedder", "dimension", "vectors", "manifest"}``.

    ``videos`` and ``frames`` count indexed videos and their indexed frames; ``incomplete`` lists the videos
    indexed only up to where they broke off, with why.

    ``vectors`` is the vector store's description (for FAISS ``{"store", "kind", "factory", "params",
    "trained_on"}``), with ``"search"`` when whitening or DBA derive the searched vectors (search_space.py).
    Counts come from the committed metadata, not from the manifest's copy; no model, vector library or vector
    file is loaded, so this is quick on any index.
    """
    directory = Path(index_dir)
    store = active_store(directory)
    manifest = Manifest.load(store)
    counts, skipped, incomplete = read_overview(store)
    return _info(directory, manifest, counts, skipped, incomplete)


def snapshot_info(snapshot: "IndexSnapshot") -> dict:
    """``index_info`` of a loaded snapshot."""
    counts = {name: snapshot.counts[name] for name in ("images", "videos", "frames", "objects")}
    return _info(snapshot.directory, snapshot.manifest, counts, *snapshot.problems())


def _info(
    directory: Path,
    manifest: Manifest,
    counts: dict[str, int],
    skipped: list[tuple[str, str]],
    incomplete: list[tuple[str, str]],
) -> dict:
    return {
        "index": str(directory),
        "gallery_root": manifest.gallery_root,
        "images": counts["images"],
        "videos": counts["videos"],
        "frames": counts["frames"],
        "objects": counts["objects"],
        "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
        "incomplete": [{"path": path, "reason": reason} for path, reason in incomplete],
        "embedder": manifest.embedder["name"],
        "dimension": manifest.dimension,
        "vectors": manifest.vectors,
        "manifest": manifest.to_dict(),
    }


def search_space_text(space: dict, dimension: int) -> str:
    """One line saying how the searched vectors derive from the stored ``dimension``-d ones (``space``: the
    ``"search"`` entry of the store description)."""
    parts = []
    if space["whiten"] and space["learned_on"]:
        parts.append(
            f"PCA-whitened to {space['dimension']} of {dimension} dimensions (learned on {space['learned_on']:,} "
            "vectors)"
        )
    elif space["whiten"]:
        parts.append("whitening not learned yet (it needs 2 vectors)")
    if space["dba"]:
        parts.append(f"DBA with {space['dba']} neighbours (alpha {space['dba_alpha']:g})")
    return ", ".join(parts)
