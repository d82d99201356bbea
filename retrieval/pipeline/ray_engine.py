"""The Ray engine: the mapper runs in a pool of Ray actors, which also read and decode the still images.

``open_ray_distributor`` joins a Ray cluster (``address``; ``None``: the one ``ray.init`` finds, else a new
local one), starts the pool and yields a ``RayDistributor``; on leaving, the actors are ended (and Ray is
shut down when this started it). Each actor builds the mapper and the gallery source once, from the same
builders the local engine uses (``WorkerRecipe``).

The driver (this process) runs the reader: what is new, changed or unchanged is decided from the store
here. Still images go to the workers as ``UnreadImage`` references and are read from the gallery path on
the worker's node (the same path on every node). Video frames are decoded here (a video is read
sequentially and its near-duplicate test needs the last kept frame) and their pixels sent.

A worker answers a batch with flat per-object rows (``MappedRows``), not per-image arrays (ragged outputs
break Arrow blocks, ray #31779/#54186; one array per batch also travels cheaper). Results are taken in
submission order, for the one writer. A worker that dies (killed, its node lost) is replaced and its
batches are sent again, so the run ends as an uninterrupted one would; ``MAX_TRIES`` deaths on one batch
stop the run (the index keeps its last commit, and the same command resumes).

The pool: one actor per GPU where the cluster has GPUs (and the settings allow CUDA), else one per
``CPUS_PER_ACTOR`` CPUs, or ``workers``; together they ask for ``CPU_SHARE`` of the cluster's CPUs, in
fractions, so none waits for a slot that other work holds (ray #44687).
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import EngineError, RetrievalError
from ..objects import ImageObjects
from ..sources import GallerySource
from ..text import plural
from .distributors import Mapper, map_isolating_failures
from .reader import GalleryImage, SkippedItem, UnchangedItem, UnreadImage, read_unread

log = logging.getLogger(__name__)

INSTALL = "--engine ray needs Ray, which is not installed here: pip install -e '.[ray]'"
CPUS_PER_ACTOR = 4  # torch threads per CPU actor: more actors of fewer threads each only add model copies
CPU_SHARE = 0.9  # of the cluster's CPUs the pool asks for: the rest stays free for Ray's own tasks
BATCHES_PER_ACTOR = 2  # in flight per actor: one running, one waiting, so no actor idles for the driver
MAX_TRIES = 3
STARTUP_SECONDS = 600.0  # for the pool to be placed and load its models


def import_ray() -> Any:
    """The ``ray`` module; ``EngineError`` saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise EngineError(INSTALL) from None
    return ray


@dataclass(frozen=True)
class WorkerRecipe:
    """What each actor builds once: the mapper, the gallery source it reads from, and the pixel limit."""

    mapper: Callable[[], Mapper]
    source: Callable[[], GallerySource]
    max_pixels: int


@dataclass(frozen=True)
class PoolShape:
    """How many actors, and what each asks of the cluster (``num_cpus``, ``num_gpus``) and uses (torch threads)."""

    actors: int
    num_cpus: float
    num_gpus: float
    threads: int


