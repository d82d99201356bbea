"""Errors as the API answers them: ``{"detail": "<one line>"}`` with a 4xx status, for our own errors
(``RetrievalError``) and for FastAPI's request validation alike.

- ``SettingsError`` (a value out of range, an unknown choice) and a request FastAPI cannot parse (a missing
  field, ``top_k=abc``) → 422;
- ``ImageError`` for an image over the pixel limit → 413; any other ``RetrievalError`` → 400.

A validation message names the field and the value and says what is allowed, in the words of
``retrieval.validation`` where the same check exists there (``top_k 'abc' must be a whole number``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import ImageError, RetrievalError, SettingsError
from ..validation import check_float, check_int

_REQUEST_PARTS = ("body", "query", "path", "header", "cookie")
_CHECKS = {"int": check_int, "float": check_float}  # pydantic error type prefix → our check of that kind


def install_error_handlers(app: FastAPI) -> None:
    """Answer ``RetrievalError`` and ``RequestValidationError`` with a one-line ``detail`` string."""
    app.add_exception_handler(RetrievalError, _user_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)


async def _user_error(request: Request, error: RetrievalError) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status_of(error))


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_message(error.errors())}, status_code=422)


def status_of(error: RetrievalError) -> int:
    """The HTTP status for one of our errors."""
    if isinstance(error, ImageError) and "pixels is more than the limit" in str(error):
        return 413
    return 422 if isinstance(error, SettingsError) else 400


def validation_message(errors: list[dict]) -> str:
    """pydantic's list of errors as one line: each names the field and its value and says what is allowed."""
    return "; ".join(dict.fromkeys(_one_error(error) for error in errors))


def _one_error(error: dict) -> str:
    location = [str(part) for part in error.get("loc", ()) if part not in _REQUEST_PARTS]
    name = ".".join(location) or "the request"
    if error.get("type") == "missing":
        return f"{name} is required"
    value = error.get("input")
    check = _CHECKS.get(str(error.get("type", "")).split("_")[0])
    if check is not None:
        try:
            check(name, value)
        except SettingsError as message:
            return str(message)
    message = " ".join(str(error.get("msg", "is not valid")).split())
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{name} {shown} is not allowed: {message[:1].lower()}{message[1:]}"
