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
    video: str | None = None  # a frame's: the video's absolute path (as image); null, as the next three, for images
    frame: int | None = None  # the frame's number in its video
    time: float | None = None  # the frame's time in its video, seconds
    span: list[float] | None = None  # [start, end] seconds of the consecutive matching frames merged into this result
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
    item: str  # the item's key (an image: its path; a video frame: "<video path>#t=<seconds>")
    path: str  # the file's path relative to the gallery (a frame's: its video's)
    kind: str  # "image" or "frame" (a sampled frame of a video)
    video: str | None  # a frame's video, relative to the gallery (null for images); so are frame and time:
    frame: int | None  # the frame's number in its video (0 = the first)
    time: float | None  # the frame's time in its video, seconds
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
