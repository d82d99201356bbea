"""Search: a query image (or video frame) and box → the most similar gallery objects or items.

``Searcher`` loads an index snapshot and the models its manifest names once,
then answers any number of queries, one at a time (``query``) or in batches
(``query_many``). Score = cosine similarity = inner product of unit vectors, in
the index's search space (whitened and DBA vectors when the index has them,
``index/search_space.py``), with the query re-ranked (α-QE) on request.
Results are grouped by item (a still image, or a video by its best frame) or
by object, consecutive matching frames of a video merged (``grouping.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..errors import RetrievalError, StoreError
from ..images import LoadedImage
from ..models import Embedder, build_embedder, resolve_device
from ..index.snapshot import IndexSnapshot, ObjectRows, committed_version
from ..validation import check_choice, check_int
from .queries import QUERY_BATCH, Query, embedded_batches, load_query_image, query_boxes
from .grouping import group_hits
from .rerank import Rerank, expand_queries

GROUPS = ("image", "object")


@dataclass(frozen=True)
class SearchResult:
    """One ranked gallery object, or item (a still image or a video, represented by its best object).

    Attributes:
        rank: 1 for the best.
        score: cosine similarity with the query, in [-1, 1].
        image: absolute path of the gallery file the item comes from (for a video frame: the video).
        box: ``[x1, y1, x2, y2]`` in that image's (frame's) original pixels.
        label: class name, or ``None``.
        detection_score: the detector's score, or ``None`` for given boxes.
        object_id: the object's id (its vector's id in the store).
        item: the gallery item's key (a folder's image: its path relative to the gallery; a video frame:
            ``<video path>#t=<seconds>``).
        video: for a video frame, the video's absolute path (as ``image``); ``None`` for a still image.
        frame: the frame's number in its video (0 = the first decoded); ``None`` for a still image.
        time: the frame's time in seconds; ``None`` for a still image.
        span: ``[start, end]`` seconds of the run of consecutive matching frames this hit stands for
            (``grouping.py``; start == end == time for one frame); ``None`` for a still image.
    """

    rank: int
    score: float
    image: str
    box: list[float]
    label: str | None
    detection_score: float | None
    object_id: int
    item: str = ""
    video: str | None = None
    frame: int | None = None
    time: float | None = None
    span: list[float] | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Searcher:
    """Answers queries against one index with the models that built it.

    ``refresh`` moves it to the index's latest committed state (a server calls it while the index is
    being updated); each query reads one state from start to end, whatever refresh does meanwhile.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        device: str = "auto",
        embedder: Embedder | None = None,
        precision: str = "auto",
    ) -> None:
        """Load ``index_dir`` and the models its manifest names, on ``device`` in ``precision``.

        The precision need not be the one the index was built with: bf16 and fp32 vectors of a box agree
        to a cosine above 0.99. ``embedder`` lets a caller share loaded models (it must be the index's).
        """
        self.index_dir = index_dir
        self.device = device
        self.precision = precision
        snapshot = IndexSnapshot.load(index_dir)
        self._state = (snapshot, self._embedder_for(snapshot, embedder))

    @property
    def state(self) -> tuple[IndexSnapshot, Embedder]:
        """The ``(snapshot, embedder)`` held now; use both from one read to stay within one state."""
        return self._state

    @property
    def snapshot(self) -> IndexSnapshot:
        return self._state[0]

    @property
    def embedder(self) -> Embedder:
        return self._state[1]

    def refresh(self) -> bool:
        """Load the index's latest committed state if it is newer than the one held; True when it was.

        Models are kept unless the new state was built with others (a ``--rebuild``): then they are loaded.
        """
        held, embedder = self._state
        if committed_version(self.index_dir) == held.version:
            return False
        snapshot = IndexSnapshot.load(self.index_dir)
        same_models = snapshot.manifest.embedder == held.manifest.embedder and (
            snapshot.manifest.settings.vector_settings() == held.manifest.settings.vector_settings()
        )
        self._state = (snapshot, embedder if same_models else self._embedder_for(snapshot, None))
        return True

    def _embedder_for(self, snapshot: IndexSnapshot, embedder: Embedder | None) -> Embedder:
        manifest = snapshot.manifest
        if embedder is None:
            settings = dataclasses.replace(manifest.settings, precision=self.precision)
            embedder = build_embedder(settings, resolve_device(self.device))
        expected = manifest.embedder["weights"]
        if embedder.identity != expected or embedder.dimension != manifest.dimension:
            raise StoreError(
                f"index {self.index_dir} was built with {manifest.embedder['name']} weights {_describe(expected)}, "
                f"but the model loaded now has {_describe(embedder.identity)}: "
                "restore those weights or rebuild the index"
            )
        return embedder

    def embed_query(
        self, image: LoadedImage | str | os.PathLike, box: Sequence[float] | None = None, time: float | None = None
    ) -> np.ndarray:
        """The ``(D,)`` unit vector of ``box`` (original pixels; ``None`` = the whole image) in ``image`` (a
        video file: its frame at ``time`` seconds)."""
        return embed_box(self.embedder, image, box, time)

    def query(
        self,
        image: LoadedImage | str | os.PathLike,
        box: Sequence[float] | None = None,
        top_k: int = 10,
        group: str = "image",
        rerank: Rerank | None = None,
        time: float | None = None,
    ) -> list[SearchResult]:
        """The ``top_k`` best gallery items (``group="image"``: still images and videos, each by its best
        object) or objects, for ``box`` in ``image`` (a video file: its frame at ``time`` seconds);
        ``rerank`` re-ranks (α-QE; default none)."""
        snapshot, embedder = self._state
        return rank(snapshot, embed_box(embedder, image, box, time), top_k, group, rerank)

    def query_many(
        self,
        queries: Sequence[Query],
        top_k: int = 10,
        group: str = "image",
        batch_size: int = QUERY_BATCH,
        rerank: Rerank | None = None,
    ) -> list[list[SearchResult] | RetrievalError]:
        """``query`` for each of ``queries``, in order: its results, or the ``RetrievalError`` it alone raised
        (an unreadable image, a bad box, a time on a still image); one bad query does not stop the others.

        ``batch_size`` queries at a time go to one ``embed`` call and one store search; each image is read
        once however many queries use it. ``top_k`` and ``group`` are checked first (``SettingsError``). The
        results are ``query``'s (scores up to float rounding: FAISS scores 20 or more queries with BLAS).
        """
        return list(self.iter_query_many(queries, top_k, group, batch_size, rerank))

    def iter_query_many(
        self,
        queries: Sequence[Query],
        top_k: int = 10,
        group: str = "image",
        batch_size: int = QUERY_BATCH,
        rerank: Rerank | None = None,
    ) -> Iterator[list[SearchResult] | RetrievalError]:
        """``query_many``'s answers, yielded as each batch is done; all from the state held when it starts."""
        top_k, group = check_int("--top-k", top_k, low=1), check_choice("--group", group, GROUPS)
        batch_size = check_int("batch_size", batch_size, low=1)
        snapshot, embedder = self._state
        for batch in embedded_batches(embedder, queries, batch_size):
            vectors = [entry for entry in batch if not isinstance(entry, RetrievalError)]
            rows = np.stack(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)
            ranked = iter(rank_many(snapshot, rows, top_k, group, rerank))
            for entry in batch:
                yield entry if isinstance(entry, RetrievalError) else next(ranked)

    def search(
        self, vector: np.ndarray, top_k: int = 10, group: str = "image", rerank: Rerank | None = None
    ) -> list[SearchResult]:
        """Rank by similarity with the embedder vector ``vector`` (``(D,)`` float32); see ``query``."""
        return rank(self.snapshot, vector, top_k, group, rerank)


