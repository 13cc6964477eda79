"""Dispatcher API under ``/api``: token, incidents, crews, assignments, KPIs, clock, actions, users.

Reads need the ``viewer`` role, actions ``dispatcher``, user management ``admin``.
Actions answer 202 with the id of the command sent to the owning service.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from starlette.concurrency import run_in_threadpool

from api import commands
from api.auth import DUMMY_HASH, InvalidToken, Role, hash_password, issue_token, verify_password
from api.cache import Rendered
from api.deps import Admin, Dispatcher, Service, Viewer
from api.models import (
    Accepted,
    AssignmentOut,
    ClockOut,
    CrewOut,
    FeatureCollection,
    IncidentDetail,
    Kpis,
    MarkDuplicate,
    Me,
    Note,
    Pin,
    Problem,
    Reprioritise,
    TokenResponse,
    UserIn,
    UserOut,
)
from core.errors import Conflict, InvalidMessage, NotFound, RateLimited
from core.schemas import Category, CommandKind, IncidentStatus, Priority
from store import api_queries, queries
from store.queries import ACTIVE

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["dispatcher"])

_P = {"model": Problem}
_READ = {
    401: {**_P, "description": "Missing or invalid bearer token."},
    403: {**_P, "description": "The role does not allow this."},
    422: {**_P, "description": "Invalid parameter or body."},
    503: {**_P, "description": "The database is unavailable."},
}
_NOT_FOUND = {404: {**_P, "description": "No such incident or crew."}}
_ACTION = {
    **_READ,
    **_NOT_FOUND,
    409: {**_P, "description": "The action contradicts itself."},
    422: {**_P, "description": "Invalid body."},
    503: {**_P, "description": "Kafka or the database is unavailable."},
}


def _json(doc: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status_code, media_type="application/json")


# --- token ------------------------------------------------------------------------------


@router.post(
    "/token",
    response_model=TokenResponse,
    responses={
        401: {**_P, "description": "Wrong username or password."},
        422: {**_P, "description": "Missing form fields."},
        429: {**_P, "description": "Too many sign-ins from this address; see Retry-After."},
        503: {**_P, "description": "The database is unavailable."},
    },
)
async def token(
    request: Request, service: Service, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> TokenResponse:
    """OAuth2 password flow: a signed bearer token (JWT) for a user.

    At most ``api.login_rate_per_address_per_min`` attempts per client address. The
    password check is deliberately slow (argon2id, ~0.1-0.2 s of CPU), so it runs in a
    worker thread: on the event loop, a few sign-ins a second stalled every request and
    live feed.
    """
    address = request.client.host if request.client else "unknown"
    wait = service.login_limiter.retry_after_s(address)
    if wait:
        raise RateLimited(
            f"too many sign-ins from this address; retry in {math.ceil(wait)} s", wait
        )
    user = await service.db(queries.user_by_name, form.username)
    digest = user["password_hash"] if user else DUMMY_HASH
    ok = await run_in_threadpool(verify_password, form.password, digest)
    if user is None or not ok or user["disabled"]:
        raise InvalidToken("wrong username or password")
    settings = service.settings.api
    role = Role(user["role"])
    access = issue_token(
        user["username"],
        role,
        secret=settings.secret_key.get_secret_value(),
        ttl_s=settings.token_ttl_s,
    )
    return TokenResponse(access_token=access, expires_in=settings.token_ttl_s, role=role.value)


@router.get("/me", response_model=Me, responses=_READ)
async def me(caller: Viewer) -> Me:
    """The caller's name and role."""
    return Me(username=caller.username, role=caller.role.value)


# --- reads ------------------------------------------------------------------------------


def _csv(value: str | None) -> list[str] | None:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or None


def _enum_list(value: str | None, enum: Any, name: str) -> list[str] | None:
    items = _csv(value)
    for v in items or ():
        try:
            enum(v)
        except ValueError as exc:
            raise InvalidMessage(f"unknown value {v!r}", field=name) from exc
    return items


@router.get("/incidents", responses={200: {"model": FeatureCollection}, **_READ})
async def incidents(
    request: Request,
    service: Service,
    caller: Viewer,
    status: Annotated[str | None, Query(description="Comma-separated; default: active.")] = None,
    priority: Annotated[str | None, Query(description="Comma-separated P1..P4.")] = None,
    category: Annotated[str | None, Query(description="Comma-separated categories.")] = None,
    district: Annotated[str | None, Query(description="Comma-separated districts.")] = None,
    since: Annotated[
        datetime | None, Query(description="opened_at at or after (with zone).")
    ] = None,
    until: Annotated[datetime | None, Query(description="opened_at before (with zone).")] = None,
    limit: Annotated[int, Query(ge=1, le=20000)] = 10000,
) -> Response:
    """Incidents as a GeoJSON FeatureCollection, most urgent first.

    Answers are shared for ``settings.api.answer_cache_s`` and carry an ETag; send
    ``Accept-Encoding: gzip`` for the compressed form.
    """
    filters = {
        "status": _enum_list(status, IncidentStatus, "status"),
        "priority": _enum_list(priority, Priority, "priority"),
        "category": _enum_list(category, Category, "category"),
        "district": _csv(district),
        "since": since,
        "until": until,
        "limit": limit,
    }

    def render(pool: Any) -> Rendered:  # in a worker thread: query (JSON built by SQL), gzip
        body = api_queries.incidents_geojson(
            pool, **{**filters, "status": filters["status"] or list(ACTIVE)}
        )
        return Rendered.of(body, "application/json")

    async def make() -> Rendered:
        rendered: Rendered = await service.db(render)
        return rendered

    rendered = await service.cache.get("incidents:" + repr(sorted(filters.items())), make)
    return rendered.respond(request)


