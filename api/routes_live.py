"""WebSocket ``/api/live``: incident and assignment changes for the map (see ``api.live``).

The bearer token comes as ``?token=...`` or as the first message ``{"token": "..."}``
(within 10 s); ``?cursor=...`` resumes after a disconnect. Close codes: 4401 missing or
invalid token (also when it expires, or its user is removed or disabled, while the feed is
open), 4400 bad cursor, 1011 Kafka unavailable, 1013 the client fell too far behind (it
comes back with its cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import orjson
from aiokafka.errors import KafkaError
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.auth import read_token
from api.deps import authenticate
from api.live import FeedLagging, FeedLost, LiveFeed, follow_hub, parse_cursor
from api.service import ApiService
from core.errors import CityfixError, InvalidMessage, PermissionDenied

log = logging.getLogger(__name__)

_RECHECK_S = 60.0  # how often an open feed checks that its user still exists and may read

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
    token = await _token(ws)
    try:
        caller = await authenticate(service, token)
    except PermissionDenied as exc:
        await ws.close(4401, str(exc)[:120])
        return
    except CityfixError as exc:
        await ws.close(1011, str(exc)[:120])
        return
    log.info("live client connected", extra={"user": caller.username, "resume": cursor is not None})
    service.metrics.live_clients.inc()

    async def send(data: bytes) -> None:
        await ws.send_text(data.decode())

    if cursor is None:  # a new client: the process's hub has the snapshot ready
        pump = asyncio.create_task(follow_hub(service.live_hub, send))
    else:  # a resume: replayed from Kafka after the client's own cursor
        feed = LiveFeed(service.settings, service.live_topics)
        pump = asyncio.create_task(feed.run(send, cursor))
    listen = asyncio.create_task(_drain(ws))
    watch = asyncio.create_task(_watch(service, token))
    try:
        done, _ = await asyncio.wait({pump, listen, watch}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]
        if watch in done:
            with contextlib.suppress(Exception):
                await ws.close(4401, watch.result()[:120])
    except FeedLagging as exc:
        log.info("live client too slow: %s", exc)
        with contextlib.suppress(Exception):
            await ws.close(1013, "too far behind; resume with your cursor")
    except (KafkaError, OSError, FeedLost) as exc:
        log.warning("live feed failed: %r", exc)
        with contextlib.suppress(Exception):
            await ws.close(1011, "kafka unavailable")
    finally:
        for task in (pump, listen, watch):
            task.cancel()
        for task in (pump, listen, watch):
            with contextlib.suppress(BaseException):
                await task
        service.metrics.live_clients.dec()
        log.info("live client gone", extra={"user": caller.username})


async def _watch(service: ApiService, token: str | None) -> str:
    """Return (the reason) once the connection's credentials stop being valid.

    Checked when the token expires and every ``_RECHECK_S`` before that: an expired
    token, or a user removed or disabled since, ends the feed (close code 4401).
    """
    secret = service.settings.api.secret_key.get_secret_value()
    while True:
        try:
            claims = read_token(token or "", secret=secret)
            left_s = (claims.expires_at - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(min(_RECHECK_S, max(0.0, left_s) + 0.5))
            await authenticate(service, token)
        except PermissionDenied as exc:
            return str(exc)
        except CityfixError as exc:  # the database not answering: ask again next time
            log.debug("live feed credentials not checked: %s", exc)


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) client messages until the client goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()
