"""Open311 GeoReport v2 routes under ``/open311/v2``: decode, call ``api.open311``, render.

Every route answers in the format its path ends with (``.xml``, required by the spec, or
``.json``); errors too (``api.errors``).
"""

from __future__ import annotations

import functools
import logging
import math
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response

from api import open311 as o311
from api.auth import key_digest
from api.cache import Rendered
from api.deps import Service
from api.map import CITIZEN_KEY_NAME
from api.models import (
    CreatedOut,
    DiscoveryOut,
    Open311ErrorItem,
    RequestOut,
    RequestUpdateOut,
    ServiceDefinitionOut,
    ServiceOut,
    TokenOut,
)
from api.render import render
from api.service import NotSent
from api.services import service as find_service
from core.errors import InvalidMessage, RateLimited
from core.schemas import CitizenReport, parse
from store import api_queries, queries

log = logging.getLogger(__name__)

router = APIRouter(prefix="/open311/v2", tags=["open311"])


class Format(StrEnum):
    """The response format, given as the path's extension."""

    json = "json"
    xml = "xml"


_XML = {"text/xml": {"schema": {"type": "string"}}}
_ERROR_TEXT = {
    400: "Bad request: a parameter is missing or invalid (GeoReport error body).",
    403: "Forbidden: api_key missing or invalid (GeoReport error body).",
    404: "Not found: unknown jurisdiction_id, service_code or service_request_id.",
    413: "Request body too large.",
    429: "Too many requests for this api_key or address; see Retry-After.",
    503: "A backing server (database, MQTT or Kafka) is unavailable.",
}


def _responses(model: Any, *codes: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        200: {"model": model, "content": _XML, "description": "JSON or XML, as the path says."}
    }
    for code in codes:
        out[code] = {
            "model": list[Open311ErrorItem],
            "content": _XML,
            "description": _ERROR_TEXT[code],
        }
    return out


Jurisdiction = Annotated[
    str | None, Query(description="This endpoint serves one jurisdiction; optional.")
]


def _joined(values: list[str] | None) -> str | None:
    return ",".join(values) if values else None


def _answer(fmt: Format, root: str, doc: Any, status_code: int = 200) -> Response:
    body, ctype = render(fmt.value, root, doc)
    return Response(body, status_code=status_code, media_type=ctype)


@router.get(
    "/discovery.{fmt}", responses=_responses(DiscoveryOut, 400), summary="Service discovery"
)
async def discovery(fmt: Format, request: Request, service: Service) -> Response:
    """Where this GeoReport v2 endpoint is and what it speaks."""
    base = str(request.base_url).rstrip("/") + router.prefix
    doc = o311.discovery_doc(base, service.started_at, "cityfix operators")
    return _answer(fmt, "discovery", doc)


@router.get(
    "/services.{fmt}", responses=_responses(list[ServiceOut], 400, 404), summary="GET Service List"
)
async def services(fmt: Format, service: Service, jurisdiction_id: Jurisdiction = None) -> Response:
    """The services (citizen categories) requests can be made for."""
    o311.check_jurisdiction(jurisdiction_id, service.settings.api.jurisdiction_id)
    return _answer(fmt, "services", o311.services_doc())


@router.get(
    "/services/{service_code}.{fmt}",
    responses=_responses(ServiceDefinitionOut, 400, 404),
    summary="GET Service Definition",
)
async def service_definition(
    service_code: str, fmt: Format, service: Service, jurisdiction_id: Jurisdiction = None
) -> Response:
    """A service's typed attributes."""
    o311.check_jurisdiction(jurisdiction_id, service.settings.api.jurisdiction_id)
    svc = find_service(service_code)
    if svc is None:
        raise o311.Open311Error(404, f"service_code: no service {service_code!r}")
    return _answer(fmt, "service_definition", o311.definition_doc(svc))


