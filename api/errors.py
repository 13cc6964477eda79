"""The one place where errors become HTTP answers.

Under ``/open311`` every error is a GeoReport error body (a list of ``{code,
description}``; XML ``<errors><error>...``) in the format the path asks for. Elsewhere
it is ``{"detail": "..."}``.

======================  ======  ====================================================
error                   status  note
======================  ======  ====================================================
Open311Error            own     400 / 403 / 404 as the spec says
InvalidMessage          400     422 under ``/api`` (FastAPI's convention there)
RequestValidationError  400     422 under ``/api``
InvalidToken            401     ``WWW-Authenticate: Bearer``
PermissionDenied        403
NotFound                404
Conflict                409
PayloadTooLarge         413
RateLimited             429     ``Retry-After``
ServiceUnavailable      503
======================  ======  ====================================================
"""

from __future__ import annotations

import logging
import math

import orjson
import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import open311 as o311
from api.auth import InvalidToken
from api.render import render
from core.errors import (
    Conflict,
    InvalidMessage,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)


def is_open311(request: Request) -> bool:
    """Whether the request is for the Open311 endpoint."""
    return request.url.path.startswith("/open311")


def _format_of(request: Request) -> str:
    return "xml" if request.url.path.endswith(".xml") else "json"


def error_response(
    request: Request, status: int, description: str, headers: dict[str, str] | None = None
) -> Response:
    """An error answer shaped for the endpoint the request was for."""
    if is_open311(request):
        body, ctype = render(_format_of(request), "errors", o311.errors_doc(status, description))
    else:
        body, ctype = orjson.dumps({"detail": description}), "application/json"
    return Response(body, status_code=status, media_type=ctype, headers=headers)


def _validation_text(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(o311.Open311Error)
    async def _open311(request: Request, exc: o311.Open311Error) -> Response:
        return error_response(request, exc.code, exc.description)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        status = 400 if is_open311(request) else 422
        return error_response(request, status, _validation_text(exc))

    @app.exception_handler(psycopg.DataError)
    async def _bad_value(request: Request, exc: psycopg.DataError) -> Response:
        # A value the database cannot take (a NUL byte, a number out of range) came from
        # the request: the client's to fix, and nothing of the server to report.
        # Answered like any other invalid input: 400 on Open311, 422 elsewhere.
        log.info("request refused by the database: %s", exc, extra={"path": request.url.path})
        status = 400 if is_open311(request) else 422
        return error_response(request, status, f"invalid value: {exc}")

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(request: Request, exc: PayloadTooLarge) -> Response:
        return error_response(request, 413, str(exc))

    @app.exception_handler(InvalidMessage)
    async def _bad(request: Request, exc: InvalidMessage) -> Response:
        return error_response(request, 400 if is_open311(request) else 422, str(exc))

    @app.exception_handler(InvalidToken)
    async def _unauthenticated(request: Request, exc: InvalidToken) -> Response:
        return error_response(request, 401, str(exc), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(PermissionDenied)
    async def _forbidden(request: Request, exc: PermissionDenied) -> Response:
        return error_response(request, 403, str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return error_response(request, 404, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> Response:
        return error_response(request, 409, str(exc))

    @app.exception_handler(RateLimited)
    async def _limited(request: Request, exc: RateLimited) -> Response:
        request.app.state.service.metrics.rate_limited.inc()
        retry_after = str(max(1, math.ceil(exc.retry_after_s)))
        return error_response(request, 429, str(exc), {"Retry-After": retry_after})

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(request: Request, exc: ServiceUnavailable) -> Response:
        log.warning("backing server unavailable: %s", exc, extra={"path": request.url.path})
        return error_response(request, 503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, str(exc.detail), exc.headers)
