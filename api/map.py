"""The web map: the built bundle at ``/`` and ``/report``, and the road layer as vector tiles.

The base map is the city's own road network (``geo.load_city``), never internet tiles.
It is served as Mapbox Vector Tiles at ``/tiles/roads/{z}/{x}/{y}.pbf``, one layer
``roads`` whose features carry a ``class`` (``motorway``, ``primary``, ..., ``minor``):

- a tile only holds the classes that matter at its zoom (``_MIN_ZOOM``), so a zoomed-out
  view of a large city stays small;
- lines are clipped to the tile (plus a buffer, so strokes join across tile edges),
  simplified by about half a screen pixel, and merged per class into one feature;
- tiles are built on first request and kept in memory (``RoadTiler``); the road index
  is built in the background when the router is created, so the first map is quick.

``/report/submit`` lets the citizen page post to Open311 without shipping an API key to
browsers: the server adds the key of the ``web-citizen`` client. ``/report/geocode`` places
an address typed on the page with the city's offline address index (``geo.geocode``), under
the same per-address rate limit as Open311's POST. The bundle itself is built with npm into
``api/static/dist`` at set-up (``make web``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import mapbox_vector_tile
import numpy as np
import shapely
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from api.auth import KEY_PREFIX, key_digest
from core.errors import Conflict, RateLimited
from core.settings import Settings
from geo import RoadGraph, load_city
from geo.geocode import MAX_QUERY_CHARS, Placed
from store import queries

_log = logging.getLogger(__name__)

TILE_EXTENT = 4096
#: Tiles are drawn 512 px wide by MapLibre; a buffer of 16 px joins strokes across edges.
_TILE_PX = 512
_BUFFER = TILE_EXTENT * 16 // _TILE_PX
MIN_ZOOM = 8
#: Tiles at this zoom hold every road unsimplified beyond rounding; the map overzooms them.
MAX_ZOOM = 16
_CACHE_TILES = 4096

#: Drawing class of each OSM highway value, and the zoom from which the class is drawn.
_CLASS_OF = {
    "motorway": "motorway",
    "trunk": "motorway",
    "motorway_link": "link",
    "trunk_link": "link",
    "primary": "primary",
    "primary_link": "link",
    "secondary": "secondary",
    "secondary_link": "link",
    "tertiary": "tertiary",
    "tertiary_link": "link",
}
_MIN_ZOOM = {
    "motorway": 0,
    "primary": 9,
    "secondary": 11,
    "tertiary": 12,
    "link": 13,
    "minor": 14,
}
CLASSES = tuple(_MIN_ZOOM)


def road_class(highway: str) -> str:
    """The drawing class of an OSM highway value (``"primary"``, ``"minor"``, ...).

    Values like ``"unclassified;tertiary"`` take the most important class they name.
    """
    classes = [_CLASS_OF.get(h.strip(), "minor") for h in highway.split(";")]
    return min(classes, key=CLASSES.index)


def lonlat_to_unit(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web-Mercator coordinates scaled to the unit square (x east, y south)."""
    lat = np.clip(lat, -85.05112878, 85.05112878)
    x = (lon + 180.0) / 360.0
    s = np.sin(np.radians(lat))
    y = 0.5 - np.log((1 + s) / (1 - s)) / (4 * math.pi)
    return x, y


