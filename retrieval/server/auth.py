"""The lock on the door: a bearer token that every request but the page's own files must carry when the
server has one, and the refusal to serve beyond this machine without one.

- ``token_from``: the token ``retrieval serve`` is given: ``--token-file F`` (it wins), else ``$RETRIEVAL_TOKEN``.
- ``check_exposure``: an address other machines reach (anything but loopback) needs a token, or ``--insecure``.
- ``install_token_check``: every path but ``/`` and ``/static/…`` (the page's HTML, script and style: no index
  data, and a browser opening a page cannot send a header) answers 401 without ``Authorization: Bearer <token>``,
  compared in constant time. That covers ``/api/…`` (health included), ``/openapi.json`` and any route added later.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import stat
from typing import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import SettingsError

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "RETRIEVAL_TOKEN"
MIN_TOKEN_LENGTH = 16
MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
CHALLENGE = {"WWW-Authenticate": "Bearer"}
_ADVICE = f"use {MIN_TOKEN_LENGTH} or more ASCII letters, digits and punctuation (make a token: {MAKE_ONE})"


def token_from(token_file: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token to require: the contents of ``token_file`` when given, else ``$RETRIEVAL_TOKEN`` when set, else
    ``None`` (no token). ``SettingsError`` when the one chosen is missing, unreadable, empty or too weak."""
    if token_file is not None:
        if TOKEN_VARIABLE in environ:
            log.info("using the token in --token-file %s; $%s is ignored", token_file, TOKEN_VARIABLE)
        return read_token_file(token_file)
    if TOKEN_VARIABLE in environ:
        return check_token(environ[TOKEN_VARIABLE], f"${TOKEN_VARIABLE}")
    return None


def read_token_file(path: str) -> str:
    """The token in the text file at ``path`` (surrounding whitespace, such as the final newline, dropped).

    A file other users can read still works, with a warning: a container's mounted secrets often are.
    """
    if not path.strip():
        raise SettingsError("--token-file '' names no file: give the file that holds the token")
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read; a folder has no text
            raise SettingsError(f"--token-file {path} is not a file: give the file that holds the token")
        with open(path, "rb") as file:
            data = file.read(4096)
    except FileNotFoundError:
        raise SettingsError(
            f"--token-file {path} does not exist: write a token into it ({MAKE_ONE} > {path})"
        ) from None
    except OSError as error:
        raise SettingsError(f"--token-file {path} cannot be read ({error.strerror}); check its permissions") from None
    if info.st_mode & stat.S_IROTH:
        log.warning("--token-file %s can be read by every user of this machine; chmod 600 %s", path, path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SettingsError(f"--token-file {path} is not an ASCII text file: {_ADVICE}") from None
    return check_token(text, f"--token-file {path}")


def check_token(text: str, source: str = "token") -> str:
    """``text`` without surrounding whitespace, when it is a usable token: at least 16 printable ASCII characters,
    no space. The message names ``source`` (``--token-file F``, ``$RETRIEVAL_TOKEN``), never the token."""
    token = text.strip()
    if not token:
        raise SettingsError(f"{source} is empty: {_ADVICE}")
    if not (token.isascii() and token.isprintable()) or any(char.isspace() for char in token):
        raise SettingsError(f"{source} holds spaces or characters that are not printable ASCII: {_ADVICE}")
    if len(token) < MIN_TOKEN_LENGTH:
        raise SettingsError(f"{source} holds only {len(token)} characters: {_ADVICE}")
    return token


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve on ``host`` without a token when other machines can reach it, unless ``insecure``
    (an empty ``host`` is left to ``bind_socket``, which names it)."""
    if token is None and not insecure and host.strip() and not is_loopback(host):
        raise SettingsError(
            f"--host {host} can be reached from other machines and the server has no token: give --token-file F "
            f"(or set ${TOKEN_VARIABLE}), or add --insecure to serve the index to anyone who can reach it"
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_open(path: str) -> bool:
    """Whether ``path`` is one of the page's own files, served without the token."""
    return path == "/" or path.startswith("/static/")


def token_problem(header: str | None, token: str) -> str | None:
    """Why the ``Authorization`` header value ``header`` does not carry ``token`` (``None``: it does)."""
    if header is None:
        return "this server needs its token: send the header 'Authorization: Bearer <token>'"
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return "the Authorization header must read 'Bearer <token>'"
    # Starlette decodes header bytes as latin-1: encoding back gives the bytes that were sent
    if not hmac.compare_digest(given.strip().encode("latin-1"), token.encode("ascii")):
        return "the token is not this server's: send the one in its --token-file (or $RETRIEVAL_TOKEN)"
    return None


def install_token_check(app: FastAPI, token: str) -> None:
    """Answer 401 (``detail``, ``WWW-Authenticate: Bearer``) to any request for a path that is not ``is_open``
    without ``token``. Installed last, it runs first: nothing else is told to an unauthorized client."""

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if not is_open(request.scope["path"]):
            problem = token_problem(request.headers.get("authorization"), token)
            if problem is not None:
                return JSONResponse({"detail": problem}, status_code=401, headers=CHALLENGE)
        return await call_next(request)
