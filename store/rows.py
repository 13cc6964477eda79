"""Pure mapping from wire messages to table rows (no database here).

Each ``*_row`` function returns a tuple in the column order of its table spec in
``TABLES``; ``incident_rows`` splits one incident message into its state row, the event
rows of its transitions and the links of its citizen reports. Writers COPY these tuples.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from core.schemas import (
    Assignment,
    CitizenReport,
    CrewPosition,
    CrewStatus,
    DeadLetter,
    DeviceStatus,
    DispatchRun,
    EvidenceKind,
    Incident,
    IncidentStatus,
    SensorAlert,
    Telemetry,
    Transition,
)

Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableSpec:
    """A target table: its columns (in row order) and the key a replay collides on."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    extra: dict[str, str] = field(default_factory=dict)


TABLES: dict[str, TableSpec] = {
    "reports": TableSpec(
        "reports",
        ("report_id", "reported_at", "category", "lat", "lon", "description", "media_url",
         "asset_id", "client_id", "district"),
        ("report_id", "reported_at"),
    ),
    "sensor_alerts": TableSpec(
        "sensor_alerts",
        ("alert_id", "observed_at", "device_id", "kind", "lat", "lon", "value", "unit",
         "asset_id"),
        ("alert_id", "observed_at"),
    ),
    "telemetry": TableSpec(
        "telemetry", ("device_id", "observed_at", "metrics"), ("device_id", "observed_at")
    ),
    "device_status": TableSpec(
        "device_status", ("device_id", "at", "online"), ("device_id", "at")
    ),
    "crew_positions": TableSpec(
        "crew_positions",
        ("crew_id", "at", "lat", "lon", "heading_deg", "speed_kph"),
        ("crew_id", "at"),
    ),
    "crew_status_events": TableSpec(
        "crew_status_events",
        ("crew_id", "at", "status", "incident_id", "skills", "shift_end"),
        ("crew_id", "at", "status"),
    ),
    "incidents": TableSpec(
        "incidents",
        ("incident_id", "version", "status", "category", "family", "priority",
         "manual_priority", "score", "score_breakdown", "lat", "lon", "evidence",
         "reporters", "sensor_corroborated", "opened_at", "updated_at", "expected_at",
         "assigned_at", "resolved_at", "history", "asset_id", "edge", "road_class",
         "district", "crew_id", "merged_into"),
        ("incident_id",),
    ),
    "incident_events": TableSpec(
        "incident_events",
        ("incident_id", "at", "status", "seq", "reason", "version", "opened_at",
         "since_open_s", "first_of_status", "category", "priority", "district"),
        ("incident_id", "status", "at"),
    ),
    "report_incident": TableSpec(
        "report_incident",
        ("report_id", "incident_id", "incident_version", "status", "merged_into",
         "updated_at"),
        ("report_id",),
    ),
    "assignments": TableSpec(
        "assignments",
        ("crew_id", "plan_id", "created_at", "stops", "route", "leg_eta_s"),
        ("crew_id", "plan_id", "created_at"),
    ),
    "dispatch_runs": TableSpec(
        "dispatch_runs",
        ("plan_id", "at", "trigger", "jobs", "crews", "matrix_ms", "solve_ms", "objective",
         "unassigned", "moved"),
        ("plan_id", "at"),
    ),
    "dead_letters": TableSpec(
        "dead_letters",
        ("topic", "received_at", "payload_sha256", "payload_b64", "reason", "field",
         "size_bytes"),
        ("topic", "payload_sha256", "received_at"),
    ),
}


def report_row(r: CitizenReport, district: str | None = None) -> Row:
    """A ``reports`` row; ``district`` when the caller already knows it."""
    return (r.report_id, r.reported_at, r.category.value, r.lat, r.lon, r.description,
            r.media_url, r.asset_id, r.client_id, district)


def alert_row(a: SensorAlert) -> Row:
    """A ``sensor_alerts`` row."""
    return (a.alert_id, a.observed_at, a.device_id, a.kind.value, a.lat, a.lon, a.value,
            a.unit, a.asset_id)


def telemetry_row(t: Telemetry) -> Row:
    """A ``telemetry`` row; the metrics stay one JSON object."""
    return (t.device_id, t.observed_at, Jsonb(t.metrics))


