"""Runner: bring an index up to date with a gallery folder.

``build_index`` is the whole ``retrieval index`` command as a function. A new
index is created; an existing one is updated: new images are added, changed
ones (content hash) re-indexed, unchanged ones passed over without decoding,
and with ``prune`` images that are gone are removed. Progress is committed every
``commit_seconds``, so a killed run loses at most that much work and the same
command resumes it. Settings that would make old and new vectors incomparable
are refused unless ``rebuild``, which fills a new store beside the old one and
switches to it only when complete.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from ..annotations import load_annotations
from ..errors import StoreError
from ..sources.folder import GalleryListing, walk_gallery
from ..sources.images import DEFAULT_MAX_PIXELS
from ..index.layout import HEAD_NAME, PENDING_NAME, IndexLock, new_store_folder, point, read_pointer, remove_other_stores
from ..index.manifest import Manifest
from .mapper import ObjectMapper
from ..objects import ImageObjects
from .reader import GalleryImage, SkippedFile, UnchangedFile, batched, prefetched, read_images
from ..settings import IndexSettings
from ..index.store import StoreWriter

log = logging.getLogger(__name__)

COMMIT_SECONDS = 30.0


@dataclass
class IndexSummary:
    """What ``build_index`` did.

    Attributes:
        images, objects: indexed images and stored objects (vectors) after the run.
        added, updated, unchanged, removed: images new to the index, re-indexed because
            their content changed, passed over, and removed (``prune``).
        skipped: ``(path relative to the gallery, reason)`` for each file not indexed.
        gone: indexed images no longer in the gallery and kept (no ``prune``).
        rebuilt: True when a new store replaced the old one (``rebuild`` with other settings).
        seconds: wall time of the run.
        stage_seconds: time spent loading the models, waiting for decoded images (``read``), in the
            models (``map``) and writing.
    """

    images: int = 0
    objects: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    rebuilt: bool = False
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def existing_settings(index_dir: str | os.PathLike) -> IndexSettings | None:
    """The settings of the index in ``index_dir``, or ``None`` when there is none yet."""
    head = read_pointer(Path(index_dir)) if Path(index_dir).is_dir() else None
    return Manifest.load(Path(index_dir) / head).settings if head else None


def build_index(
    gallery: str | os.PathLike,
    index_dir: str | os.PathLike,
    settings: IndexSettings | None = None,
    *,
    rebuild: bool = False,
    prune: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    commit_seconds: float = COMMIT_SECONDS,
    progress: bool = True,
) -> IndexSummary:
    """Create or update the index in ``index_dir`` from the images under ``gallery``.

    Args:
        settings: what to index; ``None`` keeps an existing index's settings (defaults for a new one).
        rebuild: allow settings (or a gallery folder) other than the existing index's; the index is then
            rebuilt beside the old one, which keeps answering queries until the new one is complete.
        prune: remove indexed images whose files are gone from the gallery.
        max_pixels: skip images with more pixels than this, before decoding.
        commit_seconds: make progress durable at least this often (0: after every batch).
    """
    started = time.perf_counter()
    index_dir = Path(index_dir).absolute()
    new_folder = not index_dir.exists()
    try:
        summary = _build_locked(
            Path(gallery).absolute(), index_dir, settings, rebuild, prune, max_pixels, commit_seconds, progress
        )
    except BaseException:
        if new_folder and index_dir.is_dir() and read_pointer(index_dir) is None:
            shutil.rmtree(index_dir, ignore_errors=True)  # a first build that failed before it began leaves nothing
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _build_locked(
    root: Path,
    index_dir: Path,
    settings: IndexSettings | None,
    rebuild: bool,
    prune: bool,
    max_pixels: int,
    commit_seconds: float,
    progress: bool,
) -> IndexSummary:
    with IndexLock(index_dir):
        head = read_pointer(index_dir)
        current = Manifest.load(index_dir / head) if head else None
        settings = (settings or (current.settings if current else IndexSettings())).resolved()
        if current and not rebuild:
            _refuse_incomparable(index_dir, current, settings, str(root))
        listing = walk_gallery(root, exclude=(index_dir,))
        annotations = load_annotations(settings.annotations) if settings.objects == "annotations" else None
        if annotations is not None:
            annotations.check_images_exist(listing.images, str(listing.root))
        loading = time.perf_counter()
        mapper = ObjectMapper(settings, annotations)
        loaded_in = time.perf_counter() - loading
        detector, embedder = mapper.models
        wanted = Manifest(settings, embedder, detector, str(listing.root))
        if current and not rebuild and not _same_vectors(current, wanted):
            raise StoreError(
                f"index {index_dir} was built with other model weights ({_weights_change(current, wanted)}): "
                "its vectors would not compare with new ones; restore those weights or add --rebuild"
            )
        writer, replacing = _open_store(index_dir, current, wanted)
        try:
            summary = _update(
                writer,
                listing,
                mapper,
                max_pixels=max_pixels,
                prune=prune,
                commit_seconds=commit_seconds,
                progress=progress,
            )
            writer.close()
            summary.stage_seconds["load"] = loaded_in
        except StoreError as error:
            writer.abandon()
            kept = (
                "the index is unchanged and the rebuild keeps what it committed"
                if replacing
                else f"the index keeps its last committed state ({writer.manifest.counts['images']} images)"
            )
            raise StoreError(f"{error}; {kept}. Fix that, then run the same command again to resume") from None
        except BaseException:
            writer.abandon()
            raise
        if replacing:
            point(index_dir, HEAD_NAME, writer.folder)
            point(index_dir, PENDING_NAME, None)
            remove_other_stores(index_dir, keep={writer.folder.name})
            summary.rebuilt = True
    return summary


def _open_store(index_dir: Path, current: Manifest | None, wanted: Manifest) -> tuple[StoreWriter, bool]:
    """The store to write: the active one when it holds comparable vectors, else a new one.

    Returns ``(writer, replacing)``: ``replacing`` is True for a store that must become the
    active one when complete (a rebuild); a first build is active from the start.
    """
    head = read_pointer(index_dir)
    pending = read_pointer(index_dir, PENDING_NAME)
    if current is not None and _same_vectors(current, wanted):
        if pending is not None:
            point(index_dir, PENDING_NAME, None)
            remove_other_stores(index_dir, keep={head})
        return StoreWriter.open(index_dir / head, wanted.settings), False
    if pending is not None and pending != head and _pending_matches(index_dir / pending, wanted):
        log.info("resuming the rebuild in %s", index_dir / pending)
        return StoreWriter.open(index_dir / pending), True
    point(index_dir, PENDING_NAME, None)
    remove_other_stores(index_dir, keep={head} if head else set())
    writer = StoreWriter.create(new_store_folder(index_dir), wanted)
    if head is None:
        point(index_dir, HEAD_NAME, writer.folder)  # a first build is queryable from its first commit
        return writer, False
    point(index_dir, PENDING_NAME, writer.folder)
    return writer, True


def _update(
    writer: StoreWriter,
    listing: GalleryListing,
    mapper: ObjectMapper,
    *,
    max_pixels: int,
    prune: bool,
    commit_seconds: float,
    progress: bool,
) -> IndexSummary:
    """Bring ``writer``'s store in line with ``listing`` (reader → mapper → writer), committing as it goes."""
    summary = IndexSummary()
    known = writer.images()
    for rel_path, reason in listing.problems:
        _skip(writer, summary, SkippedFile(rel_path, reason))
    bar = tqdm(total=len(listing.images), unit="img", desc="indexing", disable=not progress, file=sys.stderr)
    decoded = read_images(listing.root, listing.images, known, mapper.source_key, max_pixels)
    items = _timed(prefetched(decoded, 2 * mapper.images_per_batch), summary.stage_seconds, "read")
    last_commit = time.perf_counter()
    for batch in batched(items, mapper.images_per_batch):
        images = [item for item in batch if isinstance(item, GalleryImage)]
        with _stage(summary.stage_seconds, "map"):
            found = _map_isolating_failures(mapper, images)
        with _stage(summary.stage_seconds, "write"):
            for item in batch:
                if isinstance(item, SkippedFile):
                    _skip(writer, summary, item)
                elif isinstance(item, UnchangedFile):
                    if item.file_size is not None:
                        writer.touch(item.rel_path, item.file_size, item.mtime_ns)
                    summary.unchanged += 1
            for item, objects in zip(images, found):
                if isinstance(objects, SkippedFile):
                    _skip(
                        writer,
                        summary,
                        dataclasses.replace(objects, file_size=item.image.file_size, mtime_ns=item.image.mtime_ns),
                    )
                    continue
                writer.put_image(item.rel_path, item.image, objects, item.source_key)
                if known.get(item.rel_path) is not None and known[item.rel_path].status == "indexed":
                    summary.updated += 1
                else:
                    summary.added += 1
            if time.perf_counter() - last_commit >= commit_seconds:
                writer.commit()
                last_commit = time.perf_counter()
        bar.update(len(batch))
        bar.set_postfix(new=summary.added + summary.updated, skipped=len(summary.skipped), refresh=False)
    bar.close()
    present = set(listing.images) | {rel_path for rel_path, _ in listing.problems}
    gone = [path for path, state in known.items() if path not in present and state.status == "indexed"]
    writer.remove(path for path, state in known.items() if path not in present and state.status == "skipped")
    if prune:
        summary.removed = writer.remove(gone)
    else:
        summary.gone = sorted(gone)
    counts = writer.counts()
    summary.images, summary.objects = counts["images"], counts["objects"]
    return summary


