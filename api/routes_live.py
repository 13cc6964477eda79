"""WebSocket ``/api/live``: incident and assignment changes for the map (see ``api.live``).

The bearer token comes as ``?token=...`` or as the first message ``{"token": "..."}``
(within 10 s); ``?cursor=...`` resumes after a disconnect. Close codes: 4401 missing or
invalid token, 4400 bad cursor, 1011 Kafka unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from aiokafka.errors import KafkaError
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.deps import authenticate
from api.live import LiveFeed, parse_cursor
from api.service import ApiService
from core.errors import CityfixError, InvalidMessage, PermissionDenied

log = logging.getLogger(__name__)

router = APIRouter()


async def _token(ws: WebSocket) -> str | None:
    token = ws.query_params.get("token")
    if token:
        return token
    try:
        first = await asyncio.wait_for(ws.receive_text(), 10)
        doc = orjson.loads(first)
    except (TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect):
        return None
    value = doc.get("token") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


@router.websocket("/api/live")
async def live(ws: WebSocket) -> None:
    """Stream incident and assignment changes, resumable by Kafka offsets."""
    service: ApiService = ws.app.state.service
    await ws.accept()
    try:
        cursor = parse_cursor(ws.query_params["cursor"]) if ws.query_params.get("cursor") else None
    except InvalidMessage as exc:
        await ws.close(4400, str(exc)[:120])
        return
    try:
        caller = await authenticate(service, await _token(ws))
    except PermissionDenied as exc:
        await ws.close(4401, str(exc)[:120])
        return
    except CityfixError as exc:
        await ws.close(1011, str(exc)[:120])
        return
    log.info("live client connected", extra={"user": caller.username, "resume": cursor is not None})
    service.metrics.live_clients.inc()
    feed = LiveFeed(service.settings, service.live_topics)

    async def send(data: bytes) -> None:
        await ws.send_text(data.decode())

    pump = asyncio.create_task(feed.run(send, cursor))
    listen = asyncio.create_task(_drain(ws))
    try:
        done, _ = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]
    except (KafkaError, OSError) as exc:
        log.warning("live feed failed: %r", exc)
        with contextlib.suppress(Exception):
            await ws.close(1011, "kafka unavailable")
    finally:
        for task in (pump, listen):
            task.cancel()
        for task in (pump, listen):
            with contextlib.suppress(BaseException):
                await task
        service.metrics.live_clients.dec()
        log.info("live client gone", extra={"user": caller.username})


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) client messages until the client goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()
