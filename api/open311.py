"""Open311 GeoReport v2, the pure part: parsing requests and building response documents.

Nothing here touches a server. Routes decode the HTTP request into plain mappings, call
these functions and hand the resulting documents to ``api.render``. A problem with the
input raises ``Open311Error`` with the HTTP code and the description the spec's error
body carries.

Statuses: GeoReport v2 knows ``open`` and ``closed``; mySociety's FixMyStreet extension
adds an extended status (``INVESTIGATING``, ``ACTION_SCHEDULED``, ``IN_PROGRESS``,
``FIXED``, ``DUPLICATE``, ``NOT_COUNCILS_RESPONSIBILITY``, ``NO_FURTHER_ACTION``, ...).
``status_of`` maps an incident's lifecycle state onto both.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from api.services import SERVICES, Attribute, Service, service
from core.schemas import IncidentStatus
from core.topics import valid_id
from geo.geocode import GeocodeResult, Refused

#: Places an address string on the city's map (``geo.Geocoder.geocode``, bound to the
#: city's settings).
Geocode = Callable[[str], GeocodeResult]

DEFAULT_SPAN = timedelta(days=90)
DEFAULT_LIMIT = 1000
MAX_DESCRIPTION_CHARS = 4000
MAX_SHORT_CHARS = 200
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
FORMATS = ("text/xml", "application/json")


class Open311Error(Exception):
    """An Open311 error: HTTP code and the description its error body carries."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def bad_request(description: str) -> Open311Error:
    """A 400 error."""
    return Open311Error(400, description)


# --- statuses --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestState:
    """What a citizen sees of a request: GeoReport status, extended status and a note."""

    status: str  # "open" | "closed"
    extended: str
    notes: str


_NOT_OURS = ("not_councils_responsibility", "not_our_responsibility", "out_of_area")
_NO_ACTION = ("no_further_action", "no_action", "not_found", "cannot_reproduce")


def status_of(
    incident_status: str | None,
    *,
    reason: str | None = None,
    merged_into: str | None = None,
    incident_id: str | None = None,
) -> RequestState:
    """Map an incident's state onto Open311's ``status`` and FixMyStreet's extended status.

    ``incident_status`` is None while the report has not joined an incident yet.
    ``reason`` is the reason of the incident's last transition, when known; a closure for
    "not our responsibility" or "no further action" is told apart through it. A merged or
    duplicate incident points to the incident that carries on.
    """
    if incident_status is None:
        return RequestState("open", "OPEN", "Received; being checked against other reports.")
    try:
        st = IncidentStatus(incident_status)
    except ValueError:
        return RequestState("open", "OPEN", "Open.")
    target = merged_into or incident_id
    why = (reason or "").lower()
    if st in (IncidentStatus.MERGED, IncidentStatus.DUPLICATE):
        return RequestState("closed", "DUPLICATE", f"Duplicate of incident {target}.")
    if st in (IncidentStatus.OPEN, IncidentStatus.REOPENED):
        if any(k in why for k in ("investigat", "inspect")):
            return RequestState("open", "INVESTIGATING", "Being investigated.")
        note = "Reopened." if st is IncidentStatus.REOPENED else "Open; waiting for a crew."
        return RequestState("open", "OPEN", note)
    if st is IncidentStatus.ASSIGNED:
        return RequestState("open", "ACTION_SCHEDULED", "A crew has been scheduled.")
    if st is IncidentStatus.EN_ROUTE:
        return RequestState("open", "IN_PROGRESS", "A crew is on its way.")
    if st is IncidentStatus.ON_SITE:
        return RequestState("open", "IN_PROGRESS", "A crew is working on it.")
    if any(k in why for k in _NOT_OURS):
        return RequestState(
            "closed", "NOT_COUNCILS_RESPONSIBILITY", "Not the city's responsibility."
        )
    if any(k in why for k in _NO_ACTION):
        return RequestState("closed", "NO_FURTHER_ACTION", "Closed with no further action.")
    if st is IncidentStatus.RESOLVED:
        return RequestState("closed", "FIXED", "Fixed.")
    return RequestState("closed", "CLOSED", "Closed.")


