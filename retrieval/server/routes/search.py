"""``POST /api/query``, ``GET /api/objects/{id}/similar`` and ``POST /api/detect``: searches by an image and a
box, and the detector's objects in an uploaded image. Boxes are ``[x1, y1, x2, y2]`` in original pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile

from ...boxes import parse_box
from ...index.pictures import picture_size
from ...index.snapshot import IndexSnapshot
from ...models import Embedder
from ...search.rerank import DEFAULT_ALPHA, DEFAULT_QE_K, RERANKS, Rerank
from ...search.searcher import GROUPS, SearchResult, embed_box, rank
from ...images import LoadedImage
from ...validation import check_choice, check_float, check_int
from ..deps import Searchable, State, indexed_picture, read_upload
from ..schemas import Detection, DetectResponse, QueryResponse, Result
from ..state import NoDetector, ServerState
from .gallery import picture_links

router = APIRouter(prefix="/api")
TOP_K = "how many results: 1 to the server's max_top_k (100 unless configured)"
GROUP = {"description": "image: rank images by their best object; object: rank objects", "enum": list(GROUPS)}
RERANK = {"description": "none, or aqe: alpha query expansion over the qe_k best objects", "enum": list(RERANKS)}
QE_K, QE_ALPHA = "aqe: how many best objects expand the query (0: none)", "aqe: the exponent of their cosines"
RERANK_FIELDS = ("rerank", "qe_k", "qe_alpha")


async def given_search_options(request: Request) -> None:
    """Refuse a ``top_k``, ``group`` or re-ranking form field sent empty, as the query string's are: FastAPI
    would take an empty form field for a missing one, and answer with its default."""
    form = await request.form()
    if form.get("top_k") == "":
        check_int("top_k", "")
    if form.get("group") == "":
        check_choice("group", "", GROUPS)
    if form.get("rerank") == "":
        check_choice("rerank", "", RERANKS)
    if form.get("qe_k") == "":
        check_int("qe_k", "")
    if form.get("qe_alpha") == "":
        check_float("qe_alpha", "")


@router.post(
    "/query",
    response_model=QueryResponse,
    summary="Query by an uploaded image or a gallery image",
    dependencies=[Depends(given_search_options)],
)
async def query(
    state: State,
    searchable: Searchable,
    image: UploadFile | None = File(None, description="the query image (or give image_id)"),
    image_id: int | None = Form(None, description="a gallery image as the query image"),
    box: str | None = Form(None, description="x1,y1,x2,y2 in the image's pixels; none = the whole image"),
    top_k: int = Form(10, description=TOP_K),
    group: str = Form("image", json_schema_extra=GROUP),
    rerank: str = Form("none", json_schema_extra=RERANK),
    qe_k: int = Form(DEFAULT_QE_K, description=QE_K),
    qe_alpha: float = Form(DEFAULT_ALPHA, description=QE_ALPHA),
) -> QueryResponse:
    snap, embedder = searchable
    top_k, group = _search_options(state, top_k, group)
    reranking = Rerank.of(rerank, qe_k, qe_alpha, RERANK_FIELDS)
    if (image is None) == (image_id is None):
        raise HTTPException(400, "give either an image file or an image_id, not both or neither")
    if image is not None:
        data = await read_upload(image, state.limits.max_upload_bytes)
        loaded = state.decode_upload(data, image.filename or "upload")
    else:
        loaded = indexed_picture(snap, image_id)
    query_box = parse_box(box) if box else None
    return _ranked(state, snap, embedder, loaded, query_box, top_k, group, reranking)


@router.get(
    "/objects/{object_id}/similar",
    response_model=QueryResponse,
    summary="Query with a gallery object: its image and box",
)
def similar(
    state: State,
    searchable: Searchable,
    object_id: int,
    top_k: int = Query(10, description=TOP_K),
    group: str = Query("image", json_schema_extra=GROUP),
    rerank: str = Query("none", json_schema_extra=RERANK),
    qe_k: int = Query(DEFAULT_QE_K, description=QE_K),
    qe_alpha: float = Query(DEFAULT_ALPHA, description=QE_ALPHA),
) -> QueryResponse:
    snap, embedder = searchable
    top_k, group = _search_options(state, top_k, group)
    reranking = Rerank.of(rerank, qe_k, qe_alpha, RERANK_FIELDS)
    found = snap.objects(np.array([object_id if 0 <= object_id < snap.id_limit else -1], dtype=np.int64))
    if not len(found):
        raise HTTPException(404, f"object {object_id} is not in the index")
    picture = indexed_picture(snap, int(found.item[0]))
    return _ranked(state, snap, embedder, picture, found.boxes[0].tolist(), top_k, group, reranking)


@router.post("/detect", response_model=DetectResponse, summary="Detect objects in an uploaded image")
async def detect(state: State, image: UploadFile = File(..., description="the image to detect in")) -> DetectResponse:
    try:
        detector = state.detector()
    except NoDetector as error:
        raise HTTPException(404, str(error)) from None
    loaded = state.decode_upload(await read_upload(image, state.limits.max_upload_bytes), image.filename or "upload")
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


def _search_options(state: ServerState, top_k: int, group: str) -> tuple[int, str]:
    """``top_k`` and ``group`` checked (``SettingsError``, answered with 422, when out of range or unknown)."""
    return check_int("top_k", top_k, 1, state.limits.max_top_k), check_choice("group", group, GROUPS)


def _ranked(
    state: ServerState,
    snap: IndexSnapshot,
    embedder: Embedder,
    image: LoadedImage | Path,
    box: Sequence[float] | None,
    top_k: int,
    group: str,
    rerank: Rerank,
) -> QueryResponse:
    with state.inference:
        vector = embed_box(embedder, image, box)
    results = rank(snap, vector, top_k, group, rerank)
    box = None if box is None else [float(v) for v in box]
    return QueryResponse(
        generation=snap.generation,
        query={"box": box, "group": group, "top_k": top_k, **rerank.to_dict()},
        results=_results(snap, results),
    )


def _results(snap: IndexSnapshot, results: list[SearchResult]) -> list[Result]:
    """The API's results: each search result with its item's id, path, picture size and links (one whose
    object a commit removed meanwhile is left out)."""
    ids = np.array([result.object_id for result in results], dtype=np.int64)
    found = snap.objects(ids)
    answered = []
    for result, row in zip(results, found.find(ids).tolist()):
        if row < 0:
            continue
        item_id = int(found.item[row])
        item = found.items[item_id]
        width, height = picture_size(snap.absolute_path(item), video=item.frame is not None)
        answered.append(Result(
            **result.to_dict(),
            path=item.path,
            image_id=item_id,
            width=width,
            height=height,
            **picture_links(item_id),
        ))
    return answered
