"""Wire schemas, version 1: the public contract of every message cityfix moves.

JSON, UTF-8, times ISO 8601 with a zone, ``"v": 1`` on every message. Field names are the
contract in ARCHITECTURE.md ("Wire format v1"); optional fields may be added, never
renamed. Durations and distances name their unit (``_s``, ``_m``). Validation is strict:
unknown categories, naive times, out-of-range coordinates and oversized strings are
refused with an error that names the field (see ``parse``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from core.errors import InvalidMessage
from core.topics import ID_PATTERN

SCHEMA_VERSION = 1

Lat = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Lon = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
Identity = Annotated[str, StringConstraints(pattern=rf"^{ID_PATTERN}$")]
AssetId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Description = Annotated[str, StringConstraints(max_length=4000)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)]


class Category(StrEnum):
    """What a citizen can report."""

    POTHOLE = "pothole"
    STREETLIGHT_OUT = "streetlight_out"
    WATER_LEAK = "water_leak"
    FLOODING = "flooding"
    BLOCKED_DRAIN = "blocked_drain"
    FALLEN_TREE = "fallen_tree"
    ILLEGAL_DUMPING = "illegal_dumping"
    GRAFFITI = "graffiti"
    DAMAGED_SIGN = "damaged_sign"
    TRAFFIC_SIGNAL_FAULT = "traffic_signal_fault"


class AlertKind(StrEnum):
    """What a field sensor can alert on."""

    ROAD_IMPACT = "road_impact"
    LAMP_FAILURE = "lamp_failure"
    PRESSURE_DROP = "pressure_drop"
    WATER_LEVEL_HIGH = "water_level_high"
    SIGNAL_FAULT = "signal_fault"


#: The unit of each alert kind's ``value``. Scoring maps the value onto a magnitude on that
#: scale, so an alert in another unit is refused rather than scored wrongly.
ALERT_UNITS: dict[AlertKind, str] = {
    AlertKind.ROAD_IMPACT: "g",  # peak vertical acceleration
    AlertKind.LAMP_FAILURE: "flag",  # 1 failed (or the fraction of lamps out)
    AlertKind.PRESSURE_DROP: "bar",  # below the nominal pressure
    AlertKind.WATER_LEVEL_HIGH: "m",  # above the kerb
    AlertKind.SIGNAL_FAULT: "flag",  # 1 faulty
}


class CrewState(StrEnum):
    """A crew's reported state."""

    AVAILABLE = "available"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    UNAVAILABLE = "unavailable"
    OFF_SHIFT = "off_shift"


class IncidentStatus(StrEnum):
    """An incident's lifecycle state."""

    OPEN = "open"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"
    DUPLICATE = "duplicate"
    MERGED = "merged"


ACTIVE_STATUSES = frozenset(
    {
        IncidentStatus.OPEN,
        IncidentStatus.ASSIGNED,
        IncidentStatus.EN_ROUTE,
        IncidentStatus.ON_SITE,
        IncidentStatus.REOPENED,
    }
)


class Priority(StrEnum):
    """Priority class, P1 most urgent."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class _Message(BaseModel):
    # NaN and Infinity are not JSON numbers: a record carrying one is invalid input (the
    # planner and the scorer cannot order or add them), refused like any other.
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=False, allow_inf_nan=False
    )

    v: Literal[1] = 1


class CitizenReport(_Message):
    """``cityfix/v1/reports/{client_id}``: one citizen's report of one problem."""

    report_id: UUID
    category: Category
    lat: Lat
    lon: Lon
    reported_at: AwareDatetime
    description: Description | None = None
    media_url: Url | None = None
    asset_id: AssetId | None = None
    # Added by the ingest bridge from the topic; apps need not send it.
    client_id: Identity | None = None


