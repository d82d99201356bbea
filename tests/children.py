"""Run test work in a forked child process: to kill it at random moments, to measure its memory, or
to run it as an unprivileged user (so that file permissions bind even when the tests run as root)."""

from __future__ import annotations

import importlib
import os
import pickle
import pkgutil
import select
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

NOBODY = 65534


@dataclass(frozen=True)
class ChildResult:
    exit_code: int
    value: Any  # what the function returned
    error: str | None  # "ExceptionType: message" when it raised
    max_rss_bytes: int


def unprivileged() -> bool:
    """True when children asked to drop privileges will really run as another user (the tests run as root)."""
    return os.geteuid() == 0


def preload() -> None:
    """Import what a child may need while the interpreter's files can still be read: every module of
    retrieval (most are imported on first use), every Pillow plugin and the codecs files are opened with."""
    import encodings.ascii  # noqa: F401
    import encodings.utf_8  # noqa: F401

    import retrieval

    Image.init()
    for module in pkgutil.walk_packages(retrieval.__path__, "retrieval."):
        importlib.import_module(module.name)


def start_child(function: Callable, *args, drop_privileges: bool = False, **kwargs) -> tuple[int, int]:
    """Fork and run ``function(*args, **kwargs)`` in the child; return ``(pid, fd to read its result from)``.

    The child uses one torch thread (OpenMP's thread pool does not survive fork) and, with
    ``drop_privileges`` while root, runs as user ``nobody``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            torch.set_num_threads(1)
            if drop_privileges and unprivileged():
                preload()  # nobody may not read the interpreter's files
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            outcome = ("value", function(*args, **kwargs))
        except BaseException as error:  # report everything to the parent
            outcome = ("error", f"{type(error).__name__}: {error}")
            code = 1
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(pickle.dumps(outcome))
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def finish_child(pid: int, read_end: int, timeout: float = 300.0) -> ChildResult:
    """Wait for a child from ``start_child`` (killing it after ``timeout`` seconds) and collect its result."""
    data = b""
    deadline = time.monotonic() + timeout
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            data += chunk
    _, status, usage = os.wait4(pid, 0)
    kind, payload = pickle.loads(data) if data else ("error", "the child died without a result")
    return ChildResult(
        exit_code=os.waitstatus_to_exitcode(status),
        value=payload if kind == "value" else None,
        error=payload if kind == "error" else None,
        max_rss_bytes=usage.ru_maxrss * 1024,
    )


def run_in_child(
    function: Callable, *args, drop_privileges: bool = False, timeout: float = 300.0, **kwargs
) -> ChildResult:
    """``start_child`` then ``finish_child``."""
    pid, read_end = start_child(function, *args, drop_privileges=drop_privileges, **kwargs)
    return finish_child(pid, read_end, timeout)


def child_done(read_end: int) -> bool:
    """True once a child from ``start_child`` has finished (its result is waiting to be read)."""
    return bool(select.select([read_end], [], [], 0)[0])


def kill_child(pid: int, read_end: int) -> bool:
    """SIGKILL a child from ``start_child``; True when it was still running (killed), False when it had finished."""
    finished, _ = os.waitpid(pid, os.WNOHANG)
    running = finished == 0
    if running:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(read_end)
    return running


def shared_folder() -> Path:
    """A new folder under the system temp folder that an unprivileged child can enter and write into."""
    folder = Path(tempfile.mkdtemp(prefix="retrieval-test-"))
    folder.chmod(0o777)
    return folder


def give_to_nobody(path: Path) -> None:
    """Make ``path`` (recursively) owned by ``nobody`` when running as root, so a dropped child may write it."""
    if not unprivileged():
        return
    for root, folders, files in os.walk(path):
        os.chown(root, NOBODY, NOBODY)
        for name in folders + files:
            os.chown(os.path.join(root, name), NOBODY, NOBODY, follow_symlinks=False)
