"""milvus: vectors in a Milvus collection: a Milvus Lite file in the store folder, or a Milvus server.

Where (``IndexSettings.milvus_uri``, ``--milvus-uri``): empty keeps a Milvus Lite database in the store
folder (``store-<n>/milvus.db``, collection ``vectors``); ``milvus://HOST:PORT/COLLECTION`` uses the
collection ``COLLECTION_store_<n>`` on that server (one per store folder, so a rebuild never touches the
collection being served). ``milvus.json`` in the store folder names the place. Milvus id = object id (int64
primary key); exact search (``FLAT``), inner product on unit vectors; metadata stays in SQLite.

Milvus keeps one live state, not a file per generation, so each row carries the generations that made it:
``added`` (the commit that added it) and ``removed`` (the commit that removed it, 0 while live). A store
loaded at generation ``g`` sees exactly the rows ``added <= g and (removed == 0 or removed > g)``: the
state SQLite committed as ``g``. ``save(folder, g+1)`` writes the pending changes as generation ``g+1``
before SQLite commits it (adds as new rows, removals by setting ``removed``; nothing is deleted), and
``discard(folder, g)``, called once ``g`` is committed and whenever a writer opens the store, reconciles:
rows of a generation above ``g`` (a save that SQLite never committed) are deleted or restored, rows removed
at or before ``g`` deleted for good.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...atomic import atomic_write_text
from ...errors import SettingsError, StoreError
from . import StoreEntry, VectorsMissing

LITE_FILE = "milvus.db"
PLACE_FILE = "milvus.json"
LITE_COLLECTION = "vectors"
URI = re.compile(r"milvus://([^/:\s]+):(\d{1,5})/([A-Za-z_][A-Za-z0-9_]*)")
BATCH = 1000  # ids per query or upsert request
MAX_K = 16384  # Milvus's largest top-k
INSTALL = "pip install -e '.[milvus]'"


@dataclass(frozen=True)
class Place:
    """Where a store folder's vectors live: ``uri`` as pymilvus takes it (a Lite file or http://HOST:PORT)
    and the collection."""

    uri: str
    collection: str
    shown: str  # as the user gave it (or "milvus-lite")

    @classmethod
    def for_folder(cls, folder: Path, milvus_uri: str) -> "Place":
        if not milvus_uri:
            return cls(str(Path(folder).absolute() / LITE_FILE), LITE_COLLECTION, "milvus-lite")
        host, port, collection = check_uri(milvus_uri)
        return cls(f"http://{host}:{port}", f"{collection}_{Path(folder).name.replace('-', '_')}", milvus_uri)

    @classmethod
    def read(cls, folder: Path) -> "Place | None":
        path = Path(folder) / PLACE_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))


class Collection:
    """A connection to the collection of a ``Place``."""

    def __init__(self, place: Place) -> None:
        """Connect; ``StoreError`` naming the place when it cannot."""
        pymilvus = import_pymilvus(StoreError)
        logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)  # a notice per query
        if place.shown == "milvus-lite":  # Lite's in-process server logs each query iterator's unknown timestamp call
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        self.place = place
        try:
            self.client = pymilvus.MilvusClient(place.uri)
        except Exception as error:  # pymilvus raises its own exception types, and gRPC's
            hint = (
                "Milvus Lite lets one process open it: stop the other 'retrieval' command using this index, "
                "or use a Milvus server (--milvus-uri milvus://HOST:PORT/COLLECTION)"
                if place.shown == "milvus-lite"
                else "check that the server runs and is reachable"
            )
            raise StoreError(f"cannot open Milvus at {place.uri} ({_message(error)}); {hint}") from None

    def call(self, method: str, *args, **kwargs):
        """``client.method(collection, ...)``, its failure a ``StoreError`` naming the collection."""
        try:
            return getattr(self.client, method)(self.place.collection, *args, **kwargs)
        except Exception as error:  # pymilvus's own exception types, and gRPC's
            raise StoreError(
                f"Milvus {method} on {self.place.shown} (collection {self.place.collection}) failed: {_message(error)}"
            ) from None

    def dimension(self) -> int:
        fields = self.call("describe_collection")["fields"]
        return int(next(field["params"]["dim"] for field in fields if field["name"] == "vector"))


def check_uri(uri: str) -> tuple[str, int, str]:
    """``(host, port, collection)`` of ``milvus://HOST:PORT/COLLECTION``; ``SettingsError`` otherwise."""
    match = URI.fullmatch(str(uri))
    if match is None:
        raise SettingsError(
            f"--milvus-uri {uri!r} must be milvus://HOST:PORT/COLLECTION (COLLECTION: letters, digits, _)"
        )
    return match[1], int(match[2]), match[3]


