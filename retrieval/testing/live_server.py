"""Run ``retrieval serve`` as a real process on a free loopback port, for the live and browser tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(index: Path, *options: str, token: str | None = None):
    """``retrieval serve --index index`` on 127.0.0.1; yields its base URL once /api/health answers (asked with
    ``token``, for a server given one through ``options`` or ``$RETRIEVAL_TOKEN``)."""
    port = free_port()
    command = [sys.executable, "-m", "retrieval.cli.main", "serve", "--index", str(index), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--device", "cpu", "--quiet", *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {process.stdout.read().decode(errors='replace')}")
            try:
                if httpx.get(f"{base}/api/health", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer within 120 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