def _refuse_incomparable(index_dir: Path, current: Manifest, settings: IndexSettings, gallery: str) -> None:
    """Refuse settings or a gallery folder other than the index's (their vectors would not compare)."""
    before, after = current.settings.vector_settings(), settings.vector_settings()
    changes = [
        f"{name} {before.get(name, '(unused)')!r} → {after.get(name, '(unused)')!r}"
        for name in settings.to_dict()
        if before.get(name) != after.get(name)
    ]
    if current.gallery_root != gallery:
        changes.append(f"gallery {current.gallery_root} → {gallery}")
    if changes:
        raise StoreError(
            f"index {index_dir} was built with other settings ({'; '.join(changes)}): its vectors would not compare "
            "with new ones. Leave those options out to update it as it is, or add --rebuild to re-index everything"
        )


def _same_vectors(current: Manifest, wanted: Manifest) -> bool:
    """True when ``wanted`` would make vectors comparable with ``current``'s: same settings, models, gallery."""
    return (
        current.settings.vector_settings() == wanted.settings.vector_settings()
        and current.embedder == wanted.embedder
        and current.detector == wanted.detector
        and current.gallery_root == wanted.gallery_root
    )


def _pending_matches(folder: Path, wanted: Manifest) -> bool:
    try:
        return _same_vectors(Manifest.load(folder), wanted)
    except StoreError:
        return False


