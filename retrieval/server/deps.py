"""What the routes share: the server state, the index state one request answers from, an indexed image's
file, and an upload's bytes within the limit.

The ``ServerState`` lives on ``app.state.server`` (``create_app`` puts it there); routes take it, or one
consistent snapshot of the index, as FastAPI dependencies (``State``, ``Snapshot``, ``Searchable``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile

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


def indexed_file(snap: IndexSnapshot, image_id: int) -> Path:
    """The file of an indexed gallery image; 404 for any other id, 403 when it resolves outside the gallery."""
    if image_id not in snap.image_paths:
        raise HTTPException(404, f"image {image_id} is not an indexed gallery image")
    try:
        return gallery_file(snap.gallery_root, snap.image_paths[image_id])
    except OutsideGallery:
        raise HTTPException(403, f"image {image_id} lies outside the gallery folder; it is not served") from None


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