def incident_statuses_with(open311_status: str) -> list[str]:
    """The incident statuses whose requests read ``open311_status`` (for SQL filters)."""
    return [s.value for s in IncidentStatus if status_of(s.value).status == open311_status]


# --- datetimes -------------------------------------------------------------------------

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def w3c(dt: datetime | None) -> str | None:
    """A W3C datetime with a zone (UTC, ``Z``), or None."""
    if dt is None:
        return None
    dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond // 1000:03d}"
    return text + "Z"


# The datetimes a request may name: wide enough for any real date, narrow enough that a
# window of 90 days around one stays a valid datetime.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_w3c(value: str, name: str) -> datetime:
    """Parse a W3C datetime; a zone is required (a bare date means UTC midnight)."""
    text = value.strip()
    dt: datetime | None
    if _DATE_ONLY.match(text):
        try:
            dt = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        except ValueError as exc:
            raise bad_request(f"{name}: not a valid date: {value!r}") from exc
    else:
        try:
            dt = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError as exc:
            raise bad_request(f"{name}: not a W3C datetime: {value!r}") from exc
        if dt.tzinfo is None:
            raise bad_request(f"{name}: the datetime needs a zone (Z or +HH:MM): {value!r}")
        try:
            dt = dt.astimezone(UTC)
        except OverflowError:  # a zone offset pushing year 1 or 9999 out of range
            dt = None
    if dt is None or not _EARLIEST <= dt <= _LATEST:
        raise bad_request(f"{name}: out of range ({_EARLIEST.year} to {_LATEST.year}): {value!r}")
    return dt


# --- POST requests ---------------------------------------------------------------------

_ATTR_KEY = re.compile(r"^attribute\[(?P<code>[^\[\]]+)\](?P<many>\[\])?$")


