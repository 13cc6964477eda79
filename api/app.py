"""The FastAPI application: ``create_app(settings)`` builds it, ``cityfix api`` serves it.

Routers: Open311 GeoReport v2 (``/open311/v2``), the dispatcher API and live push
(``/api``), operations (``/healthz``, ``/readyz``, ``/metrics``). The web map's build,
when present in ``settings.api.static_dir``, is mounted last at ``/``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, routes_dispatch, routes_live, routes_open311, routes_ops
from api import map as web_map
from api.metrics import Metrics
from api.service import ApiService
from core.settings import Settings

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parent.parent


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = errors.error_response(
                Request(scope), 413, f"request body over {self.max_bytes} bytes"
            )
            await response(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit here, then replay.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                response = errors.error_response(
                    Request(scope), 413, f"request body over {self.max_bytes} bytes"
                )
                await response(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, without the 422 FastAPI adds where this service says 400.

    Open311 routes answer invalid input with the spec's 400 error body, never 422.
    """
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path, ops in doc.get("paths", {}).items():
            if path.startswith("/open311/"):
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
        app.openapi_schema = doc
    return app.openapi_schema


class _Metered:
    """Wrap the app in the service's metrics middleware."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = metrics.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counted and timed."""
        await self.app(scope, receive, send)


def create_app(settings: Settings, service: ApiService | None = None) -> FastAPI:
    """Build the application; ``service`` may be given (tests), else one is made."""
    service = service or ApiService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        log.info("api started", extra={"jurisdiction": settings.api.jurisdiction_id})
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="cityfix",
        version="1.0.0",
        summary="Street problems: Open311 GeoReport v2 for citizens, a dispatcher API, live push.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    errors.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.include_router(routes_open311.router)
    app.include_router(routes_dispatch.router)
    app.include_router(routes_live.router)
    app.include_router(routes_ops.router)
    app.include_router(web_map.build_router(settings, graph=service.graph))
    app.add_middleware(_Metered, metrics=service.metrics)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    static = settings.api.static_dir
    static = static if static.is_absolute() else _REPO / static
    if static.is_dir():
        app.mount("/", StaticFiles(directory=static, html=True), name="web")
    return app


def create_app_from_env() -> FastAPI:
    """An app built from freshly read settings (for multi-worker serving)."""
    from core.logs import setup_logging
    from core.settings import load_settings

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_json)
    return create_app(settings)