class SensorAlert(_Message):
    """``cityfix/v1/sensors/{device_id}/alert``."""

    alert_id: UUID
    device_id: Identity
    kind: AlertKind
    lat: Lat
    lon: Lon
    observed_at: AwareDatetime
    value: Annotated[float, Field(allow_inf_nan=False)]
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    asset_id: AssetId | None = None

    @field_validator("unit")
    @classmethod
    def _unit_of_kind(cls, unit: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")  # absent when the kind itself was invalid
        if kind is not None and unit != ALERT_UNITS[kind]:
            raise ValueError(f"{kind.value} values are in {ALERT_UNITS[kind]!r}, not {unit!r}")
        return unit


class Telemetry(_Message):
    """``cityfix/v1/sensors/{device_id}/telemetry``."""

    device_id: Identity
    observed_at: AwareDatetime
    metrics: Annotated[
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=64)],
            Annotated[float, Field(allow_inf_nan=False)],
        ],
        Field(max_length=64),
    ]


class DeviceStatus(_Message):
    """``cityfix/v1/sensors/{device_id}/status`` (retained, last will)."""

    device_id: Identity
    online: bool
    at: AwareDatetime


class CrewPosition(_Message):
    """``cityfix/v1/crews/{crew_id}/position``."""

    crew_id: Identity
    lat: Lat
    lon: Lon
    at: AwareDatetime
    heading_deg: Annotated[float, Field(ge=0, lt=360)] | None = None
    speed_kph: Annotated[float, Field(ge=0, le=300)] | None = None


class CrewStatus(_Message):
    """``cityfix/v1/crews/{crew_id}/status``."""

    crew_id: Identity
    status: CrewState
    incident_id: Identity | None = None
    at: AwareDatetime
    skills: list[Annotated[str, StringConstraints(max_length=32)]] | None = None
    shift_end: AwareDatetime | None = None
    # What is on the truck now, by material (None: not tracked, enough of everything).
    materials: dict[Annotated[str, StringConstraints(max_length=32)], NonNegativeInt] | None = (
        None
    )


class EvidenceKind(StrEnum):
    """What kind of message supports an incident."""

    REPORT = "report"
    ALERT = "alert"


class Evidence(_Message):
    """One report or sensor alert supporting an incident."""

    v: Literal[1] = 1
    kind: EvidenceKind
    id: str
    source: str | None = None
    at: AwareDatetime | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    category: str | None = None
    value: float | None = None
    description: str | None = None
    media_url: str | None = None


class Transition(_Message):
    """One lifecycle transition of an incident."""

    status: IncidentStatus
    at: AwareDatetime
    reason: str | None = None


class Incident(_Message):
    """Kafka ``incidents`` (compacted, key = incident id): full current state."""

    incident_id: str
    version: int = Field(1, ge=1)
    status: IncidentStatus
    category: Category
    family: str
    priority: Priority
    score: float
    score_breakdown: dict[str, float]
    lat: Lat
    lon: Lon
    evidence: list[Evidence]
    reporters: int = Field(ge=0)
    sensor_corroborated: bool = False
    opened_at: AwareDatetime
    updated_at: AwareDatetime
    expected_at: AwareDatetime
    history: list[Transition] = Field(default_factory=list)
    asset_id: str | None = None
    edge: tuple[int, int] | None = None
    road_class: str | None = None
    district: str | None = None
    crew_id: str | None = None
    merged_into: str | None = None
    manual_priority: Priority | None = None
    # What the fix needs, from the fault family: read by the dispatcher.
    skill: str | None = None
    service_s: float | None = Field(None, ge=0)
    materials: dict[str, NonNegativeInt] = Field(default_factory=dict)


class Stop(_Message):
    """One stop of a crew's plan."""

    incident_id: str
    eta: AwareDatetime
    lat: Lat
    lon: Lon
    service_s: float = 0.0
    pinned: bool = False
    # What the fix uses up from the truck, by material.
    materials: dict[str, NonNegativeInt] = Field(default_factory=dict)


