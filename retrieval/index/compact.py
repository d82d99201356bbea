"""``retrieval compact``: merge an index's vector segments into one and drop removed vectors for good."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from .layout import IndexLock, active_store
from .store import StoreWriter
from .stores import store_name


@dataclass(frozen=True)
class CompactSummary:
    """``merged`` segments became one, ``dropped`` removed vectors left the files, ``vectors`` remain; in
    ``seconds``."""

    merged: int
    dropped: int
    vectors: int
    seconds: float


def compact_index(index_dir: str | os.PathLike) -> CompactSummary:
    """Merge every segment of index ``index_dir``'s vectors into one, in one commit (crash-safe as any).

    ``StoreError`` when its vector store has no segments to merge (Milvus compacts its own).
    """
    index_dir = Path(index_dir).absolute()
    active_store(index_dir)  # a missing or non-index folder is refused before the lock would create it
    started = time.perf_counter()
    with IndexLock(index_dir):
        writer = StoreWriter.open(active_store(index_dir))
        try:
            compact = getattr(writer.vectors, "compact", None)
            if compact is None:
                name = store_name(writer.manifest.vectors)
                raise StoreError(f"index {index_dir} keeps its vectors in {name}, which compacts its own; nothing to do")
            merged, dropped = compact()
            writer.changed = writer.changed or bool(merged)
            writer.close()
        except BaseException:
            writer.abandon()
            raise
    return CompactSummary(merged, dropped, len(writer.vectors), time.perf_counter() - started)
