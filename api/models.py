"""Response and body models: what the OpenAPI document promises (and bodies are checked by).

Open311 answers are rendered by ``api.render`` for speed and for XML; the models here
describe their JSON form for the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.schemas import Priority

# --- Open311 ---------------------------------------------------------------------------


class Open311ErrorItem(BaseModel):
    """One GeoReport error."""

    code: int
    description: str


class ServiceOut(BaseModel):
    """One entry of GET Service List."""

    service_code: str
    service_name: str
    description: str | None
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str | None
    group: str | None


class AttributeValueOut(BaseModel):
    """A value of a list attribute."""

    key: str
    name: str


class AttributeOut(BaseModel):
    """One attribute of a service definition."""

    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[AttributeValueOut] | None = None


class ServiceDefinitionOut(BaseModel):
    """GET Service Definition."""

    service_code: str
    attributes: list[AttributeOut]


class EndpointOut(BaseModel):
    """One endpoint of Service Discovery."""

    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class DiscoveryOut(BaseModel):
    """Service Discovery."""

    changeset: str
    contact: str
    key_service: str
    endpoints: list[EndpointOut]


class CreatedOut(BaseModel):
    """The answer to POST Service Request."""

    service_request_id: str
    service_notice: str | None
    account_id: str | None


class TokenOut(BaseModel):
    """GET service_request_id from a token."""

    service_request_id: str
    token: str


class RequestAttributeOut(BaseModel):
    """An attribute value given with a request."""

    code: str
    value: Any


class NoteOut(BaseModel):
    """One entry of a request's history (``notes``)."""

    datetime: str | None
    summary: str
    description: str | None


class RequestOut(BaseModel):
    """A service request (GeoReport v2 fields plus the extensions)."""

    service_request_id: str
    status: Literal["open", "closed"]
    extended_status: str
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None
    incident_id: str | None
    attributes: list[RequestAttributeOut] | None = None
    notes: list[NoteOut] | None = None


class RequestUpdateOut(BaseModel):
    """One of mySociety's service request updates."""

    update_id: str
    service_request_id: str
    status: str
    updated_datetime: str
    description: str | None
    media_url: str | None


# --- dispatcher API ----------------------------------------------------------------------


class TokenResponse(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int
    role: str


class Me(BaseModel):
    """Who the caller is."""

    username: str
    role: str


class Geometry(BaseModel):
    """A GeoJSON point."""

    type: Literal["Point"]
    coordinates: list[float]


class Feature(BaseModel):
    """One incident as a GeoJSON feature."""

    type: Literal["Feature"]
    id: str
    geometry: Geometry
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    """Incidents as a GeoJSON FeatureCollection."""

    type: Literal["FeatureCollection"]
    features: list[Feature]


class IncidentDetail(BaseModel):
    """One incident with evidence, score breakdown and history."""

    model_config = ConfigDict(extra="allow")

    incident_id: str
    status: str
    priority: str
    score: float
    score_breakdown: dict[str, float]
    evidence: list[dict[str, Any]]
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]


class CrewOut(BaseModel):
    """A crew with its position and plan."""

    model_config = ConfigDict(extra="allow")

    crew_id: str
    status: str | None
    lat: float | None
    lon: float | None
    plan_id: str | None
    stops: list[dict[str, Any]] | None
    route: dict[str, Any] | None


class AssignmentOut(BaseModel):
    """A plan sent to a crew."""

    model_config = ConfigDict(extra="allow")

    crew_id: str
    plan_id: str | None
    stops: list[dict[str, Any]] | None
    route: dict[str, Any] | None


class ClockOut(BaseModel):
    """The city's clock: ``now = sim_epoch_s + (wall now - wall_epoch_s) * factor``."""

    factor: float = Field(description="Simulated seconds per wall-clock second.")
    wall_epoch_s: float = Field(description="The wall-clock anchor, Unix seconds.")
    sim_epoch_s: float = Field(description="Simulated time at the anchor, Unix seconds.")
    now: datetime = Field(description="Simulated now (UTC).")


class Kpis(BaseModel):
    """The dashboard's headline numbers."""

    model_config = ConfigDict(extra="allow")

    open_by_priority: dict[str, int]
    open_total: int
    mean_time_to_assign_s: float | None
    mean_time_to_resolve_s: float | None
    sla_today: dict[str, Any]


class Accepted(BaseModel):
    """A dispatcher action accepted for the owning service."""

    command_id: str
    kind: str
    status: Literal["accepted"] = "accepted"


class Note(BaseModel):
    """An optional note with an action."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=1000)


class Reprioritise(Note):
    """Set an incident's priority by hand."""

    priority: Priority


class Pin(Note):
    """Pin an incident to a crew."""

    crew_id: str = Field(min_length=1, max_length=64)


class MarkDuplicate(Note):
    """Mark an incident a duplicate of another."""

    duplicate_of: str = Field(min_length=1, max_length=128)


class UserIn(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["viewer", "dispatcher", "admin"] = "viewer"


class UserOut(BaseModel):
    """A user, without secrets."""

    username: str
    role: str
    created_at: datetime
    disabled: bool


class Problem(BaseModel):
    """An error of the dispatcher API."""

    detail: str


class Readiness(BaseModel):
    """Which backing servers answer."""

    ready: bool
    checks: dict[str, str]
