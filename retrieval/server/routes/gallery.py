"""``/api/images``: the indexed gallery items (images, and the sampled frames of videos: each frame is an item
of its own), their stored objects, and their pictures as JPEG."""

from __future__ import annotations

from collections import Counter

import numpy as np
from fastapi import APIRouter, Query, Response

from ...index.pictures import picture_size
from ...index.rows import ItemRow
from ...index.snapshot import IndexSnapshot, ObjectRows
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
    listed = snap.listing(offset, limit)
    counts = Counter(snap.item_objects([item.id for item in listed]).item.tolist())
    return ImageList(total=snap.held_items, images=[image_summary(item, counts[item.id]) for item in listed])


@router.get("/{image_id}", response_model=ImageDetail, summary="One gallery item (an image or a frame), its objects")
def image(snap: Snapshot, image_id: int) -> ImageDetail:
    item, path = indexed_file(snap, image_id)
    found = snap.item_objects([image_id])
    width, height = picture_size(path, video=item.frame is not None)
    return ImageDetail(
        **image_summary(item, len(found)).model_dump(),
        width=width,
        height=height,
        boxes=[_gallery_object(found, row) for row in range(len(found))],
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


def image_summary(item: ItemRow, objects: int) -> ImageSummary:
    """The listing entry of one indexed item (its key, and the path of its file; a frame's: its video's)."""
    frame = item.frame
    return ImageSummary(
        image_id=item.id,
        item=item.key,
        path=item.path,
        kind="image" if frame is None else "frame",
        video=None if frame is None else frame.video,
        frame=None if frame is None else frame.number,
        time=None if frame is None else frame.time,
        objects=objects,
        **picture_links(item.id),
    )


def _gallery_object(found: ObjectRows, row: int) -> GalleryObject:
    score = float(found.scores[row])
    return GalleryObject(
        object_id=int(found.ids[row]),
        box=[float(v) for v in found.boxes[row]],
        label=found.labels[row],
        detection_score=None if np.isnan(score) else score,
    )


def _jpeg(snap: IndexSnapshot, image_id: int, thumbnail: bool) -> Response:
    item, path = indexed_file(snap, image_id)
    data, _, _ = picture(path, thumbnail, None if item.frame is None else item.frame.time)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})
