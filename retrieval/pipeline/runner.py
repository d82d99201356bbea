"""Runner: reader → distributor (mapper) → writer, with a progress bar and time per stage.

``run_pipeline`` receives the three parts already built (clip-retrieval's runner shape): the reader's
items, the distributor that maps batches of them, and the writer that stores the results.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

from tqdm import tqdm

from .distributors import Distributor
from .reader import ForgetFile, batched, prefetched
from .writer import IndexWriter


def run_pipeline(
    items: Iterable, total: int, distributor: Distributor, writer: IndexWriter, progress: bool = True
) -> None:
    """Map and write every item of ``items`` (from ``total`` gallery files, for the progress bar: it counts
    files, and the frames read from videos beside them)."""
    seconds = writer.summary.stage_seconds
    bar = tqdm(total=total, unit="file", desc="indexing", disable=not progress, file=sys.stderr)
    frames = 0
    ahead = _timed(prefetched(items, 2 * distributor.images_per_batch), seconds, "read")
    mapped = _timed(distributor.map(batched(ahead, distributor.images_per_batch)), seconds, "map", within="read")
    for batch, found in mapped:
        with stage(seconds, "write"):
            writer.write(batch, found)
        bar.update(sum(item.completes_file for item in batch))
        frames += sum(not item.completes_file and not isinstance(item, ForgetFile) for item in batch)
        summary = writer.summary
        counts = {"new": summary.added + summary.updated, "skipped": len(summary.skipped)}
        bar.set_postfix({**counts, **({"frames": frames} if frames else {})}, refresh=False)
    bar.close()


@contextmanager
def stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the time spent in the ``with`` block to ``seconds[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] += time.perf_counter() - start


def _timed(items: Iterator, seconds: dict[str, float], name: str, within: str | None = None) -> Iterator:
    """Yield from ``items``, adding the time spent producing each to ``seconds[name]``, less the time
    that producing it added to ``seconds[within]`` (a stage it pulls from)."""
    while True:
        start, before = time.perf_counter(), seconds[within] if within else 0.0
        item = next(items, None)
        seconds[name] += time.perf_counter() - start - ((seconds[within] - before) if within else 0.0)
        if item is None:
            return
        yield item
