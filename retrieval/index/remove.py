"""``retrieval remove``: take images (or whole folders of them) out of an index."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import StoreError
from .layout import IndexLock, active_store
from .store import StoreWriter


def remove_images(index_dir: str | os.PathLike, paths: Iterable[str]) -> list[str]:
    """Remove the given images, their objects and vectors, in one commit; return the keys of the items removed.

    Paths name files: every item that comes from a named file (or from a file under a named folder) goes.
    A path may be relative to the gallery root, relative to the current folder, or absolute, and may
    name a folder (everything indexed under it is removed; the gallery folder itself: every image). A path
    that matches nothing, or an empty one, is an error and nothing is removed.
    """
    index_dir = Path(index_dir).absolute()
    active_store(index_dir)  # a missing or non-index folder is refused before the lock would create it
    with IndexLock(index_dir):
        writer = StoreWriter.open(active_store(index_dir))
        try:
            root = Path(writer.manifest.gallery_root)
            known = writer.item_paths()
            targets: set[str] = set()
            for given in paths:
                if not given.strip():
                    raise StoreError(f"an empty path names no image of index {index_dir}; nothing was removed")
                matched = _matches(given, root, known)
                if not matched:
                    raise StoreError(f"{given} is not in index {index_dir} (gallery {root}); nothing was removed")
                targets.update(matched)
            writer.remove(sorted(targets))
            writer.close()
        except BaseException:
            writer.abandon()
            raise
    return sorted(targets)


def _matches(given: str, root: Path, known: dict[str, str]) -> list[str]:
    """Keys of the items (``known``: key → file path) whose file ``given`` names (as a gallery-relative path,
    or as a real path inside the gallery), or lies under the folder it names."""
    candidates = [PurePosixPath(given).as_posix()]
    relative_to_root = os.path.relpath(Path(given).absolute(), root)
    if relative_to_root == ".":  # the gallery folder itself (not a gallery-relative ".", which is ambiguous)
        return list(known)
    if not relative_to_root.startswith(".."):
        candidates.insert(0, PurePosixPath(Path(relative_to_root)).as_posix())
    for candidate in candidates:
        if candidate in ("", "."):
            continue
        prefix = candidate.rstrip("/") + "/"
        found = [key for key, path in known.items() if path == candidate or path.startswith(prefix)]
        if found:
            return found
    return []
