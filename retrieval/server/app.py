"""The application: a JSON API under ``/api`` (schema at ``/openapi.json``) and the web page at ``/``.

Boxes are ``[x1, y1, x2, y2]`` in the original pixels of their image, EXIF orientation applied (the frame
of the pictures the API serves). Errors are ``{"detail": "..."}``, one line, with a 4xx status (errors.py).
The routes are in ``routes/``: ``gallery`` (images and pictures), ``search`` (query, similar, detect),
``service`` (health, info, the page).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .auth import install_token_check
from .deps import too_large
from .errors import install_error_handlers
from .routes import gallery, search, service
from .state import ServerState


def create_app(state: ServerState) -> FastAPI:
    """The application over ``state`` (which the caller loads, and may ``watch``); routes find it on
    ``app.state.server``. With ``state.token``, every path but the page's files needs it (``auth.py``)."""
    app = FastAPI(
        title="retrieval",
        summary="Find where else an object appears in an indexed gallery of photos.",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.server = state
    install_error_handlers(app)
    limit = state.limits.max_upload_bytes

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"detail": too_large(int(declared), limit)}, status_code=413)
        return await call_next(request)

    if state.token is not None:
        install_token_check(app, state.token)  # after the size check: it runs before it
    for routes in (service, gallery, search):
        app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=str(service.STATIC)), name="static")
    return app