def embed_box(
    embedder: Embedder, image: LoadedImage | str | os.PathLike, box: Sequence[float] | None, time: float | None = None
) -> np.ndarray:
    """The ``(D,)`` unit vector of ``box`` (original pixels; ``None`` = the whole image) in ``image`` (a video
    file: its frame at ``time`` seconds, ``load_query_image``)."""
    if not isinstance(image, LoadedImage) or time is not None:
        image = load_query_image(image, time)
    return embedder.embed([image.rgb], [query_boxes(image, box)])[0][0]


def rank(
    snap: IndexSnapshot, vector: np.ndarray, top_k: int = 10, group: str = "image", rerank: Rerank | None = None
) -> list[SearchResult]:
    """The ``top_k`` best objects of ``snap`` by inner product with ``vector`` (consecutive matching frames of a
    video merged into one hit), or with ``group="image"`` the best items (a still image, or a video), each
    represented by its best object.

    ``vector`` is the query's embedder unit vector (``(D,)``); it is brought into the snapshot's search space
    (whitened) and, with an active ``rerank``, expanded (α-QE) before the search.
    """
    return rank_many(snap, np.reshape(vector, (1, -1)), top_k, group, rerank)[0]


def rank_many(
    snap: IndexSnapshot, vectors: np.ndarray, top_k: int = 10, group: str = "image", rerank: Rerank | None = None
) -> list[list[SearchResult]]:
    """``rank`` for each row of ``vectors`` (``(Q, D)``), with one store search for all rows, then another with
    a four times larger k for the rows whose hits ran short, and so on (``rank`` does the same per row).

    The candidates are the ``top_k * 8`` best objects (``top_k`` for ``group="object"`` on an index without
    video frames, where no hits merge); ``grouping.group_hits`` turns them into hits.
    """
    top_k, group = check_int("--top-k", top_k, low=1), check_choice("--group", group, GROUPS)
    searched = snap.space.vectors
    total = len(searched)
    if total == 0 or not len(vectors):
        return [[] for _ in vectors]
    queries = expand_queries(searched, snap.space.project(vectors), rerank or Rerank())
    ranked: list = [None] * len(queries)
    pending = np.arange(len(queries))
    k = min(total, top_k if group == "object" and not snap.has_frames else top_k * 8)
    while len(pending):
        scores, ids = searched.search(queries[pending], k)
        found, hits_of = _hits(snap, scores, ids, group, top_k)
        short = []
        for position, hits in zip(pending, hits_of):
            if len(hits) >= top_k or k == total:
                ranked[position] = [_result(snap, found, place, *hit) for place, hit in enumerate(hits, start=1)]
            else:
                short.append(position)
        pending, k = np.array(short, dtype=np.int64), min(total, k * 4)
    return ranked


