"""The index folder: which store is active, which is being rebuilt, and who may write.

Layout::

    DIR/HEAD          names the active store folder ("store-3"); replaced atomically
    DIR/PENDING       names a store being rebuilt with other settings (absent otherwise)
    DIR/lock          held (flock) by the one process writing to DIR; holds its pid
    DIR/store-<n>/    one store: manifest.json, metadata.sqlite, vectors.<gen>.faiss (see store.py)

Readers resolve HEAD once and read that store; a rebuild fills another store
and then replaces HEAD, so a reader sees the old index or the new one, never a mix.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import StoreError

log = logging.getLogger(__name__)

HEAD_NAME = "HEAD"
PENDING_NAME = "PENDING"
LOCK_NAME = "lock"
STORE_PREFIX = "store-"


def read_pointer(directory: Path, name: str = HEAD_NAME) -> str | None:
    """The store folder name in ``DIR/HEAD`` (or ``DIR/PENDING``), or ``None`` when there is none."""
    try:
        value = (Path(directory) / name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StoreError(f"{directory}/{name} cannot be read ({error.strerror or error})") from None
    if not value.startswith(STORE_PREFIX) or "/" in value:
        raise StoreError(f"{directory}/{name} is damaged (it says {value!r}); rebuild the index")
    return value


def active_store(directory: Path) -> Path:
    """The active store folder of index ``directory``; ``StoreError`` when ``directory`` holds no index."""
    directory = Path(directory)
    if not directory.is_dir():
        raise StoreError(
            f"index folder {directory} does not exist; build it with 'retrieval index GALLERY --index {directory}'"
        )
    head = read_pointer(directory)
    if head is None:
        raise StoreError(f"{directory} is not an index (no {HEAD_NAME}); build one with 'retrieval index'")
    return directory / head


def point(directory: Path, name: str, store: Path | None) -> None:
    """Atomically make ``DIR/name`` name ``store`` (``None`` removes the pointer)."""
    path = Path(directory) / name
    try:
        if store is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, store.name + "\n")
    except OSError as error:
        raise StoreError(f"cannot write to index {directory} ({error.strerror or error})") from None


def new_store_folder(directory: Path) -> Path:
    """A fresh, not yet existing ``DIR/store-<n>`` (n above every store folder present)."""
    numbers = [
        int(p.name[len(STORE_PREFIX) :]) for p in Path(directory).glob(f"{STORE_PREFIX}*") if _is_numbered(p.name)
    ]
    return Path(directory) / f"{STORE_PREFIX}{max(numbers, default=0) + 1}"


def remove_other_stores(directory: Path, keep: set[str]) -> None:
    """Delete store folders not named in ``keep`` (left by a finished rebuild or a crash), after their vector
    store let go of what it keeps outside the folder (a Milvus server's collection)."""
    for path in Path(directory).glob(f"{STORE_PREFIX}*"):
        if path.name not in keep and _is_numbered(path.name):
            _release_vectors(path)
            shutil.rmtree(path, ignore_errors=True)


def _release_vectors(store: Path) -> None:
    """Ask ``store``'s vector store to delete every generation it holds (best effort: a folder a crash left
    half-made has no manifest; a server may be down, and then its collection stays, with a warning)."""
    from .stores import STORES, store_name

    try:
        description = json.loads((store / "manifest.json").read_text(encoding="utf-8"))["vectors"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        STORES.get(store_name(description)).discard(store, -1)
    except Exception as error:  # noqa: BLE001 - the old store's leftovers must not fail the rebuild that replaced it
        log.warning("the vectors of old store %s could not be deleted (%s); delete them by hand", store, error)


def _is_numbered(name: str) -> bool:
    return name.startswith(STORE_PREFIX) and name[len(STORE_PREFIX) :].isdigit()


class IndexLock:
    """An exclusive, non-blocking lock on an index folder for one writing process.

    The operating system releases it when the process ends, also when killed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._handle = None

    def __enter__(self) -> "IndexLock":
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.directory / LOCK_NAME, "a+", encoding="utf-8")
        except OSError as error:
            raise StoreError(f"cannot write to index folder {self.directory} ({error.strerror or error})") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreError(
                f"index {self.directory} is being updated by another process (pid {holder}); "
                "wait for it to finish, then run this again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
