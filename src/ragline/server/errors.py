"""ragline's exception tree as HTTP: a status code and a JSON body, never a stack trace.

The body has OpenAI's error shape, so the `openai` client raises its matching exception too:

    {"error": {"message": "k must be an integer ≥ 1, got 0", "type": "config_error",
               "code": 400}}
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragline.errors import (
    BusyError,
    ClientGoneError,
    CollectionNotFoundError,
    ConfigError,
    DocumentNotFoundError,
    EmptyIndexError,
    ForbiddenError,
    GenerationTimeoutError,
    IndexBusyError,
    IngestError,
    ModelNotFoundError,
    ModelUnavailableError,
    PayloadTooLargeError,
    RaglineError,
    ShardUnavailableError,
    UnauthorizedError,
    UnsupportedFileError,
)

log = logging.getLogger(__name__)

INTERNAL = "internal error; the server log has the details"

# the most specific class wins (the exception's MRO is walked in order)
STATUS: dict[type[BaseException], int] = {
    ConfigError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    DocumentNotFoundError: 404,
    CollectionNotFoundError: 404,
    ModelNotFoundError: 404,
    EmptyIndexError: 409,            # nothing indexed yet: upload documents first
    PayloadTooLargeError: 413,
    UnsupportedFileError: 415,
    IngestError: 422,                # empty, binary, corrupt or undecodable file
    BusyError: 503,                  # with Retry-After
    IndexBusyError: 503,             # another process writes the index; with Retry-After
    ModelUnavailableError: 503,
    ShardUnavailableError: 503,      # a shard stayed down after its restarts
    GenerationTimeoutError: 504,
    ClientGoneError: 499,            # nginx's "client closed request": nobody reads it
    RaglineError: 500,               # index mismatch/corruption, another writer: the server's side
}


def error_type(exc: BaseException) -> str:
    """ConfigError → config_error, BusyError → busy_error."""
    name = type(exc).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def status_of(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(message: str, kind: str, status: int, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status, **extra}}


def stream_error(exc: Exception) -> dict[str, Any]:
    """The error body for a failure after a streamed response has begun."""
    if isinstance(exc, RaglineError):
        return error_body(str(exc), error_type(exc), status_of(exc))
    return error_body(INTERNAL, "internal_error", 500)


def error_response(exc: RaglineError) -> JSONResponse:
    status = status_of(exc)
    headers = {}
    if isinstance(exc, BusyError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, IndexBusyError):
        headers["Retry-After"] = "5"
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500 and not isinstance(exc, (BusyError, IndexBusyError,
                                              GenerationTimeoutError)):
        log.error("%s: %s", type(exc).__name__, exc)
    return JSONResponse(error_body(str(exc), error_type(exc), status), status_code=status,
                        headers=headers)


def internal_error_response() -> JSONResponse:
    """For an exception outside the tree (a bug): its details stay in the server log."""
    return JSONResponse(error_body(INTERNAL, "internal_error", 500), status_code=500)


def install(app: FastAPI) -> None:
    """Exception handlers: the tree, request validation and HTTP errors. Anything else is
    caught by the app's middleware (internal_error_response)."""

    @app.exception_handler(RaglineError)
    async def _ragline(request: Request, exc: RaglineError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")}
                   for e in exc.errors()]
        first = details[0] if details else {"where": "request", "problem": "invalid"}
        message = f"{first['where']}: {first['problem']}"
        return JSONResponse(error_body(message, "invalid_request_error", 422, details=details),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "http_error", exc.status_code),
                            status_code=exc.status_code, headers=exc.headers)