def _form_fields(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


_F = Annotated[str | None, Form()]


@router.post(
    "/requests.{fmt}",
    responses=_responses(list[CreatedOut], 400, 403, 404, 413, 429, 503),
    summary="POST Service Request",
)
async def create_request(
    fmt: Format,
    request: Request,
    service: Service,
    api_key: _F = None,
    jurisdiction_id: _F = None,
    service_code: _F = None,
    lat: _F = None,
    long: _F = None,
    address_string: _F = None,
    address_id: _F = None,
    email: _F = None,
    device_id: _F = None,
    account_id: _F = None,
    first_name: _F = None,
    last_name: _F = None,
    phone: _F = None,
    description: _F = None,
    media_url: _F = None,
) -> Response:
    """Create a request; its ``attribute[CODE]`` / ``attribute[CODE][]`` fields as defined.

    The report is recorded, so a GET finds it at once, and published to the pipeline
    (MQTT, QoS 1). ``api_key`` is required; personal data is kept apart and never returned.
    """
    form = await request.form()
    pairs = [(k, v) for k, v in request.query_params.multi_items()]
    pairs += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    fields = _form_fields(pairs)
    settings = service.settings.api
    given_jurisdiction = (fields.get("jurisdiction_id") or [None])[-1]
    o311.check_jurisdiction(given_jurisdiction, settings.jurisdiction_id)
    address = request.client.host if request.client else "unknown"
    wait = service.address_limiter.retry_after_s(address)
    if wait:
        raise RateLimited(
            f"too many requests from this address; retry in {math.ceil(wait)} s", wait
        )
    keys = fields.get("api_key") or []
    if not keys or not keys[-1]:
        raise o311.Open311Error(403, "api_key: required to create a request")
    key = await service.db(queries.api_key_by_hash, key_digest(keys[-1]))
    if key is None:
        raise o311.Open311Error(
            403, "Invalid api_key received -- can't proceed with create_request."
        )
    # The citizen page's key speaks for every citizen using the page: the per-address
    # limit applies to them, and a per-key one would let one person lock out the city.
    shared = key["name"] == CITIZEN_KEY_NAME
    wait = 0.0 if shared else service.key_limiter.retry_after_s(f"key:{key['key_id']}")
    if wait:
        raise RateLimited(
            f"too many requests for this api_key; retry in {math.ceil(wait)} s", wait
        )
    geocode: o311.Geocode | None = None
    if o311.needs_geocoder(fields):  # an address, not coordinates: the city's index
        geocoder = await service.geocoder()
        radius_m = service.settings.geo.geocode_street_radius_m
        geocode = functools.partial(geocoder.geocode, max_street_radius_m=radius_m)
    new = o311.parse_new_request(fields, pairs, now=service.now(), geocode=geocode)
    refused = await service.refusal(new.lat, new.lon)
    if refused is not None:  # the pipeline would drop it: say so now, not never
        if new.matched is not None:
            raise o311.bad_request(f"address_string: {new.matched}: {refused}")
        raise o311.bad_request(f"lat, long: {refused}")
    client_id = o311.client_id_for_key(key["name"])
    try:
        report = parse(
            CitizenReport,
            {
                "report_id": str(new.report_id),
                "category": new.service_code,
                "lat": new.lat,
                "lon": new.lon,
                "reported_at": new.requested_at.isoformat(),
                "description": new.description,
                "media_url": new.media_url,
                "asset_id": new.asset_id,
            },
        )
    except InvalidMessage as exc:
        raise o311.bad_request(str(exc)) from exc
    # Recorded first, in one transaction, then published: a 200 means both happened. A
    # value the database refuses is the client's 400 and nothing reaches the pipeline. A
    # report that could not be sent is taken back (503, the client may retry); one sent
    # but not acknowledged in time stays recorded, as it may still arrive.
    await service.db(
        api_queries.record_request,
        report={
            "report_id": new.report_id,
            "reported_at": report.reported_at,
            "category": new.service_code,
            "lat": new.lat,
            "lon": new.lon,
            "description": new.description,
            "media_url": new.media_url,
            "asset_id": new.asset_id,
            "client_id": client_id,
        },
        address_string=new.address_string,
        address_id=new.address_id,
        attributes=new.attributes,
        api_key_name=key["name"],
        device_id=new.device_id,
        contact={
            "email": new.contact.email,
            "phone": new.contact.phone,
            "first_name": new.contact.first_name,
            "last_name": new.contact.last_name,
        },
    )
    try:
        await service.publish_report(client_id, report)
    except NotSent:
        await service.db(api_queries.forget_request, str(new.report_id), report.reported_at)
        raise
    service.cache.clear()  # lists now include this request
    service.metrics.open311_created.labels(new.service_code).inc()
    log.info(
        "open311 request created",
        extra={
            "report_id": str(new.report_id),
            "service_code": new.service_code,
            "key": key["name"],
            "precision": new.precision,
        },
    )
    notice = o311.service_notice(new)
    return _answer(fmt, "service_requests", o311.created_doc(str(new.report_id), notice))


@router.get(
    "/requests.{fmt}",
    responses=_responses(list[RequestOut], 400, 404, 503),
    summary="GET Service Requests",
)
async def list_requests(
    fmt: Format,
    request: Request,
    service: Service,
    jurisdiction_id: Jurisdiction = None,
    service_request_id: Annotated[
        list[str] | None,
        Query(description="Comma-separated ids, or repeated; overrides every other filter."),
    ] = None,
    service_code: Annotated[
        list[str] | None, Query(description="Service codes, comma-separated or repeated.")
    ] = None,
    start_date: Annotated[str | None, Query(description="W3C datetime with a zone.")] = None,
    end_date: Annotated[str | None, Query(description="W3C datetime with a zone.")] = None,
    status: Annotated[
        list[str] | None, Query(description="open, closed, or both (comma-separated or repeated).")
    ] = None,
    page: Annotated[str | None, Query(description="Page number, from 1 (extension).")] = None,
    page_size: Annotated[
        str | None, Query(description="At most 1000, the default (extension).")
    ] = None,
    bbox: Annotated[
        str | None, Query(description="min_long,min_lat,max_long,max_lat (extension).")
    ] = None,
) -> Response:
    """Requests, newest first: by default the last 90 days, at most 1,000."""
    o311.check_jurisdiction(jurisdiction_id, service.settings.api.jurisdiction_id)
    q = o311.parse_request_query(
        {
            # The spec lets a list parameter be declared several times, comma delimited.
            "service_request_id": _joined(service_request_id),
            "service_code": _joined(service_code),
            "start_date": start_date,
            "end_date": end_date,
            "status": _joined(status),
            "page": page,
            "page_size": page_size,
            "bbox": bbox,
        },
        now=service.now(),
    )
    want_closed = None
    if len(q.statuses) == 1:
        want_closed = q.statuses[0] == "closed"

    def make_in_thread(pool: Any) -> Rendered:  # query, render, compress off the loop
        rows = api_queries.request_rows(
            pool,
            ids=q.ids,
            service_codes=q.service_codes,
            start=q.start,
            end=q.end,
            closed_statuses=o311.incident_statuses_with("closed"),
            want_closed=want_closed,
            bbox=q.bbox,
            limit=q.page_size,
            offset=q.offset,
        )
        body, ctype = render(fmt.value, "service_requests", [o311.request_doc(r) for r in rows])
        return Rendered.of(body, ctype)

    async def make() -> Rendered:
        rendered: Rendered = await service.db(make_in_thread)
        return rendered

    # The default window moves with the clock; it is shared for the cache's lifetime.
    key = f"requests:{fmt.value}:{request.url.query}"
    return (await service.cache.get(key, make)).respond(request)


@router.get(
    "/requests/{service_request_id}.{fmt}",
    responses=_responses(list[RequestOut], 400, 404, 503),
    summary="GET Service Request",
)
async def get_request(
    service_request_id: str, fmt: Format, service: Service, jurisdiction_id: Jurisdiction = None
) -> Response:
    """One request with its history (``notes``)."""
    o311.check_jurisdiction(jurisdiction_id, service.settings.api.jurisdiction_id)
    rid = o311.request_id_or_404(service_request_id)
    rows = await service.db(api_queries.request_rows, ids=[rid], limit=1, with_history=True)
    if not rows:
        raise o311.Open311Error(404, f"service_request_id: no request {service_request_id!r}")
    return _answer(fmt, "service_requests", [o311.request_doc(rows[0], with_notes=True)])


@router.get(
    "/tokens/{token}.{fmt}",
    responses=_responses(list[TokenOut], 400, 404, 503),
    summary="GET request id from a token",
)
async def token(
    token: str, fmt: Format, service: Service, jurisdiction_id: Jurisdiction = None
) -> Response:
    """Services here are realtime, so a request's token is its id."""
    o311.check_jurisdiction(jurisdiction_id, service.settings.api.jurisdiction_id)
    rid = o311.request_id_or_404(token)
    if not await service.db(api_queries.request_exists, rid):
        raise o311.Open311Error(404, f"token: no request for {token!r}")
    return _answer(fmt, "service_requests", o311.token_doc(rid, token))


@router.get(
    "/servicerequestupdates.{fmt}",
    responses=_responses(list[RequestUpdateOut], 400, 404, 503),
    summary="GET Service Request Updates (mySociety extension)",
)
async def request_updates(
    fmt: Format,
    service: Service,
    jurisdiction_id: Jurisdiction = None,
    start_date: Annotated[str | None, Query(description="W3C datetime with a zone.")] = None,
    end_date: Annotated[str | None, Query(description="W3C datetime with a zone.")] = None,
) -> Response:
    """Status changes of requests (extended statuses), oldest first, at most 1,000."""
    o311.check_jurisdiction(jurisdiction_id, service.settings.api.jurisdiction_id)
    q = o311.parse_request_query(
        {"start_date": start_date, "end_date": end_date}, now=service.now()
    )
    rows = await service.db(
        api_queries.request_updates, start=q.start, end=q.end, limit=o311.DEFAULT_LIMIT
    )
    return _answer(fmt, "service_requests_updates", o311.updates_doc(rows))