class RoadTiler:
    """Mapbox Vector Tiles of one road graph, built on demand and cached in memory."""

    def __init__(self, graph: RoadGraph, *, cache_tiles: int = _CACHE_TILES) -> None:
        t0 = time.perf_counter()
        lines = graph.road_lines()
        self.name = graph.name
        self.bounds = graph.bounds
        counts = np.array([len(c) for c in lines.coordinates], dtype=np.int64)
        coords = np.concatenate(lines.coordinates) if len(counts) else np.zeros((0, 2), dtype=float)
        ux, uy = lonlat_to_unit(coords[:, 0], coords[:, 1])
        self._lines = shapely.linestrings(
            np.column_stack([ux, uy]), indices=np.repeat(np.arange(len(counts)), counts)
        )
        classes = [road_class(h) for h in lines.highway]
        self._class = np.array([CLASSES.index(c) for c in classes], dtype=np.int8)
        self._min_zoom = np.array([_MIN_ZOOM[c] for c in classes], dtype=np.int8)
        self._tree = shapely.STRtree(self._lines)
        self._cache: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._cache_tiles = cache_tiles
        self._lock = threading.Lock()
        _log.info(
            "road tiles ready",
            extra={
                "city": graph.name,
                "lines": len(counts),
                "build_ms": round((time.perf_counter() - t0) * 1000, 1),
            },
        )

    def tilejson(self, tiles_url: str) -> dict[str, Any]:
        """TileJSON 3.0 describing the road tiles (``tiles_url`` with ``{z}/{x}/{y}``)."""
        w, s, e, n = self.bounds
        return {
            "tilejson": "3.0.0",
            "name": f"{self.name} roads",
            "attribution": "© OpenStreetMap contributors, ODbL 1.0",
            "tiles": [tiles_url],
            "minzoom": MIN_ZOOM,
            "maxzoom": MAX_ZOOM,
            "bounds": [w, s, e, n],
            "center": [(w + e) / 2, (s + n) / 2, 13],
            "vector_layers": [{"id": "roads", "fields": {"class": "String"}}],
        }

    def tile(self, z: int, x: int, y: int) -> bytes:
        """The encoded tile ``z/x/y`` (empty bytes where no road is drawn)."""
        key = (z, x, y)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        data = self._build(z, x, y)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self._cache_tiles:
                self._cache.popitem(last=False)
        return data

    def _build(self, z: int, x: int, y: int) -> bytes:
        n = 1 << z
        if not (0 <= x < n and 0 <= y < n):
            return b""
        pad = _BUFFER / TILE_EXTENT
        box = shapely.box((x - pad) / n, (y - pad) / n, (x + 1 + pad) / n, (y + 1 + pad) / n)
        hits = self._tree.query(box)
        hits = hits[self._min_zoom[hits] <= z]
        if not len(hits):
            return b""
        scale = n * TILE_EXTENT
        lines = shapely.transform(
            self._lines[hits], lambda c: c * scale - np.array([x, y]) * TILE_EXTENT
        )
        lines = shapely.clip_by_rect(
            lines, -_BUFFER, -_BUFFER, TILE_EXTENT + _BUFFER, TILE_EXTENT + _BUFFER
        )
        if z < MAX_ZOOM:
            # About half a screen pixel: invisible, and it halves the bytes of a busy tile.
            lines = shapely.simplify(lines, TILE_EXTENT / _TILE_PX / 2, preserve_topology=False)
        keep = ~shapely.is_empty(lines) & (shapely.length(lines) >= 1.0)
        lines, klass = lines[keep], self._class[hits][keep]
        features = []
        for code in np.unique(klass).tolist():
            parts = shapely.get_parts(lines[klass == code])
            parts = parts[shapely.get_type_id(parts) == 1]  # clipping can leave points
            if not len(parts):
                continue
            merged = shapely.line_merge(shapely.multilinestrings(parts))
            features.append({"geometry": merged, "properties": {"class": CLASSES[code]}})
        if not features:
            return b""
        return bytes(
            mapbox_vector_tile.encode(
                [{"name": "roads", "features": features}],
                default_options={"y_coord_down": True, "extents": TILE_EXTENT},
            )
        )


