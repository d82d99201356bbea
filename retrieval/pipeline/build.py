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

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

from ..annotations import AnnotationSet, load_annotations
from ..errors import SettingsError, StoreError
from ..images import DEFAULT_MAX_PIXELS
from ..index.layout import HEAD_NAME, PENDING_NAME, IndexLock, new_store_folder, point, read_pointer, remove_other_stores
from ..index.manifest import Manifest
from ..index.store import StoreWriter
from ..settings import IndexSettings
from ..sources import GallerySource, SourceListing, open_source
from ..sources.video import VideoSampling
from ..validation import check_choice, check_float, check_int
from .distributors import Distributor, LocalDistributor
from .mapper import ObjectMapper
from .reader import SkippedItem, read_items
from .runner import run_pipeline
from .writer import IndexSummary, IndexWriter

log = logging.getLogger(__name__)

COMMIT_SECONDS = 30.0
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BuildOptions:
    """How a run goes (not what the index holds): see ``build_index``'s arguments."""

    rebuild: bool = False
    prune: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    commit_seconds: float = COMMIT_SECONDS
    progress: bool = True
    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        check_int("--max-pixels", self.max_pixels, 1)
        check_float("--commit-every", self.commit_seconds, 0.0)
        check_choice("--engine", self.engine, ENGINES)
        if self.workers is not None:
            check_int("--workers", self.workers, 1)
        if self.engine != "ray" and (self.ray_address is not None or self.workers is not None):
            raise SettingsError("--ray-address and --workers are for --engine ray: add it, or leave them out")


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
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
) -> IndexSummary:
    """Create or update the index in ``index_dir`` from the images under ``gallery``.

    Args:
        settings: what to index; ``None`` keeps an existing index's settings (defaults for a new one).
        rebuild: allow settings (or a gallery folder) other than the existing index's; the index is then
            rebuilt beside the old one, which keeps answering queries until the new one is complete.
        prune: remove indexed images whose files are gone from the gallery.
        max_pixels: skip images with more pixels than this, before decoding.
        commit_seconds: make progress durable at least this often (0: after every batch).
        engine: where the models run: ``local`` (this process) or ``ray`` (an actor pool on the Ray cluster
            at ``ray_address``, default the one Ray finds or starts here, of ``workers`` actors, default
            one per GPU or per 4 CPUs; see ``pipeline/ray_engine.py``). The index is the same either way.
    """
    max_pixels, commit_seconds = check_int("--max-pixels", max_pixels, low=1), check_float(
        "--commit-every", commit_seconds, low=0
    )
    started = time.perf_counter()
    options = BuildOptions(rebuild, prune, max_pixels, commit_seconds, progress, engine, ray_address, workers)
    index_dir = Path(index_dir).absolute()
    new_folder = not index_dir.exists()
    try:
        summary = _build_locked(Path(gallery).absolute(), index_dir, settings, options)
    except BaseException:
        if new_folder and index_dir.is_dir() and read_pointer(index_dir) is None:
            shutil.rmtree(index_dir, ignore_errors=True)  # a first build that failed before it began leaves nothing
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _build_locked(root: Path, index_dir: Path, settings: IndexSettings | None, options: BuildOptions) -> IndexSummary:
    with IndexLock(index_dir), contextlib.ExitStack() as running:
        head = read_pointer(index_dir)
        current = Manifest.load(index_dir / head) if head else None
        settings = (settings or (current.settings if current else IndexSettings())).resolved()
        settings.check_parts()
        if current and not options.rebuild:
            _refuse_incomparable(index_dir, current, settings, str(root))
        source = open_source(settings.source, root, exclude=(index_dir,))
        listing = source.listing()
        annotations = load_annotations(settings.annotations) if settings.objects == "annotations" else None
        if annotations is not None:
            annotations.check_images_exist(listing.keys, str(listing.root))
        loading = time.perf_counter()
        distributor = running.enter_context(_open_distributor(settings, annotations, source, options))
        loaded_in = time.perf_counter() - loading
        detector, embedder = distributor.models
        wanted = Manifest(settings, embedder, detector, str(listing.root))
        if current and not options.rebuild and not _same_vectors(current, wanted):
            raise StoreError(
                f"index {index_dir} was built with other model weights ({_weights_change(current, wanted)}): "
                "its vectors would not compare with new ones; restore those weights or add --rebuild"
            )
        writer, replacing = _open_store(index_dir, current, wanted)
        try:
            summary = _update(writer, source, listing, distributor, options)
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


@contextlib.contextmanager
def _open_distributor(
    settings: IndexSettings, annotations: AnnotationSet | None, source: GallerySource, options: BuildOptions
) -> Iterator[Distributor]:
    """The distributor ``options.engine`` names, its mappers built from ``settings``; ended on leaving."""

    def mapper() -> ObjectMapper:
        return ObjectMapper(settings, annotations)

    if options.engine == "local":
        yield LocalDistributor(mapper)
        return
    from .ray_engine import WorkerRecipe, open_ray_distributor

    recipe = WorkerRecipe(mapper, partial(open_source, settings.source, source.root), options.max_pixels)
    source_key = annotations.key_for if annotations is not None else _no_source_key
    gpus = settings.device != "cpu"
    with open_ray_distributor(recipe, source_key, options.ray_address, options.workers, gpus) as distributor:
        yield distributor


def _no_source_key(key: str) -> None:
    """Boxes come from the image alone (``ObjectMapper.source_key`` without annotations)."""
    return None


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
    store: StoreWriter, source: GallerySource, listing: SourceListing, distributor: Distributor, options: BuildOptions
) -> IndexSummary:
    """Bring ``store`` in line with ``listing`` (reader → distributor → writer), committing as it goes."""
    settings = store.manifest.settings
    sampling = None if settings.objects == "annotations" else VideoSampling(settings.video_fps, settings.video_min_change)
    writer = IndexWriter(store, options.commit_seconds)
    for key, reason in listing.problems:
        writer.skip(SkippedItem(key, reason))
    decode = not distributor.reads_items
    items = read_items(source, listing.keys, writer.known, distributor.source_key, options.max_pixels, sampling, decode)
    run_pipeline(items, len(listing.keys), distributor, writer, options.progress)
    present = set(listing.keys) | {key for key, _ in listing.problems}
    return writer.finish(present, options.prune)


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
