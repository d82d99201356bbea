"""The JSON answers of the API, as pydantic models (they make the schema at ``/openapi.json``).

Boxes are ``[x1, y1, x2, y2]`` in the original pixels of their image, EXIF orientation applied.
"""

from __future__ import annotations

from pydantic import BaseModel


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
    item: str  # the gallery item's key (a folder's: the image's path relative to the gallery)
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
    item: str
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