def import_pymilvus(error_type: type[Exception]):
    try:
        import pymilvus
    except ImportError:
        raise error_type(f"the milvus vector store needs pymilvus and milvus-lite: {INSTALL}") from None
    return pymilvus


def visible(generation: int) -> str:
    """The Milvus filter selecting the rows of committed generation ``generation``."""
    return f"added <= {generation} and (removed == 0 or removed > {generation})"


class MilvusStore:
    """A collection seen at one committed generation, plus the changes since (in memory until ``save``)."""

    def __init__(self, dimension: int, milvus_uri: str, collection: Collection | None = None, generation: int = 0):
        self.dimension = dimension
        self.milvus_uri = milvus_uri
        self.collection = collection  # None until the first save creates it
        self.generation = generation
        self._added: dict[int, np.ndarray] = {}  # id -> (dimension,) float32, not saved yet
        self._removed: set[int] = set()  # saved ids removed since

    def __len__(self) -> int:
        return self._committed_count() - len(self._removed) + len(self._added)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        for i, vector in zip(np.asarray(ids, np.int64).tolist(), np.asarray(vectors, np.float32)):
            self._added[i] = vector

    def remove(self, ids: np.ndarray) -> None:
        for i in np.asarray(ids, np.int64).tolist():
            if self._added.pop(i, None) is None:
                self._removed.add(i)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, both ``(Q, k)``: the saved rows' hits (Milvus) merged with the pending ones'."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, ids = self._saved_hits(queries, k)
        if self._added:
            pending = np.array(list(self._added), np.int64)
            scores = np.concatenate([scores, queries @ np.stack(list(self._added.values())).T], axis=1)
            ids = np.concatenate([ids, np.broadcast_to(pending, (len(queries), len(pending)))], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        short = k - scores.shape[1]
        return (
            np.pad(scores, ((0, 0), (0, short)), constant_values=-np.inf).astype(np.float32),
            np.pad(ids, ((0, 0), (0, short)), constant_values=-1).astype(np.int64),
        )

    def ids(self) -> np.ndarray:
        saved = set(self._saved_ids().tolist()) - self._removed
        return np.array(sorted(saved | set(self._added)), dtype=np.int64)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64).tolist()
        saved = self._saved_rows([i for i in ids if i not in self._added], ["vector"])
        found = {**{i: row["vector"] for i, row in saved.items()}, **self._added}
        missing = [i for i in ids if i not in found]
        if missing:
            raise StoreError(
                f"Milvus collection {self.collection.place.collection} lacks ids {missing[:5]}; rebuild the index"
            )
        return np.array([found[i] for i in ids], dtype=np.float32).reshape(len(ids), self.dimension)

    def describe(self) -> dict:
        place = self.collection.place if self.collection else None
        where = {"uri": place.shown, "collection": place.collection} if place else {}
        return {"store": "milvus", **where, "index": "FLAT", "metric": "IP"}

    def save(self, folder: Path, generation: int) -> None:
        """Write the pending changes as ``generation``: new rows, and ``removed`` set on removed ones."""
        if self.collection is None:
            self.collection = _new_collection(folder, self.milvus_uri, self.dimension)
        removed = sorted(self._removed)
        rows = [
            {**row, "id": i, "removed": generation} for i, row in self._saved_rows(removed, ["vector", "added"]).items()
        ]
        rows += [{"id": i, "vector": vector, "added": generation, "removed": 0} for i, vector in self._added.items()]
        for start in range(0, len(rows), BATCH):
            self.collection.call("upsert", rows[start : start + BATCH])
        self._added, self._removed, self.generation = {}, set(), generation

    def _committed_count(self) -> int:
        if self.collection is None:
            return 0
        rows = self.collection.call("query", filter=visible(self.generation), output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _saved_hits(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(Q, n)`` scores and ids of the saved rows' best hits, the removed ones dropped (-inf, -1)."""
        limit = min(k + len(self._removed), MAX_K)
        if self.collection is None or not len(queries) or self._committed_count() == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        hits = self.collection.call(
            "search",
            data=list(queries),
            limit=limit,
            filter=visible(self.generation),
            output_fields=["id"],
            search_params={"metric_type": "IP"},
        )
        scores = np.full((len(queries), limit), -np.inf, np.float32)
        ids = np.full((len(queries), limit), -1, np.int64)
        for row, found in enumerate(hits):
            kept = [hit for hit in found if hit["id"] not in self._removed]
            scores[row, : len(kept)] = [hit["distance"] for hit in kept]
            ids[row, : len(kept)] = [hit["id"] for hit in kept]
        return scores, ids

    def _saved_ids(self) -> np.ndarray:
        """Every id of the rows visible at the committed generation, in no order."""
        if self.collection is None:
            return np.zeros(0, np.int64)
        found = []
        iterator = self.collection.call(
            "query_iterator",
            batch_size=BATCH,
            filter=visible(self.generation),
            output_fields=["id"],
        )
        while batch := iterator.next():
            found.extend(row["id"] for row in batch)
        iterator.close()
        return np.array(found, dtype=np.int64)

    def _saved_rows(self, ids: list[int], fields: list[str]) -> dict[int, dict]:
        """``{id: {field: value}}`` of the saved rows among ``ids``."""
        if self.collection is None or not ids:
            return {}
        rows = {}
        for start in range(0, len(ids), BATCH):
            for row in self.collection.call("query", ids=ids[start : start + BATCH], output_fields=fields):
                rows[int(row["id"])] = {field: row[field] for field in fields}
        return rows


def _new_collection(folder: Path, milvus_uri: str, dimension: int) -> Collection:
    """Create this store folder's collection (replacing what an interrupted first save left) and record it."""
    pymilvus = import_pymilvus(StoreError)
    collection = Collection(Place.for_folder(folder, milvus_uri))
    if collection.call("has_collection"):
        collection.call("drop_collection")
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("added", pymilvus.DataType.INT64)
    schema.add_field("removed", pymilvus.DataType.INT64)
    index = collection.client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    collection.call("create_collection", schema=schema, index_params=index, consistency_level="Strong")
    atomic_write_text(Path(folder) / PLACE_FILE, json.dumps(asdict(collection.place)) + "\n")
    return collection


def _load(folder: Path, generation: int, description: dict, settings) -> MilvusStore:
    place = Place.read(folder)
    if place is None:
        raise VectorsMissing(f"{Path(folder) / PLACE_FILE} is missing: the index is damaged; rebuild it")
    if settings.milvus_uri != ("" if place.shown == "milvus-lite" else place.shown):
        raise SettingsError(
            f"--milvus-uri {settings.milvus_uri or '(Milvus Lite)'}: this index keeps its vectors at {place.shown}; "
            "to move them, index once with --vector-store faiss, then with --vector-store milvus and the new URI"
        )
    collection = Collection(place)
    if not collection.call("has_collection"):
        raise VectorsMissing(f"Milvus collection {place.collection} at {place.shown} is gone; rebuild the index")
    collection.call("load_collection")  # into the server's memory, for searches and queries
    return MilvusStore(collection.dimension(), settings.milvus_uri, collection, generation)


def _discard(folder: Path, keep: int) -> None:
    """Reconcile the collection with committed generation ``keep`` (see the module docstring); ``keep == -1``
    drops it (the store moved to another kind)."""
    place = Place.read(folder)
    if place is None:
        return
    collection = Collection(place)
    if not collection.call("has_collection"):
        return
    collection.call("load_collection")
    if keep == -1:
        collection.call("drop_collection")
        (Path(folder) / PLACE_FILE).unlink(missing_ok=True)
        if place.shown == "milvus-lite":
            collection.client.close()
            shutil.rmtree(Path(folder) / LITE_FILE, ignore_errors=True)
        return
    collection.call("delete", filter=f"added > {keep} or (removed > 0 and removed <= {keep})")
    restored = collection.call("query", filter=f"removed > {keep}", output_fields=["id", "vector", "added"])
    for start in range(0, len(restored), BATCH):
        collection.call("upsert", [{**row, "removed": 0} for row in restored[start : start + BATCH]])


def _check(settings) -> None:
    if settings.milvus_uri:
        check_uri(settings.milvus_uri)
    import_pymilvus(SettingsError)


def _message(error: Exception) -> str:
    return str(getattr(error, "message", None) or error).splitlines()[0]


ENTRY = StoreEntry(
    create=lambda settings, dimension: MilvusStore(dimension, settings.milvus_uri),
    load=_load,
    discard=_discard,
    check=_check,
    summary="Milvus: a Milvus Lite file in the index, or a server (--milvus-uri milvus://HOST:PORT/COLLECTION)",
)
