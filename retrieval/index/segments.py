"""Segment files of the FAISS store: one immutable FAISS index per commit's new vectors, and the listing of a
generation.

A store folder's FAISS files::

    vectors.<gen>.json      the listing of generation <gen>: its segments, trained index and deletions
    segment.<n>.faiss       a segment: the vectors one commit added (or a merge of segments), never changed
    trained.<n>.faiss       for trained kinds (ivf, ivfpq, factory IVF): the empty trained index whose coarse
                            quantizer (and codebooks) every segment shares; segments are written without it
    deleted.<gen>.npy       ids removed from the listed segments but still in their files (int64, sorted)
    vectors.<gen>.faiss     an index written before segments (one whole index per generation), read as one segment

A commit writes its new vectors as one new segment and its removals as a new deletions file, then the
listing, then SQLite commits the generation: what a commit writes grows with what it changes, not with the
store. A listing names only files that exist when it is written, and files are deleted only once no
committed listing names them (``discard``), so a reader of generation ``g`` finds every file ``g`` lists, or
(when a newer commit has just removed them) none, and reads again.

Segments are merged by size tier (``merge_choice``): ``MERGE_FACTOR`` segments of about the same size become
one, so a store of N vectors added 1,000 at a time holds at most about ``MERGE_FACTOR - 1`` segments per
power of ``MERGE_FACTOR`` and each vector is rewritten ``log(N / 1000) / log(MERGE_FACTOR)`` times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..errors import StoreError
from .faiss_kinds import ivf_of

MERGE_FACTOR = 10
SMALLEST_TIER = 1000  # segments up to this many vectors are one tier
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC  # codes and inverted lists are mapped from the file, read-only


@dataclass(frozen=True)
class Listing:
    """What generation ``gen`` of a FAISS store holds (``vectors.<gen>.json``).

    Attributes:
        segments: ``(file name, vector count)`` of each segment, oldest first; counts include deleted ids.
        trained: the trained index's file name, or ``None`` for kinds without training (flat, hnsw).
        deleted: the deletions file's name, or ``None`` when nothing listed is deleted.
        next_number: the number the next new segment or trained file gets.
        dimension: the vectors' dimension.
    """

    segments: tuple[tuple[str, int], ...] = ()
    trained: str | None = None
    deleted: str | None = None
    next_number: int = 1
    dimension: int = 0

    def names(self) -> set[str]:
        """Every file this listing needs."""
        return {name for name, _ in self.segments} | {name for name in (self.trained, self.deleted) if name}


def listing_path(folder: Path, generation: int) -> Path:
    return Path(folder) / f"vectors.{generation}.json"


def legacy_path(folder: Path, generation: int) -> Path:
    """The one-file index of ``generation`` that stores written before segments have."""
    return Path(folder) / f"vectors.{generation}.faiss"


def write_listing(folder: Path, generation: int, listing: Listing) -> None:
    values = {
        "segments": [list(entry) for entry in listing.segments],
        "trained": listing.trained,
        "deleted": listing.deleted,
        "next_number": listing.next_number,
        "dimension": listing.dimension,
    }
    atomic_write_text(listing_path(folder, generation), json.dumps(values, indent=1) + "\n")


def read_listing(folder: Path, generation: int) -> Listing | None:
    """The listing of ``generation``, or ``None`` when it has no file (a gone generation, or a legacy one)."""
    path = listing_path(folder, generation)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        segments = tuple((str(name), int(count)) for name, count in values["segments"])
        numbers = int(values["next_number"]), int(values["dimension"])
        return Listing(segments, values.get("trained"), values.get("deleted"), *numbers)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(f"{path} cannot be read ({error}); the index is damaged; rebuild it") from None


def write_index(path: Path, index: faiss.Index, shared_quantizer: bool = True) -> None:
    """Write ``index`` to ``path`` atomically (an ``OSError`` on failure); with ``shared_quantizer``, an
    inverted-list index is written without its coarse quantizer (segments share the trained index's,
    ``attach_quantizer``)."""
    ivf, empty = ivf_of(index) if shared_quantizer else None, faiss.IndexFlatIP(index.d)  # ``empty`` outlives the write
    if ivf is not None:
        own, quantizer = ivf.own_fields, ivf.quantizer
        ivf.own_fields, ivf.quantizer = False, empty

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:  # through Python: a failure is an OSError naming the cause
            faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))

    try:
        atomic_write(path, write)
    finally:
        if ivf is not None:
            ivf.quantizer, ivf.own_fields = quantizer, own


def read_index(path: Path, trained: faiss.Index | None, mapped: bool) -> faiss.Index:
    """Read a segment (memory-mapped when ``mapped``; then read-only) and give it ``trained``'s quantizer.

    ``FileNotFoundError`` when it is gone; ``StoreError`` when FAISS cannot read it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    try:
        index = faiss.read_index(str(path), MMAP_FLAGS if mapped else 0)
    except RuntimeError as error:
        if not Path(path).is_file():
            raise FileNotFoundError(path) from None
        raise StoreError(f"{path} cannot be read by FAISS ({str(error).splitlines()[0]}); rebuild the index") from None
    if trained is not None:
        attach_quantizer(index, trained)
    return index


def attach_quantizer(index: faiss.Index, trained: faiss.Index) -> None:
    """Make ``index`` (an inverted-list segment) search with ``trained``'s coarse quantizer, which it does not own."""
    ivf, shared = ivf_of(index), ivf_of(trained)
    if ivf is None or shared is None:
        return
    ivf.quantizer = shared.quantizer  # the caller keeps ``trained`` as long as ``index``
    ivf.own_fields = False


def write_deleted(path: Path, ids: np.ndarray) -> None:
    atomic_write(path, lambda temp: np.save(temp.open("wb"), np.asarray(ids, np.int64)))


def read_deleted(path: Path) -> np.ndarray:
    """``(K,)`` int64 sorted deleted ids; ``FileNotFoundError`` when the file is gone."""
    try:
        return np.load(path, allow_pickle=False).astype(np.int64)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise StoreError(f"{path} cannot be read ({error}); the index is damaged; rebuild it") from None


def merge_choice(counts: list[int]) -> list[int]:
    """Positions of the segments to merge next: ``MERGE_FACTOR`` segments of the smallest size tier that has
    that many (tier = power of ``MERGE_FACTOR`` of the count above ``SMALLEST_TIER``), or none."""
    tiers = [int(np.log(max(count, SMALLEST_TIER) / SMALLEST_TIER) / np.log(MERGE_FACTOR) + 1e-9) for count in counts]
    for tier in sorted(set(tiers)):
        members = [position for position, value in enumerate(tiers) if value == tier]
        if len(members) >= MERGE_FACTOR:
            return members[:MERGE_FACTOR]
    return []