class LineString(_Message):
    """A GeoJSON LineString (lon, lat order)."""

    type: Literal["LineString"] = "LineString"
    coordinates: list[tuple[float, float]]


class Assignment(_Message):
    """Kafka ``assignments`` (compacted, key = crew id) and MQTT ``.../assignment``."""

    crew_id: str
    plan_id: str
    stops: list[Stop]
    route: LineString
    created_at: AwareDatetime
    leg_eta_s: list[float] = Field(default_factory=list)


class DispatchRun(_Message):
    """Kafka ``dispatch.runs``: statistics of one solver run."""

    plan_id: str
    at: AwareDatetime
    trigger: str
    jobs: int
    crews: int
    matrix_ms: float
    solve_ms: float
    objective: float
    unassigned: int
    moved: int


class DeadLetter(_Message):
    """Kafka ``ingest.dlq``: input that could not be accepted, with the reason."""

    topic: str
    payload_b64: str
    reason: str
    field: str | None = None
    received_at: AwareDatetime
    size_bytes: int


class CommandKind(StrEnum):
    """Dispatcher actions, sent through Kafka ``commands`` to the owning service."""

    REPRIORITISE = "reprioritise"
    PIN = "pin"
    MARK_DUPLICATE = "mark_duplicate"
    CLOSE = "close"
    CREW_UNAVAILABLE = "crew_unavailable"
    CREW_AVAILABLE = "crew_available"


class Command(_Message):
    """A dispatcher action."""

    command_id: UUID
    kind: CommandKind
    at: AwareDatetime
    issued_by: str
    incident_id: str | None = None
    crew_id: str | None = None
    priority: Priority | None = None
    duplicate_of: str | None = None
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class RequestStatus(_Message):
    """``cityfix/v1/requests/{report_id}/status`` (retained): what the citizen sees."""

    request_id: str
    status: IncidentStatus
    incident_id: str
    merged_into: str | None = None
    at: AwareDatetime


M = TypeVar("M", bound=BaseModel)


# A JSON ``\u0000`` escape (not an escaped backslash followed by "u0000"): a NUL character,
# which no text or JSON column of PostgreSQL can hold.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def refuse_nul(payload: bytes | str) -> None:
    """Raise ``InvalidMessage`` if a JSON text holds an escaped NUL character."""
    if isinstance(payload, bytes):
        if b"\\u0000" not in payload:  # the usual case, without decoding
            return
        payload = payload.decode("utf-8", "replace")
    if "\\u0000" in payload and _NUL_ESCAPE.search(payload):
        raise InvalidMessage("a text holds a NUL character (\\u0000)", field="payload")


def parse(model: type[M], payload: bytes | str | dict[str, Any]) -> M:
    """Parse ``payload`` as ``model``; on failure raise ``InvalidMessage`` naming the field."""
    try:
        if isinstance(payload, dict):
            return model.model_validate(payload)
        if isinstance(payload, bytes | bytearray):
            payload = bytes(payload).decode("utf-8")
        refuse_nul(payload)
        return model.model_validate_json(payload)
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"payload is not UTF-8 ({exc.reason})", field="payload") from exc
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        if err["type"] == "json_invalid":
            raise InvalidMessage(f"malformed JSON: {err['msg']}", field="payload") from exc
        if err["type"] == "model_type" or err["type"] == "model_attributes_type":
            raise InvalidMessage("payload must be a JSON object", field="payload") from exc
        raise InvalidMessage(err["msg"], field=loc) from exc


def dumps(msg: BaseModel) -> bytes:
    """Serialise a message to its wire form (compact UTF-8 JSON)."""
    return msg.model_dump_json(exclude_none=False).encode()


def loads_json(data: bytes | str) -> Any:
    """Decode JSON bytes (for code that handles raw dicts)."""
    return json.loads(data)


def iso(dt: datetime) -> str:
    """An aware datetime as ISO 8601."""
    return dt.isoformat()
