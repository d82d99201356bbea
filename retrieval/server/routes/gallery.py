"""``/api/images``: the indexed gallery items (images, and the sampled frames of videos: each frame is an item
of its own), their stored objects, and their pictures as JPEG."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Query, Response

from ...index.pictures import item_time, picture_size
from ...index.snapshot import IndexSnapshot
from ...validation import check_int
from ..deps import Snapshot, indexed_file
from ..pictures import picture
from ..schemas import GalleryObject, ImageDetail, ImageList, ImageSummary

MAX_LISTED = 1000
router = APIRouter(prefix="/api/images")


@router.get("", response_model=ImageList, summary="Indexed gallery items (images and video frames), by path")
def images(
    snap: Snapshot,
    offset: int = Query(0, description="position in the listing sorted by path, from 0"),
    limit: int = Query(100, description=f"how many images, 1 to {MAX_LISTED}"),
) -> ImageList:
    offset = check_int("offset", offset, low=0)
    limit = check_int("limit", limit, 1, MAX_LISTED)
    counts = dict(zip(*np.unique(snap.object_image, return_counts=True)))
    ordered = sorted(snap.image_paths.items(), key=lambda item: item[1])
    return ImageList(
        total=len(ordered),
        images=[image_summary(snap, i, int(counts.get(i, 0))) for i, _ in ordered[offset : offset + limit]],
    )


@router.get("/{image_id}", response_model=ImageDetail, summary="One gallery item (an image or a frame), its objects")
def image(snap: Snapshot, image_id: int) -> ImageDetail:
    path = indexed_file(snap, image_id)
    rows = np.flatnonzero(snap.object_image == image_id)
    width, height = picture_size(path, video=image_id in snap.frames)
    return ImageDetail(
        **image_summary(snap, image_id, len(rows)).model_dump(),
        width=width,
        height=height,
        boxes=[_gallery_object(snap, int(row)) for row in rows],
    )


@router.get("/{image_id}/picture", summary="The gallery image or video frame as JPEG (EXIF orientation applied)")
def full_picture(snap: Snapshot, image_id: int) -> Response:
    return _jpeg(snap, image_id, thumbnail=False)


@router.get("/{image_id}/thumbnail", summary="The image or video frame as a JPEG thumbnail (longest side 320)")
def thumbnail(snap: Snapshot, image_id: int) -> Response:
    return _jpeg(snap, image_id, thumbnail=True)


def picture_links(image_id: int) -> dict[str, str]:
    """The routes of an image's thumbnail and full picture."""
    return {"thumbnail": f"/api/images/{image_id}/thumbnail", "picture": f"/api/images/{image_id}/picture"}


def image_summary(snap: IndexSnapshot, image_id: int, objects: int) -> ImageSummary:
    """The listing entry of one indexed item (its key, and the path of its file; a frame's: its video's)."""
    item, path, frame = snap.item_keys[image_id], snap.image_paths[image_id], snap.frames.get(image_id)
    return ImageSummary(
        image_id=image_id,
        item=item,
        path=path,
        kind="image" if frame is None else "frame",
        video=None if frame is None else frame.video,
        frame=None if frame is None else frame.number,
        time=None if frame is None else frame.time,
        objects=objects,
        **picture_links(image_id),
    )


def _gallery_object(snap: IndexSnapshot, row: int) -> GalleryObject:
    score = float(snap.scores[row])
    return GalleryObject(
        object_id=int(snap.object_ids[row]),
        box=[float(v) for v in snap.boxes[row]],
        label=snap.labels[row],
        detection_score=None if np.isnan(score) else score,
    )


def _jpeg(snap: IndexSnapshot, image_id: int, thumbnail: bool) -> Response:
    data, _, _ = picture(indexed_file(snap, image_id), thumbnail, item_time(snap, image_id))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})