class _LazyTiler:
    """Builds the ``RoadTiler`` once, in the background from start-up, and waits for it."""

    def __init__(self, make: Callable[[], RoadTiler]) -> None:
        self._make = make
        self._tiler: RoadTiler | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, name="road-tiles", daemon=True).start()

    def _run(self) -> None:
        try:
            self._tiler = self._make()
        except BaseException as exc:  # surfaced to every tile request
            _log.exception("road tiles unavailable")
            self._error = exc
        finally:
            self._done.set()

    def get(self) -> RoadTiler:
        self._done.wait()
        if self._tiler is None:
            raise HTTPException(503, f"road network unavailable: {self._error}")
        return self._tiler

    async def ready(self, limit_s: float = 60.0) -> RoadTiler:
        """``get`` for async routes: waits on the event loop, not in a worker thread.

        A request waiting in a thread holds one of the threads every database call also
        needs; while the graph loads (a minute on a first run), a page's tile requests
        would have held them all. Past ``limit_s`` the answer is a 503 with Retry-After.
        """
        deadline = time.monotonic() + limit_s
        while not self._done.is_set():
            if time.monotonic() > deadline:
                raise HTTPException(
                    503, "road network still loading", headers={"Retry-After": "10"}
                )
            await asyncio.sleep(0.05)
        return self.get()


_TILE_HEADERS = {"Cache-Control": "public, max-age=86400"}
_MVT = "application/vnd.mapbox-vector-tile"
_REPO = Path(__file__).resolve().parent.parent

#: The Open311 key the citizen page's reports are sent with (see ``citizen_key``).
CITIZEN_KEY_NAME = "web-citizen"


def citizen_key(settings: Settings) -> str:
    """The ``web-citizen`` API key: derived from the signing secret, never sent to browsers.

    Deriving it (rather than drawing a random one) makes it the same in every API process
    and across restarts, so registering it is idempotent; revoking it with
    ``cityfix apikeys revoke`` stops the citizen page until the secret changes.
    """
    secret = settings.api.secret_key.get_secret_value().encode()
    mac = hmac.new(secret, b"cityfix web-citizen api key v1", hashlib.sha256).digest()
    return KEY_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


class _CitizenProxy:
    """``POST /report/submit``: the form, plus the page's key, to Open311's POST requests.

    The request goes through the application itself (in process), with the caller's
    address, so Open311's validation, per-address rate limit and recording all apply.
    """

    def __init__(self, settings: Settings) -> None:
        self.key = citizen_key(settings)
        self._registered = False
        self._lock = asyncio.Lock()

    async def _register(self, request: Request) -> None:
        if self._registered:
            return
        async with self._lock:
            if self._registered:
                return
            service = request.app.state.service
            if await service.db(queries.api_key_by_hash, key_digest(self.key)) is None:
                with contextlib.suppress(Conflict):  # registered meanwhile, or revoked
                    await service.db(queries.create_api_key, CITIZEN_KEY_NAME, key_digest(self.key))
                    _log.info(
                        "registered the citizen page's API key",
                        extra={"key_name": CITIZEN_KEY_NAME},
                    )
            self._registered = True

    async def __call__(self, request: Request) -> Response:
        await self._register(request)
        form = await request.form()
        fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str) and k != "api_key"]
        fields.append(("api_key", self.key))
        client = (request.client.host, request.client.port) if request.client else ("0.0.0.0", 0)  # noqa: S104 - an address label, not a bind
        transport = httpx.ASGITransport(app=request.app, client=client)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cityfix.internal"
        ) as http:
            answer = await http.post("/open311/v2/requests.json", data=dict_pairs(fields))
        headers = {k: v for k, v in answer.headers.items() if k.lower() in ("retry-after",)}
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
            headers=headers,
        )


