"""Start the server: check the port, the token and the address (no open server beyond loopback unless asked),
bind the port, load the index and models once, watch the index for new commits, serve with uvicorn on the
bound socket."""

from __future__ import annotations

import errno
import logging
import os
import socket

import uvicorn

from ..errors import SettingsError
from ..validation import check_int, check_positive
from .app import create_app
from .auth import check_exposure, check_token, is_loopback
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
    token: str | None = None,
    insecure: bool = False,
) -> None:
    """Serve ``index_dir`` on ``host:port`` until interrupted; with ``token``, requests must carry it
    (``auth.py``). Without one, an address other machines reach is refused unless ``insecure``.

    The poll interval, the token and the address are checked, and the port bound, before the index is loaded,
    so a bad value or a busy port is one ``SettingsError`` and nothing else happens (``limits`` checks itself).
    """
    poll_seconds = check_positive("--poll-seconds", poll_seconds)
    port = check_int("--port", port, 1, 65535)
    token = None if token is None else check_token(token)
    check_exposure(host, token, insecure)
    listener = bind_socket(host, port)
    try:
        state = ServerState(index_dir, device=device, precision=precision, limits=limits, token=token)
        _announce(state, index_dir, host, port)
        state.watch(poll_seconds)
        try:
            config = uvicorn.Config(create_app(state), log_level="warning" if quiet else "info")
            uvicorn.Server(config).run(sockets=[listener])
        finally:
            state.stop()
    finally:
        listener.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` (IPv6 when ``host`` has a colon), for uvicorn to listen on.

    ``SettingsError`` naming the address when it is empty, unknown, in use or cannot be bound here.
    """
    if not host.strip():
        raise SettingsError("--host '' is empty: give an address of this machine (127.0.0.1: this machine only)")
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no wait after a restart
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"port {port} on {host} is in use (another server is listening there); choose another with --port"
            ) from None
        fix = "choose a --port above 1023" if error.errno == errno.EACCES else "give an address of this machine"
        raise SettingsError(f"cannot listen on {host} port {port} ({error.strerror or error}); {fix}") from None
    listener.set_inheritable(True)
    return listener


def _announce(state: ServerState, index_dir: str | os.PathLike, host: str, port: int) -> None:
    if state.token is None and not is_loopback(host):
        log.warning(
            "serving on %s: anyone who can reach this machine can query the index and see its gallery images", host
        )
    snapshot = state.searcher.snapshot
    log.info(
        "serving %s (%d images, %d objects) at http://%s:%d/  (API schema: /openapi.json)%s",
        index_dir,
        snapshot.held_items,
        len(snapshot.vectors),
        host,
        port,
        "" if state.token is None else "; every request needs the token",
    )