def _hits(
    snap: IndexSnapshot, scores: np.ndarray, ids: np.ndarray, group: str, top_k: int
) -> tuple[ObjectRows, list[list[tuple]]]:
    """The rows of a store search's candidates (``(Q, k)`` ``scores`` and ``ids``, -1 = none), looked up once,
    and per query row its first ``top_k`` hits in rank order, each ``(score, object row, span start row, span
    end row)`` (rows into those rows). A candidate whose row a later commit removed is dropped."""
    query, column = np.nonzero(ids >= 0)
    found = snap.objects(ids[query, column])
    rows = found.find(ids[query, column])
    query, column, rows = query[rows >= 0], column[rows >= 0], rows[rows >= 0]
    score = scores[query, column]
    hits, start, end = group_hits(query, score, found.item[rows], found.video[rows], found.position[rows], group)
    place = np.arange(len(hits)) - np.searchsorted(query[hits], query[hits])  # 0 for each row's best hit
    hits, start, end = hits[place < top_k], start[place < top_k], end[place < top_k]
    ranked = [[] for _ in range(len(ids))]
    for hit, first, last in zip(hits.tolist(), start.tolist(), end.tolist()):
        ranked[query[hit]].append((float(score[hit]), int(rows[hit]), int(rows[first]), int(rows[last])))
    return found, ranked


def _result(
    snap: IndexSnapshot, found: ObjectRows, rank: int, score: float, row: int, first: int, last: int
) -> SearchResult:
    """The result of the object at ``row`` of ``found``, its span from the frame of ``first`` to that of ``last``."""
    detection_score = float(found.scores[row])
    item = found.items[int(found.item[row])]
    image = str(snap.absolute_path(item))
    video = None
    if item.frame is not None:
        times = [found.items[int(found.item[r])].frame.time for r in (first, last)]
        video = dict(video=image, frame=item.frame.number, time=item.frame.time, span=times)
    return SearchResult(
        rank=rank,
        score=score,
        image=image,
        box=[float(v) for v in found.boxes[row]],
        label=found.labels[row],
        detection_score=None if np.isnan(detection_score) else detection_score,
        object_id=int(found.ids[row]),
        item=item.key,
        **(video or {}),
    )


def _describe(identity: dict) -> str:
    """One phrase naming a weights identity: a file, random, torchvision's or a hub model's, a package's."""
    source = identity.get("source")
    if source == "file":
        return f"file {identity['path']} (sha256 {identity['sha256'][:12]})"
    if source == "random":
        return f"random seed {identity.get('seed')} (state {identity.get('state_sha256', '?')[:12]})"
    digest = (identity.get("sha256") or identity.get("state_sha256") or "?")[:12]
    if source == "package":
        return f"package {identity.get('package')} {identity.get('version')} (sha256 {digest})"
    return f"{identity.get('name', source)} (sha256 {digest})"
