"""Start the server: load the index and models once, watch the index for new commits, serve with uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import os

import uvicorn

from .app import create_app
from .state import ServerLimits, ServerState

log = logging.getLogger(__name__)


def serve(
    index_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    precision: str = "auto",
    limits: ServerLimits = ServerLimits(),
    poll_seconds: float = 2.0,
    quiet: bool = False,
) -> None:
    """Serve ``index_dir`` on ``host:port`` until interrupted."""
    state = ServerState(index_dir, device=device, precision=precision, limits=limits)
    if not _is_loopback(host):
        log.warning(
            "serving on %s: anyone who can reach this machine can query the index and see its gallery images", host
        )
    snapshot = state.searcher.snapshot
    log.info(
        "serving %s (%d images, %d objects) at http://%s:%d/  (API schema: /openapi.json)",
        index_dir,
        len(snapshot.image_paths),
        len(snapshot.vectors),
        host,
        port,
    )
    state.watch(poll_seconds)
    try:
        uvicorn.run(create_app(state), host=host, port=port, log_level="warning" if quiet else "info")
    finally:
        state.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
