"""The HTTP routes: a JSON API under ``/api`` (schema at ``/openapi.json``) and the web page at ``/``.

Boxes are ``[x1, y1, x2, y2]`` in the original pixels of their image, EXIF orientation applied (the frame
of the pictures the API serves). Errors are ``{"detail": "..."}`` with a 4xx status.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from ..boxes import parse_box
from ..errors import ImageError, RetrievalError
from ..index.info import snapshot_info
from ..search.searcher import SearchResult, embed_box, rank
from ..index.snapshot import IndexSnapshot
from .pictures import OutsideGallery, gallery_file, oriented_size, picture
from .state import NoDetector, ServerState

STATIC = resources.files(__package__) / "static"


class Result(BaseModel):
    rank: int
    score: float
    image: str
    path: str
    image_id: int
    width: int
    height: int
    box: list[float]
    label: str | None
    detection_score: float | None
    object_id: int
    thumbnail: str
    picture: str


class QueryResponse(BaseModel):
    generation: int
    query: dict
    results: list[Result]


class GalleryObject(BaseModel):
    object_id: int
    box: list[float]
    label: str | None
    detection_score: float | None


class ImageSummary(BaseModel):
    image_id: int
    path: str
    objects: int
    thumbnail: str
    picture: str


class ImageList(BaseModel):
    total: int
    images: list[ImageSummary]


class ImageDetail(ImageSummary):
    width: int
    height: int
    boxes: list[GalleryObject]


class Detection(BaseModel):
    box: list[float]
    label: str | None
    score: float


class DetectResponse(BaseModel):
    width: int
    height: int
    objects: list[Detection]


class Health(BaseModel):
    status: str
    generation: int
    images: int
    objects: int


def create_app(state: ServerState) -> FastAPI:
    """The application over ``state`` (which the caller loads, and may ``watch``)."""
    app = FastAPI(
        title="retrieval",
        summary="Find where else an object appears in an indexed gallery of photos.",
        docs_url="/api/docs",
        redoc_url=None,
    )
    limits = state.limits

    @app.exception_handler(RetrievalError)
    async def user_error(request: Request, error: RetrievalError) -> JSONResponse:
        status = 413 if isinstance(error, ImageError) and "pixels is more than the limit" in str(error) else 400
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            return JSONResponse({"detail": _too_large(int(declared), limits.max_upload_bytes)}, status_code=413)
        return await call_next(request)

    @app.get("/api/health", response_model=Health, summary="Liveness and the index state being served")
    def health() -> Health:
        snap = state.searcher.snapshot
        return Health(
            status="ok", generation=snap.generation, images=len(snap.image_paths), objects=len(snap.vectors)
        )

    @app.get("/api/info", summary="Counts, skipped files, models and settings of the index (as `retrieval info`)")
    def info() -> dict:
        return {**snapshot_info(state.searcher.snapshot), "detector": state.has_detector, "limits": vars(limits)}

    @app.get("/api/images", response_model=ImageList, summary="Indexed gallery images, by path")
    def images(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> ImageList:
        snap = state.searcher.snapshot
        counts = dict(zip(*np.unique(snap.object_image, return_counts=True)))
        ordered = sorted(snap.image_paths.items(), key=lambda item: item[1])
        return ImageList(
            total=len(ordered),
            images=[_summary(i, path, int(counts.get(i, 0))) for i, path in ordered[offset : offset + limit]],
        )

    @app.get("/api/images/{image_id}", response_model=ImageDetail, summary="One gallery image and its objects")
    def image(image_id: int) -> ImageDetail:
        snap = state.searcher.snapshot
        path = _indexed_file(snap, image_id)
        rows = np.flatnonzero(snap.object_image == image_id)
        width, height = oriented_size(path)
        return ImageDetail(
            **_summary(image_id, snap.image_paths[image_id], len(rows)).model_dump(),
            width=width,
            height=height,
            boxes=[_gallery_object(snap, int(row)) for row in rows],
        )

    @app.get("/api/images/{image_id}/picture", summary="The gallery image as JPEG (EXIF orientation applied)")
    def full_picture(image_id: int) -> Response:
        return _jpeg(state.searcher.snapshot, image_id, thumbnail=False)

    @app.get("/api/images/{image_id}/thumbnail", summary="The gallery image as a JPEG thumbnail (longest side 320)")
    def thumbnail(image_id: int) -> Response:
        return _jpeg(state.searcher.snapshot, image_id, thumbnail=True)

    @app.post("/api/query", response_model=QueryResponse, summary="Query by an uploaded image or a gallery image")
    async def query(
        image: UploadFile | None = File(None, description="the query image (or give image_id)"),
        image_id: int | None = Form(None, description="a gallery image as the query image"),
        box: str | None = Form(None, description="x1,y1,x2,y2 in the image's pixels; none = the whole image"),
        top_k: int = Form(10, ge=1, le=limits.max_top_k),
        group: Literal["image", "object"] = Form("image", description="rank images by their best object, or objects"),
    ) -> QueryResponse:
        snap, embedder = state.searcher.state
        if (image is None) == (image_id is None):
            raise HTTPException(400, "give either an image file or an image_id, not both or neither")
        if image is not None:
            loaded = state.decode_upload(await _read_upload(image, limits.max_upload_bytes), image.filename or "upload")
        else:
            loaded = _indexed_file(snap, image_id)
        query_box = parse_box(box) if box else None
        return _ranked(state, snap, embedder, loaded, query_box, top_k, group)

    @app.get(
        "/api/objects/{object_id}/similar",
        response_model=QueryResponse,
        summary="Query with a gallery object: its image and box",
    )
    def similar(
        object_id: int,
        top_k: int = Query(10, ge=1, le=limits.max_top_k),
        group: Literal["image", "object"] = Query("image"),
    ) -> QueryResponse:
        snap, embedder = state.searcher.state
        row = int(snap.rows_of(np.array([object_id]))[0]) if len(snap.object_ids) else 0
        if row >= len(snap.object_ids) or snap.object_ids[row] != object_id:
            raise HTTPException(404, f"object {object_id} is not in the index")
        path = _indexed_file(snap, int(snap.object_image[row]))
        return _ranked(state, snap, embedder, path, snap.boxes[row].tolist(), top_k, group)

    @app.post("/api/detect", response_model=DetectResponse, summary="Detect objects in an uploaded image")
    async def detect(image: UploadFile = File(...)) -> DetectResponse:
        try:
            detector = state.detector()
        except NoDetector as error:
            raise HTTPException(404, str(error)) from None
        loaded = state.decode_upload(await _read_upload(image, limits.max_upload_bytes), image.filename or "upload")
        with state.inference:
            (found,) = detector.detect([loaded.rgb], with_vectors=False)
        return DetectResponse(
            width=loaded.width,
            height=loaded.height,
            objects=[
                Detection(box=[float(v) for v in box], label=label, score=float(score))
                for box, label, score in zip(found.boxes, found.labels, found.scores)
            ],
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _ranked(state: ServerState, snap: IndexSnapshot, embedder, image, box, top_k: int, group: str) -> QueryResponse:
    with state.inference:
        vector = embed_box(embedder, image, box)
    results = rank(snap, vector, top_k, group)
    return QueryResponse(
        generation=snap.generation,
        query={"box": None if box is None else [float(v) for v in box], "group": group, "top_k": top_k},
        results=[_result(snap, result) for result in results],
    )


def _result(snap: IndexSnapshot, result: SearchResult) -> Result:
    row = int(snap.rows_of(np.array([result.object_id]))[0])
    image_id = int(snap.object_image[row])
    width, height = oriented_size(snap.absolute_path(image_id))
    return Result(
        **result.to_dict(),
        path=snap.image_paths[image_id],
        image_id=image_id,
        width=width,
        height=height,
        thumbnail=f"/api/images/{image_id}/thumbnail",
        picture=f"/api/images/{image_id}/picture",
    )


def _summary(image_id: int, path: str, objects: int) -> ImageSummary:
    return ImageSummary(
        image_id=image_id,
        path=path,
        objects=objects,
        thumbnail=f"/api/images/{image_id}/thumbnail",
        picture=f"/api/images/{image_id}/picture",
    )


def _gallery_object(snap: IndexSnapshot, row: int) -> GalleryObject:
    score = float(snap.scores[row])
    return GalleryObject(
        object_id=int(snap.object_ids[row]),
        box=[float(v) for v in snap.boxes[row]],
        label=snap.labels[row],
        detection_score=None if np.isnan(score) else score,
    )


def _indexed_file(snap: IndexSnapshot, image_id: int):
    """The file of an indexed gallery image; 404 for any other id, 403 when it resolves outside the gallery."""
    if image_id not in snap.image_paths:
        raise HTTPException(404, f"image {image_id} is not an indexed gallery image")
    try:
        return gallery_file(snap.gallery_root, snap.image_paths[image_id])
    except OutsideGallery:
        raise HTTPException(403, f"image {image_id} lies outside the gallery folder; it is not served") from None


def _jpeg(snap: IndexSnapshot, image_id: int, thumbnail: bool) -> Response:
    data, _, _ = picture(_indexed_file(snap, image_id), thumbnail)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, _too_large(None, limit))
    if not data:
        raise HTTPException(400, f"{upload.filename or 'the upload'} is empty")
    return data


def _too_large(size: int | None, limit: int) -> str:
    got = f" ({size / 2**20:.1f} MB)" if size is not None else ""
    return f"the upload is larger than the server's limit of {limit / 2**20:.0f} MB{got}; send a smaller image"