def pool_shape(nodes: Sequence[dict[str, float]], workers: int | None = None, gpus: bool = True) -> PoolShape:
    """The pool for a cluster whose live nodes hold ``nodes`` (Ray's resources, ``{"CPU": 8.0, "GPU": 1.0}``).

    ``workers``: the number of actors (default: one per GPU, else one per ``CPUS_PER_ACTOR`` CPUs);
    ``gpus``: GPU actors where the cluster has GPUs. An actor never asks for more CPUs than its largest node
    holds, and the pool for at most ``CPU_SHARE`` of them all.
    """
    cpus = sum(node.get("CPU", 0.0) for node in nodes)
    gpu_count = int(sum(node.get("GPU", 0.0) for node in nodes)) if gpus else 0
    actors = workers or gpu_count or max(1, int(cpus) // CPUS_PER_ACTOR)
    per_actor = min(cpus / actors, max((node.get("CPU", 0.0) for node in nodes), default=0.0))
    return PoolShape(
        actors=actors,
        num_cpus=round(per_actor * CPU_SHARE, 2),
        num_gpus=min(1.0, gpu_count / actors) if gpu_count else 0.0,
        threads=max(1, int(per_actor)),
    )


@dataclass(frozen=True)
class MappedRows:
    """A worker's answer for one batch of ``UnreadImage`` and ``GalleryImage`` items.

    Attributes:
        read: per item sent, in order: ``None`` for a decoded frame (the driver holds it), else what reading
            the ``UnreadImage`` gave: a ``GalleryImage`` without pixels (an ``(H, W, 0)`` array keeps the
            size), an ``UnchangedItem`` or a ``SkippedItem``.
        outcomes: per image mapped, in order: its number of objects, or the ``SkippedItem`` the mapper gave.
        boxes, labels, scores, vectors: the objects of all mapped images one after another: ``(M, 4)``
            float32 ``x1, y1, x2, y2`` in original pixels, ``M`` names or ``None``, ``(M,)`` float32,
            ``(M, D)`` float32 unit vectors.
    """

    read: list[GalleryImage | UnchangedItem | SkippedItem | None]
    outcomes: list[int | SkippedItem]
    boxes: np.ndarray
    labels: list[str | None]
    scores: np.ndarray
    vectors: np.ndarray


def pack_rows(work: Sequence, read: Sequence, found: Sequence[ImageObjects | SkippedItem]) -> MappedRows:
    """``MappedRows`` for the items ``work`` that were sent, ``read`` (each as reading left it) and the
    mapper's results ``found`` for the ``GalleryImage`` ones among ``read``."""
    objects = [result for result in found if isinstance(result, ImageObjects)]

    def stacked(name: str, tail: tuple[int, ...]) -> np.ndarray:
        return np.concatenate([getattr(o, name) for o in objects]) if objects else np.zeros((0, *tail), np.float32)

    return MappedRows(
        read=[None if item is sent else _without_pixels(item) for sent, item in zip(work, read)],
        outcomes=[len(result) if isinstance(result, ImageObjects) else result for result in found],
        boxes=stacked("boxes", (4,)),
        labels=[label for o in objects for label in o.labels],
        scores=stacked("scores", ()),
        vectors=stacked("vectors", (0,)),
    )


def unpack_rows(batch: Sequence, rows: MappedRows) -> tuple[list, list[ImageObjects | SkippedItem]]:
    """``(batch, results)`` as the writer takes them: ``batch`` with each ``UnreadImage`` replaced by what the
    worker read, and the mapper's result for each of its ``GalleryImage`` items."""
    answers = iter(rows.read)
    resolved = []
    for item in batch:
        answer = next(answers) if isinstance(item, (UnreadImage, GalleryImage)) else None
        resolved.append(item if answer is None else answer)
    found: list[ImageObjects | SkippedItem] = []
    start = 0
    for outcome in rows.outcomes:
        if isinstance(outcome, SkippedItem):
            found.append(outcome)
            continue
        part = slice(start, start + outcome)
        found.append(ImageObjects(rows.boxes[part], rows.labels[part], rows.scores[part], rows.vectors[part]))
        start += outcome
    return resolved, found


def _without_pixels(item: GalleryImage | UnchangedItem | SkippedItem) -> GalleryImage | UnchangedItem | SkippedItem:
    if not isinstance(item, GalleryImage):
        return item
    image = item.image
    sized = np.empty((image.height, image.width, 0), np.uint8)
    return dataclasses.replace(item, image=dataclasses.replace(image, rgb=sized))


class MapperWorker:
    """One actor of the pool: builds the mapper and the source once, then reads, decodes and maps batches."""

    def __init__(self, recipe: WorkerRecipe, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.max_pixels = recipe.max_pixels
        self.error: RetrievalError | None = None
        try:
            self.mapper = recipe.mapper()
            self.source = recipe.source()
        except RetrievalError as error:  # raised again by describe(), as itself rather than a dead actor
            self.error = error

    def describe(self) -> tuple[tuple[dict | None, dict], int]:
        """``(models, images_per_batch)`` of the loaded mapper."""
        if self.error is not None:
            raise self.error
        return self.mapper.models, self.mapper.images_per_batch

    def map(self, work: list[UnreadImage | GalleryImage]) -> MappedRows:
        """Read the ``UnreadImage`` items of ``work``, then map every image (see ``MappedRows``)."""
        read = [
            read_unread(self.source, item, self.max_pixels) if isinstance(item, UnreadImage) else item for item in work
        ]
        found = map_isolating_failures(self.mapper, [item for item in read if isinstance(item, GalleryImage)])
        return pack_rows(work, read, found)


@dataclass(eq=False)
class _InFlight:
    """A batch, the part of it sent to a worker (``work``), and where and how often it was sent."""

    batch: list
    work: list
    slot: int = 0
    actor: Any = None
    ref: Any = None
    tries: int = 0


class RayDistributor:
    """Maps batches on a pool of ``MapperWorker`` actors, ``BATCHES_PER_ACTOR`` in flight on each, results
    taken in order (see the module docstring)."""

    reads_items = True

    def __init__(self, ray: Any, recipe: WorkerRecipe, shape: PoolShape, source_key: Callable[[str], str | None]):
        self.ray = ray
        self.source_key = source_key
        self.lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)
        worker = ray.remote(MapperWorker).options(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus, max_restarts=0)
        self._start = lambda: worker.remote(recipe, shape.threads)
        self.actors = [self._start() for _ in range(shape.actors)]
        self.loads = [0] * shape.actors
        try:
            described = _get(ray, [actor.describe.remote() for actor in self.actors], STARTUP_SECONDS, shape)
        except self.lost as error:
            self.close()
            raise EngineError(
                f"the Ray workers could not start ({_first_line(error)}): every node needs this package and "
                "its dependencies installed"
            ) from None
        except BaseException:
            self.close()
            raise
        self.models, self.images_per_batch = described[0]
        for models, _ in described[1:]:
            _check_same_models(self.models, models)

    def map(self, batches: Iterable[list]) -> Iterator[tuple[list, list[ImageObjects | SkippedItem]]]:
        in_flight: list[_InFlight] = []
        for batch in batches:
            entry = _InFlight(batch, [item for item in batch if isinstance(item, (UnreadImage, GalleryImage))])
            if entry.work:
                self._send(entry)
            in_flight.append(entry)
            if len(in_flight) > BATCHES_PER_ACTOR * len(self.actors):
                yield self._collect(in_flight.pop(0))
        while in_flight:
            yield self._collect(in_flight.pop(0))

    def close(self) -> None:
        """End the pool's actors."""
        for actor in self.actors:
            self.ray.kill(actor)

    def _send(self, entry: _InFlight) -> None:
        """Submit ``entry.work`` to the actor with the fewest batches in flight."""
        entry.slot = min(range(len(self.actors)), key=self.loads.__getitem__)
        entry.actor = self.actors[entry.slot]
        entry.ref = entry.actor.map.remote(entry.work)
        self.loads[entry.slot] += 1

    def _collect(self, entry: _InFlight) -> tuple[list, list[ImageObjects | SkippedItem]]:
        """The batch's ``(batch, results)``, waiting for its worker; sent again while workers die."""
        while entry.work:
            try:
                rows = _get(self.ray, entry.ref)
            except self.lost as error:
                self.loads[entry.slot] -= 1
                self._send_again(entry, error)
                continue
            self.loads[entry.slot] -= 1
            return unpack_rows(entry.batch, rows)
        return entry.batch, []

    def _send_again(self, entry: _InFlight, error: Exception) -> None:
        """Replace ``entry``'s dead actor (once, whichever of its batches noticed first) and send it again."""
        entry.tries += 1
        reason = _first_line(error)
        if entry.tries >= MAX_TRIES:
            raise EngineError(
                f"Ray workers died {plural(entry.tries, 'time')} on the batch from {entry.work[0].key} ({reason}); "
                "the index keeps its last commit: run the same command again to resume"
            )
        if self.actors[entry.slot] is entry.actor:
            log.warning("a Ray worker died (%s); starting another and sending its batches again", reason)
            self.actors[entry.slot] = self._start()
            models, _ = _get(self.ray, self.actors[entry.slot].describe.remote(), STARTUP_SECONDS)
            _check_same_models(self.models, models)
        self._send(entry)


@contextmanager
def open_ray_distributor(
    recipe: WorkerRecipe,
    source_key: Callable[[str], str | None],
    address: str | None = None,
    workers: int | None = None,
    gpus: bool = True,
) -> Iterator[RayDistributor]:
    """A ``RayDistributor`` on the cluster at ``address`` (ignored when this process already joined one),
    ``workers`` actors (default: from the cluster's resources), GPU actors where there are GPUs and ``gpus``."""
    ray = import_ray()
    started = _connect(ray, address)
    try:
        shape = pool_shape([node["Resources"] for node in ray.nodes() if node["Alive"]], workers, gpus)
        log.info("Ray: %d mapper workers of %g CPUs and %g GPUs each", shape.actors, shape.num_cpus, shape.num_gpus)
        distributor = RayDistributor(ray, recipe, shape, source_key)
        try:
            yield distributor
        finally:
            distributor.close()
    finally:
        if started:
            ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (``None``: the one Ray finds, else a new local one) unless this process
    already has; True when this call joined."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a Ray cluster (none found, and none could start)"
        raise EngineError(
            f"cannot join {where}: {_first_line(error)}; start one with 'ray start --head' and pass the address "
            "it prints to --ray-address"
        ) from None
    return True


def _get(ray: Any, refs: Any, timeout: float | None = None, shape: PoolShape | None = None) -> Any:
    """``ray.get(refs)``, with a ``RetrievalError`` raised in a worker raised again here as itself, and a pool
    that does not start within ``timeout`` seconds an ``EngineError``."""
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, RetrievalError):
            raise error.cause from None
        raise
    except ray.exceptions.GetTimeoutError:
        asked = f" of {shape.num_cpus:g} CPUs and {shape.num_gpus:g} GPUs each" if shape else ""
        raise EngineError(
            f"the Ray cluster did not start the mapper workers{asked} within {STARTUP_SECONDS:g} s: it may "
            "have no room for them; pass fewer --workers"
        ) from None


def _check_same_models(first: tuple[dict | None, dict], other: tuple[dict | None, dict]) -> None:
    if other != first:
        raise EngineError(
            "the Ray workers loaded different model weights: every node needs the same weights files at "
            "the same paths (and the same packages)"
        )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