@router.get(
    "/incidents/{incident_id}", responses={200: {"model": IncidentDetail}, **_READ, **_NOT_FOUND}
)
async def incident(incident_id: str, service: Service, caller: Viewer) -> Response:
    """One incident with its evidence, score breakdown and history."""
    return _json(await service.db(queries.incident, incident_id))


@router.get("/crews", responses={200: {"model": list[CrewOut]}, **_READ})
async def crews(service: Service, caller: Viewer) -> Response:
    """Every crew with its last status, position and current plan."""
    return _json(await service.db(queries.crews))


@router.get("/assignments", responses={200: {"model": list[AssignmentOut]}, **_READ})
async def assignments(
    service: Service,
    caller: Viewer,
    crew_id: str | None = None,
    history: Annotated[bool, Query(description="Past plans too, newest first.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """Each crew's current plan, or (``history=true``) the plans sent, newest first."""
    if history:
        return _json(await service.db(api_queries.assignment_history, crew_id=crew_id, limit=limit))
    rows = await service.db(queries.crews)
    plans = [
        {
            "crew_id": r["crew_id"],
            "plan_id": r["plan_id"],
            "created_at": r["plan_at"],
            "stops": r["stops"],
            "route": r["route"],
        }
        for r in rows
        if r["plan_id"] and (crew_id is None or r["crew_id"] == crew_id)
    ]
    return _json(plans)


@router.get("/kpis", responses={200: {"model": Kpis}, **_READ})
async def kpis(service: Service, caller: Viewer) -> Response:
    """Open incidents by priority, mean times to assign and resolve, today's SLA record."""
    return _json(await service.db(queries.kpis, now=service.now()))


@router.get("/clock", response_model=ClockOut, responses=_READ)
async def clock(service: Service, caller: Viewer) -> ClockOut:
    """The city's clock, which stamps SLAs, ETAs and shift ends.

    Under ``cityfix demo`` it runs ahead of and faster than the wall clock; the map counts
    down with it rather than with the browser's clock.
    """
    c = service.clock
    wall_s, now_s = time.time(), c.time()
    if c.wall_epoch_s is None:  # no shared anchor: the wall clock, whatever the factor
        factor, wall_epoch_s, sim_epoch_s = 1.0, wall_s, now_s
    else:
        factor, wall_epoch_s = c.factor, c.wall_epoch_s
        sim_epoch_s = c.sim_epoch_s if c.sim_epoch_s is not None else c.wall_epoch_s
    return ClockOut(
        factor=factor,
        wall_epoch_s=wall_epoch_s,
        sim_epoch_s=sim_epoch_s,
        now=datetime.fromtimestamp(now_s, tz=UTC),
    )


# --- actions ----------------------------------------------------------------------------


async def _send(service: Any, cmd: Any) -> Response:
    await service.send_command(cmd)
    service.metrics.commands.labels(cmd.kind.value).inc()
    log.info(
        "command sent",
        extra={"command_id": str(cmd.command_id), "kind": cmd.kind.value, "by": cmd.issued_by},
    )
    return _json(Accepted(command_id=str(cmd.command_id), kind=cmd.kind.value).model_dump(), 202)


async def _incident_or_404(service: Any, incident_id: str) -> None:
    if not await service.db(api_queries.incident_exists, incident_id):
        raise NotFound(f"no incident {incident_id!r}")


async def _crew_or_404(service: Any, crew_id: str) -> None:
    if not await service.db(api_queries.crew_exists, crew_id):
        raise NotFound(f"no crew {crew_id!r}")


@router.post(
    "/incidents/{incident_id}/priority",
    status_code=202,
    responses={202: {"model": Accepted}, **_ACTION},
)
async def reprioritise(
    incident_id: str, body: Reprioritise, service: Service, caller: Dispatcher
) -> Response:
    """Set an incident's priority by hand."""
    await _incident_or_404(service, incident_id)
    return await _send(
        service,
        commands.command(
            CommandKind.REPRIORITISE,
            issued_by=caller.username,
            at=service.now(),
            incident_id=incident_id,
            priority=body.priority,
            note=body.note,
        ),
    )


@router.post(
    "/incidents/{incident_id}/pin", status_code=202, responses={202: {"model": Accepted}, **_ACTION}
)
async def pin(incident_id: str, body: Pin, service: Service, caller: Dispatcher) -> Response:
    """Pin an incident to a crew (the dispatcher keeps it there)."""
    await _incident_or_404(service, incident_id)
    await _crew_or_404(service, body.crew_id)
    return await _send(
        service,
        commands.command(
            CommandKind.PIN,
            issued_by=caller.username,
            at=service.now(),
            incident_id=incident_id,
            crew_id=body.crew_id,
            note=body.note,
        ),
    )


@router.post(
    "/incidents/{incident_id}/duplicate",
    status_code=202,
    responses={202: {"model": Accepted}, **_ACTION},
)
async def mark_duplicate(
    incident_id: str, body: MarkDuplicate, service: Service, caller: Dispatcher
) -> Response:
    """Mark an incident a duplicate of another (its reports join the other)."""
    await _incident_or_404(service, incident_id)
    target = await service.db(api_queries.incident_status, body.duplicate_of)
    if target is None:
        raise NotFound(f"no incident {body.duplicate_of!r}")
    if target not in ACTIVE:
        # Its evidence would go to an incident no one works on (or, for one already a
        # duplicate of this one, back and forth).
        raise Conflict(f"incident {body.duplicate_of!r} is {target}: not an active incident")
    return await _send(
        service,
        commands.command(
            CommandKind.MARK_DUPLICATE,
            issued_by=caller.username,
            at=service.now(),
            incident_id=incident_id,
            duplicate_of=body.duplicate_of,
            note=body.note,
        ),
    )


@router.post(
    "/incidents/{incident_id}/close",
    status_code=202,
    responses={202: {"model": Accepted}, **_ACTION},
)
async def close(incident_id: str, body: Note, service: Service, caller: Dispatcher) -> Response:
    """Close an incident."""
    await _incident_or_404(service, incident_id)
    return await _send(
        service,
        commands.command(
            CommandKind.CLOSE,
            issued_by=caller.username,
            at=service.now(),
            incident_id=incident_id,
            note=body.note,
        ),
    )


@router.post(
    "/crews/{crew_id}/unavailable", status_code=202, responses={202: {"model": Accepted}, **_ACTION}
)
async def crew_unavailable(
    crew_id: str, body: Note, service: Service, caller: Dispatcher
) -> Response:
    """Take a crew out of planning (its jobs are re-planned) until it comes back on duty.

    Back on duty means an unavailable or off_shift status from the crew after this, then
    an on-duty one, or ``POST /api/crews/{crew_id}/available``.
    """
    return await _crew_command(CommandKind.CREW_UNAVAILABLE, crew_id, body, service, caller)


@router.post(
    "/crews/{crew_id}/available", status_code=202, responses={202: {"model": Accepted}, **_ACTION}
)
async def crew_available(
    crew_id: str, body: Note, service: Service, caller: Dispatcher
) -> Response:
    """Put a crew taken out of planning back in (it is planned again at once)."""
    return await _crew_command(CommandKind.CREW_AVAILABLE, crew_id, body, service, caller)


async def _crew_command(
    kind: CommandKind, crew_id: str, body: Note, service: Service, caller: Dispatcher
) -> Response:
    await _crew_or_404(service, crew_id)
    return await _send(
        service,
        commands.command(
            kind, issued_by=caller.username, at=service.now(), crew_id=crew_id, note=body.note
        ),
    )


# --- users (admin) ------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], responses=_READ)
async def users(service: Service, caller: Admin) -> list[dict[str, Any]]:
    """Every user."""
    rows: list[dict[str, Any]] = await service.db(api_queries.list_users)
    return rows


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    responses={
        **_READ,
        409: {**_P, "description": "The username is taken."},
        422: {**_P, "description": "Invalid body."},
    },
)
async def add_user(body: UserIn, service: Service, caller: Admin) -> dict[str, Any]:
    """Create a user."""
    row: dict[str, Any] = await service.db(
        queries.create_user,
        body.username,
        await run_in_threadpool(hash_password, body.password),
        body.role,
    )
    log.info(
        "user added", extra={"username": body.username, "role": body.role, "by": caller.username}
    )
    return row


@router.delete(
    "/users/{username}",
    status_code=204,
    responses={**_READ, 404: {**_P, "description": "No such user."}},
)
async def remove_user(username: str, service: Service, caller: Admin) -> Response:
    """Remove a user (their tokens stop working at once)."""
    if not await service.db(api_queries.remove_user, username):
        raise NotFound(f"no user {username!r}")
    service.forget_users()
    log.info("user removed", extra={"username": username, "by": caller.username})
    return Response(status_code=204)