def device_status_row(s: DeviceStatus) -> Row:
    """A ``device_status`` row."""
    return (s.device_id, s.at, s.online)


def crew_position_row(p: CrewPosition) -> Row:
    """A ``crew_positions`` row."""
    return (p.crew_id, p.at, p.lat, p.lon, p.heading_deg, p.speed_kph)


def crew_status_row(s: CrewStatus) -> Row:
    """A ``crew_status_events`` row."""
    skills = Jsonb(s.skills) if s.skills is not None else None
    return (s.crew_id, s.at, s.status.value, s.incident_id, skills, s.shift_end)


def assignment_row(a: Assignment) -> Row:
    """An ``assignments`` row; stops and route as JSON."""
    stops = [s.model_dump(mode="json", exclude={"v"}) for s in a.stops]
    route = a.route.model_dump(mode="json", exclude={"v"})
    return (a.crew_id, a.plan_id, a.created_at, Jsonb(stops), Jsonb(route), Jsonb(a.leg_eta_s))


def dispatch_run_row(d: DispatchRun) -> Row:
    """A ``dispatch_runs`` row."""
    return (d.plan_id, d.at, d.trigger, d.jobs, d.crews, d.matrix_ms, d.solve_ms,
            d.objective, d.unassigned, d.moved)


def dead_letter_row(d: DeadLetter) -> Row:
    """A ``dead_letters`` row, keyed by the digest of the payload."""
    try:
        raw = base64.b64decode(d.payload_b64, validate=False)
    except ValueError:
        raw = d.payload_b64.encode()
    digest = hashlib.sha256(raw).hexdigest()
    return (d.topic, d.received_at, digest, d.payload_b64, d.reason, d.field, d.size_bytes)


def transitions(inc: Incident) -> list[Transition]:
    """The incident's transitions; a message without history implies one.

    An incident published without ``history`` still opened at ``opened_at`` and is now
    in ``status`` since ``updated_at``, so those are its known transitions.
    """
    if inc.history:
        return list(inc.history)
    found = [Transition(status=IncidentStatus.OPEN, at=inc.opened_at)]
    if inc.status != IncidentStatus.OPEN:
        found.append(Transition(status=inc.status, at=inc.updated_at))
    return found


def _first_at(history: Sequence[Transition], status: IncidentStatus) -> datetime | None:
    return next((t.at for t in history if t.status == status), None)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class IncidentRows:
    """What one incident message writes: its state, its transitions, its reports' links."""

    state: Row
    events: list[Row]
    links: list[Row]


def incident_rows(inc: Incident) -> IncidentRows:
    """Split an incident message into its state, event and report-link rows."""
    history = transitions(inc)
    state = (
        inc.incident_id, inc.version, inc.status.value, inc.category.value, inc.family,
        inc.priority.value, inc.manual_priority.value if inc.manual_priority else None,
        inc.score, Jsonb(inc.score_breakdown), inc.lat, inc.lon,
        Jsonb([e.model_dump(mode="json", exclude={"v"}) for e in inc.evidence]),
        inc.reporters, inc.sensor_corroborated, inc.opened_at, inc.updated_at,
        inc.expected_at, _first_at(history, IncidentStatus.ASSIGNED),
        _first_at(history, IncidentStatus.RESOLVED),
        Jsonb([t.model_dump(mode="json", exclude={"v"}) for t in inc.history]),
        inc.asset_id, Jsonb(list(inc.edge)) if inc.edge else None, inc.road_class,
        inc.district, inc.crew_id, inc.merged_into,
    )
    seen: set[IncidentStatus] = set()
    events: list[Row] = []
    for seq, t in enumerate(history):
        first = t.status not in seen
        seen.add(t.status)
        events.append((
            inc.incident_id, t.at, t.status.value, seq, t.reason, inc.version, inc.opened_at,
            max(0.0, (t.at - inc.opened_at).total_seconds()), first, inc.category.value,
            inc.priority.value, inc.district,
        ))
    links: list[Row] = []
    for ev in inc.evidence:
        if ev.kind != EvidenceKind.REPORT:
            continue
        report_id = _as_uuid(ev.id)
        if report_id is not None:
            links.append((report_id, inc.incident_id, inc.version, inc.status.value,
                          inc.merged_into, inc.updated_at))
    return IncidentRows(state, events, links)
