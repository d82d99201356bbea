"""What the routes share: the server state, the index state one request answers from, an indexed item's
file (an image's, or a video frame's video) and query picture, and an upload's bytes within the limit.

The ``ServerState`` lives on ``app.state.server`` (``create_app`` puts it there); routes take it, or one
consistent snapshot of the index, as FastAPI dependencies (``State``, ``Snapshot``, ``Searchable``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile

from ..images import LoadedImage
from ..index.pictures import picture_rgb
from ..index.rows import ItemRow
from ..index.snapshot import IndexSnapshot
from ..models import Embedder
from .pictures import OutsideGallery, gallery_file
from .state import ServerState


def server_state(request: Request) -> ServerState:
    """The ``ServerState`` of the app answering ``request``."""
    return request.app.state.server


def current_snapshot(state: Annotated[ServerState, Depends(server_state)]) -> IndexSnapshot:
    """The committed index state this request answers from (a newer one may be swapped in meanwhile)."""
    return state.searcher.snapshot


def searchable(state: Annotated[ServerState, Depends(server_state)]) -> tuple[IndexSnapshot, Embedder]:
    """The snapshot and the embedder that made its vectors, taken together (they change together)."""
    return state.searcher.state


State = Annotated[ServerState, Depends(server_state)]
Snapshot = Annotated[IndexSnapshot, Depends(current_snapshot)]
Searchable = Annotated[tuple[IndexSnapshot, Embedder], Depends(searchable)]


def indexed_file(snap: IndexSnapshot, image_id: int) -> tuple[ItemRow, Path]:
    """An indexed gallery item and its file (a video frame's: its video); 404 for any other id, 403 when it
    resolves outside the gallery."""
    item = snap.item(image_id)
    if item is None:
        raise HTTPException(404, f"image {image_id} is not an indexed gallery image")
    try:
        return item, gallery_file(snap.gallery_root, item.path)
    except OutsideGallery:
        raise HTTPException(403, f"image {image_id} lies outside the gallery folder; it is not served") from None


def indexed_picture(snap: IndexSnapshot, image_id: int) -> Path | LoadedImage:
    """An indexed item as a query image: an image's file, or a video frame's pixels decoded from its video
    (a frame has no file of its own: its hash, size and time fields are empty). 404 and 403 as ``indexed_file``."""
    item, path = indexed_file(snap, image_id)
    if item.frame is None:
        return path
    return LoadedImage(rgb=picture_rgb(path, item.frame.time), sha256="", file_size=0, mtime_ns=0)


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes: 413 past ``limit`` bytes, 400 when empty."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, too_large(None, limit))
    if not data:
        raise HTTPException(400, f"{upload.filename or 'the upload'} is empty")
    return data


def too_large(size: int | None, limit: int) -> str:
    """The 413 message for a body of ``size`` bytes (unknown: ``None``) over ``limit``."""
    got = f" ({size / 2**20:.1f} MB)" if size is not None else ""
    return f"the upload is larger than the server's limit of {limit / 2**20:.0f} MB{got}; send a smaller image"