async def geocode_address(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
) -> JSONResponse:
    """``GET /report/geocode?q=``: where the citizen page should put its pin for an address.

    The answer is ``{lat, lon, precision, matched, note}`` (``note``: what was not used,
    such as a house number the map lacks, else ""), or a 400 ``{reason, description}``
    saying why the address cannot be placed or why a report there would be refused
    (outside the service area, too far from a road). Each lookup counts against the caller's
    address in Open311's per-address limit (``api.post_rate_per_address_per_min``), the
    one ``/report/submit`` is held to; the index is the one Open311's POST uses, loaded
    on first use (503 while it cannot be).
    """
    service = request.app.state.service
    address = request.client.host if request.client else "unknown"
    wait = service.address_limiter.retry_after_s(address)
    if wait:
        raise RateLimited(
            f"too many requests from this address; retry in {math.ceil(wait)} s", wait
        )
    geocoder = await service.geocoder()
    # Milliseconds per query: answered on the event loop, as Open311's POST does.
    found = geocoder.geocode(q, max_street_radius_m=service.settings.geo.geocode_street_radius_m)
    if not isinstance(found, Placed):
        return JSONResponse(
            {"reason": found.reason, "description": found.description}, status_code=400
        )
    # A pin the report would then be refused at: say so now, with the POST's reason.
    refused = await service.refusal(found.lat, found.lon)
    if refused is not None:
        return JSONResponse(
            {"reason": "not_served", "description": f"{found.matched}: {refused}"},
            status_code=400,
        )
    return JSONResponse(
        {
            "lat": found.lat,
            "lon": found.lon,
            "precision": found.precision,
            "matched": found.matched,
            "note": found.note,
        }
    )


def dict_pairs(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Form pairs as a mapping of each name to its values (repeated names kept)."""
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def build_router(settings: Settings, *, graph: Callable[[], RoadGraph] | None = None) -> APIRouter:
    """The web map's routes: pages, bundle assets, road tiles and the citizen report proxy.

    ``graph`` returns the city's road graph (default: ``geo.load_city(settings.geo)``);
    it is called once, in a background thread, so the API starts at once.
    """
    load = graph or (lambda: load_city(settings.geo))
    tiler = _LazyTiler(lambda: RoadTiler(load()))
    dist = settings.api.static_dir
    dist = dist if dist.is_absolute() else _REPO / dist
    assets = (dist / "assets").resolve()
    router = APIRouter(tags=["web map"])

    def page(name: str) -> Response:
        path = dist / name
        if not path.is_file():
            return HTMLResponse(
                "<!doctype html><title>cityfix</title><h1>The web map is not built</h1>"
                "<p>Run <code>make web</code> (npm) and reload.</p>",
                status_code=503,
            )
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @router.get("/", include_in_schema=False)
    def dispatcher_page() -> Response:
        return page("index.html")

    @router.get("/report", include_in_schema=False)
    def report_page() -> Response:
        return page("report.html")

    @router.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        path = (assets / name).resolve()
        if path.parent != assets or not path.is_file():
            raise HTTPException(404, "no such asset")
        # Vite names assets by content hash, so a name never changes its content.
        return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @router.get("/tiles/roads.json", summary="TileJSON of the road layer")
    async def roads_tilejson(request: Request) -> JSONResponse:
        url = str(request.url_for("road_tile", z="0", x="0", y="0"))
        url = url.replace("/0/0/0.pbf", "/{z}/{x}/{y}.pbf")
        ready = await tiler.ready()
        return JSONResponse(ready.tilejson(url), headers={"Cache-Control": "no-cache"})

    @router.get(
        "/tiles/roads/{z}/{x}/{y}.pbf",
        name="road_tile",
        summary="One Mapbox Vector Tile of the road network (204 where there is no road)",
        response_class=Response,
    )
    async def road_tile(z: int, x: int, y: int) -> Response:
        if not 0 <= z <= 22:
            raise HTTPException(404, "zoom out of range")
        ready = await tiler.ready()
        data = await run_in_threadpool(ready.tile, z, x, y)
        if not data:
            return Response(status_code=204, headers=_TILE_HEADERS)
        return Response(data, media_type=_MVT, headers=_TILE_HEADERS)

    router.add_api_route(
        "/report/submit",
        _CitizenProxy(settings).__call__,
        methods=["POST"],
        summary="Send a citizen report from the web page (Open311 POST, the page's key added)",
        response_class=Response,
    )
    router.add_api_route(
        "/report/geocode",
        geocode_address,
        methods=["GET"],
        summary="Place an address typed on the citizen page (the city's offline address index)",
        responses={
            400: {"description": "The address cannot be placed: why"},
            429: {"description": "Too many requests from this address"},
            503: {"description": "The address index is not available yet"},
        },
    )
    return router