def collect_attributes(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Gather ``attribute[CODE]`` and ``attribute[CODE][]`` fields into CODE -> values."""
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        m = _ATTR_KEY.match(key)
        if m:
            out.setdefault(m["code"], []).append(value)
    return out


def _typed_value(attr: Attribute, values: list[str]) -> Any:
    name = f"attribute[{attr.code}]"
    if attr.datatype == "multivaluelist":
        keys = {k for k, _ in attr.values}
        picked = [v for v in values if v != ""]
        for v in picked:
            if v not in keys:
                raise bad_request(f"{name}: {v!r} is not one of {sorted(keys)}")
        return sorted(set(picked), key=picked.index)
    if len(values) > 1:
        raise bad_request(f"{name}: takes one value, got {len(values)}")
    value = values[0].strip()
    if attr.datatype == "number":
        try:
            number = float(value)
        except ValueError as exc:
            raise bad_request(f"{name}: not a number: {value!r}") from exc
        if not math.isfinite(number):
            raise bad_request(f"{name}: not a finite number")
        if attr.min_value is not None and number < attr.min_value:
            raise bad_request(f"{name}: below the minimum {attr.min_value:g}")
        if attr.max_value is not None and number > attr.max_value:
            raise bad_request(f"{name}: above the maximum {attr.max_value:g}")
        return number
    if attr.datatype == "datetime":
        return w3c(parse_w3c(value, name))
    if attr.datatype == "singlevaluelist":
        keys = {k for k, _ in attr.values}
        if value not in keys:
            raise bad_request(f"{name}: {value!r} is not one of {sorted(keys)}")
        return value
    limit = MAX_DESCRIPTION_CHARS if attr.datatype == "text" else MAX_SHORT_CHARS
    if attr.asset:
        limit = 64
    if len(value) > limit:
        raise bad_request(f"{name}: longer than {limit} characters")
    return value


def typed_attributes(svc: Service, raw: Mapping[str, list[str]]) -> dict[str, Any]:
    """Check attribute values against the service definition and type them.

    Unknown codes, values outside a list, numbers out of range and missing required
    attributes are refused with a 400 naming the attribute.
    """
    out: dict[str, Any] = {}
    for code, values in raw.items():
        attr = svc.attribute(code)
        if attr is None or not attr.variable:
            raise bad_request(f"attribute[{code}]: not an attribute of service {svc.code}")
        if not values or all(v.strip() == "" for v in values):
            continue
        out[code] = _typed_value(attr, values)
    for attr in svc.attributes:
        if attr.required and attr.code not in out:
            raise bad_request(f"attribute[{attr.code}]: required for service {svc.code}")
    return out


@dataclass(frozen=True)
class Contact:
    """Personal data given with a request; stored apart, never returned."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    def any(self) -> bool:
        """Whether anything was given."""
        return any((self.email, self.phone, self.first_name, self.last_name))


@dataclass(frozen=True)
class NewRequest:
    """A validated POST Service Request."""

    report_id: uuid.UUID
    service_code: str
    lat: float
    lon: float
    requested_at: datetime
    description: str | None
    media_url: str | None
    address_string: str | None
    address_id: str | None
    attributes: dict[str, Any]
    asset_id: str | None
    contact: Contact
    device_id: str | None = None
    account_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: How the location was given or found: ``coordinates`` (lat/long, or a "lat,long"
    #: address string), else the geocoder's ``address``, ``intersection`` or ``street``.
    precision: str = "coordinates"
    #: What the address string matched on the map, when it was geocoded.
    matched: str | None = None
    #: What the geocoder could not use (a house number the map lacks), or "".
    note: str = ""


@dataclass(frozen=True)
class Located:
    """Where an address string puts a request."""

    lat: float
    lon: float
    precision: str
    matched: str | None = None
    note: str = ""


_COORDS = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")


def is_coordinates(address: str) -> bool:
    """Whether an address string is itself a ``"lat,long"`` pair."""
    return _COORDS.match(address) is not None


def needs_geocoder(form: Mapping[str, list[str]]) -> bool:
    """Whether a POST's location has to be found from its address string."""
    # Blank lat/long fields are absent, as ``parse_new_request`` reads them.
    if any(v.strip() for name in ("lat", "long") for v in form.get(name) or []):
        return False
    values = [v.strip() for v in form.get("address_string") or []]
    return len(values) == 1 and bool(values[0]) and not is_coordinates(values[0])


def locate_address(address: str | None, geocode: Geocode | None = None) -> Located | None:
    """Where an address string puts a request, or None when it cannot be placed.

    A ``"lat,long"`` string carries its coordinates. Any other address is placed by
    ``geocode`` (the city's address index: a house address, an intersection or a short
    street); its refusal (unknown street, ambiguous, too vague) is a 400 saying why.
    Without ``geocode`` only coordinates can be placed.
    """
    if not address:
        return None
    m = _COORDS.match(address)
    if m:
        return Located(float(m[1]), float(m[2]), "coordinates")
    if geocode is None:
        return None
    found = geocode(address)
    if isinstance(found, Refused):
        raise bad_request(f"address_string: {found.description}")
    return Located(found.lat, found.lon, found.precision, found.matched, found.note)


def _one(form: Mapping[str, list[str]], name: str, limit: int = MAX_SHORT_CHARS) -> str | None:
    values = form.get(name) or []
    if len(values) > 1:
        raise bad_request(f"{name}: given more than once")
    if not values:
        return None
    value = values[0].strip()
    if len(value) > limit:
        raise bad_request(f"{name}: longer than {limit} characters")
    return value or None


def _coordinate(text: str, name: str, bound: float) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise bad_request(f"{name}: not a number: {text!r}") from exc
    if not math.isfinite(value) or abs(value) > bound:
        raise bad_request(f"{name}: out of range (-{bound:g} to {bound:g})")
    return value


def parse_new_request(
    form: Mapping[str, list[str]],
    pairs: Sequence[tuple[str, str]],
    *,
    now: datetime,
    report_id: uuid.UUID | None = None,
    geocode: Geocode | None = None,
) -> NewRequest:
    """Validate a POST Service Request from its form fields.

    ``form`` maps each field to its values; ``pairs`` keeps the raw order (for
    ``attribute[CODE][]``). A location is required: ``lat`` and ``long``, or an
    ``address_string`` (a "lat,long" pair, or an address ``geocode`` places; see
    ``locate_address``). An ``address_id`` alone cannot be placed.
    """
    for name, value in pairs:
        # No text column or JSON value of the store can hold one: refused here, before
        # anything is published, rather than by the database after.
        if "\x00" in name or "\x00" in value:
            raise bad_request(f"{name[:64]!r}: contains a NUL character")
    code = _one(form, "service_code")
    if code is None:
        raise bad_request("service_code: required")
    svc = service(code)
    if svc is None:
        raise Open311Error(404, f"service_code: no service {code!r}")
    lat_s, lon_s = _one(form, "lat"), _one(form, "long")
    address_string = _one(form, "address_string", MAX_DESCRIPTION_CHARS)
    address_id = _one(form, "address_id")
    if (lat_s is None) != (lon_s is None):
        raise bad_request("lat and long: give both or neither")
    precision, matched, note = "coordinates", None, ""
    if lat_s is not None and lon_s is not None:
        lat, lon = _coordinate(lat_s, "lat", 90), _coordinate(lon_s, "long", 180)
    elif address_string or address_id:
        placed = locate_address(address_string, geocode)
        if placed is None and geocode is not None:
            raise bad_request(
                "location: an address_id cannot be placed here; send lat and long or an "
                "address_string"
            )
        if placed is None:
            raise bad_request(
                "location: this jurisdiction cannot place an address_string or address_id "
                "without coordinates; send lat and long"
            )
        lat = _coordinate(str(placed.lat), "lat", 90)
        lon = _coordinate(str(placed.lon), "long", 180)
        precision, matched, note = placed.precision, placed.matched, placed.note
    else:
        raise bad_request("location: required (lat and long, address_string or address_id)")
    description = _one(form, "description", MAX_DESCRIPTION_CHARS)
    media_url = _one(form, "media_url", 2048)
    if media_url is not None and not re.match(r"^https?://\S+$", media_url):
        raise bad_request("media_url: must be an http(s) URL")
    attributes = typed_attributes(svc, collect_attributes(pairs))
    asset_attr = next((a for a in svc.attributes if a.asset and a.code in attributes), None)
    email = _one(form, "email")
    if email is not None and "@" not in email:
        raise bad_request("email: not an email address")
    contact = Contact(
        email, _one(form, "phone", 64), _one(form, "first_name"), _one(form, "last_name")
    )
    return NewRequest(
        report_id=report_id or uuid.uuid4(),
        service_code=svc.code,
        lat=lat,
        lon=lon,
        requested_at=now,
        description=description,
        media_url=media_url,
        address_string=address_string,
        address_id=address_id,
        attributes=attributes,
        asset_id=str(attributes[asset_attr.code]) if asset_attr else None,
        contact=contact,
        device_id=_one(form, "device_id"),
        account_id=_one(form, "account_id"),
        precision=precision,
        note=note,
        matched=matched,
    )


def client_id_for_key(key_name: str) -> str:
    """The MQTT client id a key's reports are published under (``open311-<name>``)."""
    safe = re.sub(r"[^A-Za-z0-9_.:-]", "-", key_name)[:56]
    cid = f"open311-{safe}"
    assert valid_id(cid)
    return cid


# --- GET requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class RequestQuery:
    """A validated GET Service Requests query."""

    ids: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    statuses: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    page: int = 1
    page_size: int = DEFAULT_LIMIT

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return (self.page - 1) * self.page_size


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _positive_int(value: str | None, name: str, default: int, limit: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError as exc:
        raise bad_request(f"{name}: not an integer: {value!r}") from exc
    if n < 1 or n > limit:
        raise bad_request(f"{name}: must be between 1 and {limit}")
    return n


def parse_request_query(params: Mapping[str, str | None], *, now: datetime) -> RequestQuery:
    """Validate a GET Service Requests query.

    ``service_request_id`` (comma separated) overrides every other filter. Without dates
    the window is the last 90 days; a window longer than 90 days is refused. ``page`` and
    ``page_size`` (at most 1,000, the default) page through the results; ``bbox`` is
    ``min_long,min_lat,max_long,max_lat``.
    """
    ids = _csv(params.get("service_request_id"))
    if ids:
        for i in ids:
            if not _is_uuid(i):
                raise Open311Error(404, f"service_request_id: no request {i!r}")
        if len(ids) > DEFAULT_LIMIT:
            raise bad_request(f"service_request_id: at most {DEFAULT_LIMIT} ids")
        return RequestQuery(ids=tuple(dict.fromkeys(ids)))
    codes = _csv(params.get("service_code"))
    for c in codes:
        if service(c) is None:
            raise Open311Error(404, f"service_code: no service {c!r}")
    statuses = _csv(params.get("status"))
    for s in statuses:
        if s not in ("open", "closed"):
            raise bad_request(f"status: {s!r} is not open or closed")
    start_s, end_s = params.get("start_date"), params.get("end_date")
    start = parse_w3c(start_s, "start_date") if start_s else None
    end = parse_w3c(end_s, "end_date") if end_s else None
    if start is None and end is None:
        end, start = now, now - DEFAULT_SPAN
    elif start is None:
        assert end is not None
        start = end - DEFAULT_SPAN
    elif end is None:
        end = min(now, start + DEFAULT_SPAN) if start < now else start + DEFAULT_SPAN
    if end < start:
        raise bad_request("end_date: before start_date")
    if end - start > DEFAULT_SPAN:
        raise bad_request("start_date, end_date: may not span more than 90 days")
    bbox = None
    if params.get("bbox"):
        parts = _csv(params.get("bbox"))
        try:
            nums = [float(p) for p in parts]
        except ValueError as exc:
            raise bad_request("bbox: min_long,min_lat,max_long,max_lat as numbers") from exc
        if len(nums) != 4 or not all(math.isfinite(n) for n in nums):
            raise bad_request("bbox: min_long,min_lat,max_long,max_lat as numbers")
        if nums[0] > nums[2] or nums[1] > nums[3]:
            raise bad_request("bbox: minimum above maximum")
        bbox = (nums[0], nums[1], nums[2], nums[3])
    return RequestQuery(
        service_codes=tuple(codes),
        start=start,
        end=end,
        statuses=tuple(dict.fromkeys(statuses)),
        bbox=bbox,
        page=_positive_int(params.get("page"), "page", 1, 1_000_000),
        page_size=_positive_int(params.get("page_size"), "page_size", DEFAULT_LIMIT, DEFAULT_LIMIT),
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def request_id_or_404(text: str) -> str:
    """A request id as stored (a UUID), or a 404 naming it."""
    if not _is_uuid(text):
        raise Open311Error(404, f"service_request_id: no request {text!r}")
    return str(uuid.UUID(text))


def check_jurisdiction(given: str | None, ours: str) -> None:
    """A ``jurisdiction_id``, when given, must be this one (404 otherwise, as the spec says)."""
    if given is not None and given != "" and given != ours:
        raise Open311Error(404, f"jurisdiction_id: {given!r} not found; this is {ours!r}")


# --- documents -------------------------------------------------------------------------
# A document is plain data: dicts, lists, strings, numbers, booleans and None. Lists are
# the spec's repeated children; ``api.render`` knows each list's element name.


def service_doc(svc: Service) -> dict[str, Any]:
    """One entry of GET Service List."""
    return {
        "service_code": svc.code,
        "service_name": svc.name,
        "description": svc.description,
        "metadata": svc.metadata,
        "type": "realtime",
        "keywords": ", ".join(svc.keywords),
        "group": svc.group,
    }


def services_doc() -> list[dict[str, Any]]:
    """GET Service List."""
    return [service_doc(s) for s in SERVICES]


def definition_doc(svc: Service) -> dict[str, Any]:
    """GET Service Definition."""
    attrs = []
    for order, a in enumerate(svc.attributes, start=1):
        doc: dict[str, Any] = {
            "variable": a.variable,
            "code": a.code,
            "datatype": a.datatype,
            "required": a.required,
            "datatype_description": a.datatype_description,
            "order": order,
            "description": a.description,
        }
        if a.values:
            doc["values"] = [{"key": k, "name": n} for k, n in a.values]
        attrs.append(doc)
    return {"service_code": svc.code, "attributes": attrs}


def discovery_doc(base_url: str, changeset: datetime, contact: str) -> dict[str, Any]:
    """Service Discovery."""
    return {
        "changeset": w3c(changeset),
        "contact": contact,
        "key_service": "Keys are issued by the city's operators (cityfix apikeys add).",
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": base_url,
                "changeset": w3c(changeset),
                "type": "production",
                "formats": list(FORMATS),
            }
        ],
    }


def service_notice(new: NewRequest) -> str:
    """The ``service_notice`` of a created request.

    It says where the address string placed it, and what of the address was not used
    (a house number the map lacks).
    """
    notice = "Thank you. The city will check it against other reports and schedule a crew."
    if new.matched is not None:
        notice += f" Placed by its address at {new.matched} ({new.precision})."
    if new.note:
        notice += f" Note: {new.note}."
    return notice


def created_doc(report_id: str, notice: str | None) -> list[dict[str, Any]]:
    """The answer to POST Service Request (realtime: the id at once, no token)."""
    return [{"service_request_id": report_id, "service_notice": notice, "account_id": None}]


def token_doc(report_id: str, token: str) -> list[dict[str, Any]]:
    """GET service_request_id from a token."""
    return [{"service_request_id": report_id, "token": token}]


def request_doc(row: Mapping[str, Any], *, with_notes: bool = False) -> dict[str, Any]:
    """One service request from a query row (see ``store.api_queries.REQUEST_COLUMNS``).

    Only public fields are read: contact details are never part of the row.
    """
    svc = service(row["category"])
    state = status_of(
        row.get("incident_status"),
        reason=row.get("last_reason"),
        merged_into=row.get("merged_into"),
        incident_id=row.get("incident_id"),
    )
    doc: dict[str, Any] = {
        "service_request_id": str(row["report_id"]),
        "status": state.status,
        "extended_status": state.extended,
        "status_notes": state.notes,
        "service_name": svc.name if svc else row["category"],
        "service_code": row["category"],
        "description": row.get("description"),
        "agency_responsible": row.get("agency_responsible"),
        "service_notice": None,
        "requested_datetime": w3c(row["reported_at"]),
        "updated_datetime": w3c(row.get("updated_at") or row["reported_at"]),
        "expected_datetime": w3c(row.get("expected_at")),
        "address": row.get("address_string"),
        "address_id": row.get("address_id"),
        "zipcode": None,
        "lat": row["lat"],
        "long": row["lon"],
        "media_url": row.get("media_url"),
        "incident_id": row.get("merged_into") or row.get("incident_id"),
    }
    attributes = row.get("attributes") or {}
    if attributes:
        doc["attributes"] = [
            {"code": k, "value": v if not isinstance(v, list) else ",".join(v)}
            for k, v in sorted(attributes.items())
        ]
    if with_notes:
        doc["notes"] = notes_of(row)
    return doc


def notes_of(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's history: received, then each transition of its incident."""
    notes = [
        {"datetime": w3c(row["reported_at"]), "summary": "OPEN", "description": "Request received."}
    ]
    for t in row.get("history") or []:
        at = t.get("at")
        at_dt = parse_w3c(at, "history.at") if isinstance(at, str) else at
        state = status_of(
            t.get("status"),
            reason=t.get("reason"),
            merged_into=row.get("merged_into"),
            incident_id=row.get("incident_id"),
        )
        if at_dt is not None and at_dt < row["reported_at"]:
            continue  # the incident's past before this report joined it
        notes.append(
            {
                "datetime": w3c(at_dt),
                "summary": state.extended,
                "description": t.get("reason") or state.notes,
            }
        )
    return notes


def updates_doc(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """MySociety's GET Service Request Updates, one entry per incident transition."""
    out = []
    for row in rows:
        state = status_of(
            row["status"],
            reason=row.get("reason"),
            merged_into=row.get("merged_into"),
            incident_id=row["incident_id"],
        )
        out.append(
            {
                "update_id": f"{row['report_id']}:{row['seq']}",
                "service_request_id": str(row["report_id"]),
                "status": state.extended,
                "updated_datetime": w3c(row["at"]),
                "description": row.get("reason") or state.notes,
                "media_url": None,
            }
        )
    return out


def errors_doc(code: int, description: str) -> list[dict[str, Any]]:
    """The spec's error body."""
    return [{"code": code, "description": description}]