def _weights_change(current: Manifest, wanted: Manifest) -> str:
    parts = []
    for role in ("embedder", "detector"):
        before, after = getattr(current, role), getattr(wanted, role)
        if before != after:
            parts.append(f"{role} {_weights_name(before)} → {_weights_name(after)}")
    return "; ".join(parts)


def _weights_name(entry: dict | None) -> str:
    if entry is None:
        return "none"
    weights = entry["weights"]
    digest = weights.get("sha256") or weights.get("state_sha256", "")
    return f"{weights['source']} {weights.get('name') or weights.get('path') or ''} sha256 {digest[:12]}".replace(
        "  ", " "
    )


def _map_isolating_failures(mapper: ObjectMapper, images: list[GalleryImage]) -> list[ImageObjects | SkippedFile]:
    """Run the mapper on a batch; if it fails, run each image alone so one bad image cannot stop the run."""
    if not images:
        return []
    try:
        return mapper(images)
    except (RuntimeError, ValueError) as error:
        if len(images) > 1:
            return [result for image in images for result in _map_isolating_failures(mapper, [image])]
        log.debug("model failed on %s", images[0].rel_path, exc_info=True)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [SkippedFile(images[0].rel_path, f"the model failed on this image ({first_line[:200]})")]


def _skip(writer: StoreWriter, summary: IndexSummary, skipped: SkippedFile) -> None:
    writer.put_skipped(skipped.rel_path, skipped.reason, skipped.file_size, skipped.mtime_ns)
    summary.skipped.append((skipped.rel_path, skipped.reason))
    log.info("skipped %s: %s", skipped.rel_path, skipped.reason)


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] += time.perf_counter() - start


def _timed(items: Iterator, seconds: dict[str, float], name: str) -> Iterator:
    """Yield from ``items``, adding the time spent producing each to ``seconds[name]``."""
    while True:
        with _stage(seconds, name):
            item = next(items, None)
        if item is None:
            return
        yield item
