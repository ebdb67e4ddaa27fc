"""The API's errors and the ONE handler that turns every error into an HTTP response.

Domain errors (``ScholarError``) carry a ``kind``; the kind picks the status. A few API errors pick
their own status (401, 429) and headers (WWW-Authenticate, Retry-After). Lost connections to the
broker or the job store are 503 with a hint. Anything else is a 500 without details: the trace goes
to the log, never to the client.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from datastore.errors import ErrorKind, ScholarError

log = logging.getLogger(__name__)

KIND_STATUS: dict[str, int] = {
    "invalid_input": 422,
    "not_found": 404,
    "unavailable": 503,
    "conflict": 409,
    "too_large": 413,
    "internal": 500,
}


class ApiError(ScholarError):
    """An error of the HTTP layer; ``status`` and ``headers`` override the kind's defaults."""

    status: int | None = None
    headers: dict[str, str] | None = None


class Unauthorized(ApiError):
    kind: ErrorKind = "invalid_input"
    status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class RateLimited(ApiError):
    kind: ErrorKind = "unavailable"
    status = 429
    retryable = True

    def __init__(self, retry_after_s: float, limit_per_minute: float, what: str = "this key may send",
                 unit: str = "requests") -> None:
        super().__init__(
            f"rate limit exceeded: {what} {limit_per_minute:g} {unit} per minute",
            hint=f"retry after {math.ceil(retry_after_s)} s",
        )
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class InvalidRequest(ApiError):
    kind: ErrorKind = "invalid_input"


class RequestTooLarge(ApiError):
    kind: ErrorKind = "too_large"


class NotFound(ApiError):
    kind: ErrorKind = "not_found"


class ServiceUnavailable(ApiError):
    """The broker, the job store or the LLM cannot be reached right now."""

    kind: ErrorKind = "unavailable"
    retryable = True


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the broker or store is down"; mapped to 503, never 500."""
    import sqlite3

    import kombu.exceptions
    import redis.exceptions

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        kombu.exceptions.OperationalError,
        sqlite3.OperationalError,
        ConnectionError,
        TimeoutError,
    )


def error_body(exc: ScholarError) -> dict[str, Any]:
    body = exc.to_dict()
    body["error"] = type(exc).__name__
    return body


def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The single mapping from any exception to a JSON error response."""
    headers: dict[str, str] = {}
    if isinstance(exc, ScholarError):
        status = getattr(exc, "status", None) or KIND_STATUS.get(exc.kind, 500)
        headers.update(getattr(exc, "headers", None) or {})
        if status == 503 and exc.retryable:
            headers.setdefault("Retry-After", "5")
        if status >= 500:
            log.warning("%s %s -> %s: %s", request.method, request.url.path, status, exc)
        return JSONResponse(error_body(exc), status_code=status, headers=headers)
    if isinstance(exc, RequestValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append({"field": where, "message": e.get("msg", "invalid value")})
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        body = error_body(InvalidRequest(f"invalid request: {summary}", hint="see /docs for the request schema"))
        body["problems"] = problems[:20]
        return JSONResponse(body, status_code=422)
    if isinstance(exc, StarletteHTTPException):
        err = ApiError(str(exc.detail) if exc.detail else "request failed")
        err.kind = "not_found" if exc.status_code == 404 else "invalid_input"
        return JSONResponse(error_body(err), status_code=exc.status_code, headers=dict(exc.headers or {}))
    if isinstance(exc, _connection_errors()):
        log.warning("%s %s -> 503: backend unreachable: %r", request.method, request.url.path, exc)
        err = ServiceUnavailable(
            "the job broker or job store cannot be reached",
            hint="the service is restarting or Redis is down; retry in a few seconds",
        )
        return JSONResponse(error_body(err), status_code=503, headers={"Retry-After": "5"})
    log.error("%s %s -> 500", request.method, request.url.path, exc_info=exc)
    err = ApiError("internal server error", hint="the error was logged; retry, or report it with the time")
    return JSONResponse(error_body(err), status_code=500)


def install_error_handler(app: FastAPI) -> None:
    """Route every exception class through ``handle_error``."""
    for cls in (ScholarError, RequestValidationError, StarletteHTTPException, *_connection_errors(), Exception):
        app.add_exception_handler(cls, handle_error)  # type: ignore[arg-type]
