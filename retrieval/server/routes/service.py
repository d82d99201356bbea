"""``/api/health``, ``/api/info`` and the web page at ``/``."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ...index.info import snapshot_info
from ...index.snapshot import IndexSnapshot
from ..deps import Snapshot, State
from ..schemas import Health

STATIC = resources.files("retrieval.server") / "static"
router = APIRouter()


@router.get("/api/health", response_model=Health, summary="Liveness and the index state being served")
def health(snap: Snapshot) -> Health:
    return Health(status="ok", generation=snap.generation, images=snap.held_items, objects=len(snap.vectors))


@router.get(
    "/api/info",
    summary="Counts, skipped files, models and settings of the index (as `retrieval info`), whether it has a "
    "detector, which models have random weights, and the limits",
)
def info(state: State, snap: Snapshot) -> dict:
    return {
        **snapshot_info(snap),
        "detector": snap.manifest.settings.uses_detector,
        "random_weights": random_weights(snap),
        "limits": vars(state.limits),
    }


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(str(STATIC / "index.html"))


def random_weights(snap: IndexSnapshot) -> list[str]:
    """The models of the index (``"embedder"``, ``"detector"``) whose weights were seeded random ones: its
    results then show that the pipeline works, not what trained models find."""
    manifest = snap.manifest
    models = {"embedder": manifest.embedder, "detector": manifest.detector}
    return [name for name, model in models.items() if model and model["weights"]["source"] == "random"]
