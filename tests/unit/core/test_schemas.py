"""The wire format v1 accepts good messages and names the field of a bad one."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidMessage
from core.schemas import (
    ALERT_UNITS,
    AlertKind,
    CitizenReport,
    CrewPosition,
    CrewStatus,
    DeviceStatus,
    Incident,
    SensorAlert,
    Telemetry,
    dumps,
    parse,
)
from tests import factories as f

GOOD = [
    (CitizenReport, f.report),
    (SensorAlert, f.alert),
    (Telemetry, f.telemetry),
    (DeviceStatus, f.device_status),
    (CrewPosition, f.crew_position),
    (CrewStatus, f.crew_status),
    (Incident, f.incident),
]


@pytest.mark.parametrize(("model", "make"), GOOD, ids=lambda x: getattr(x, "__name__", ""))
def test_good_messages_parse_and_round_trip(model, make):
    doc = make()
    msg = parse(model, json.dumps(doc).encode())
    again = parse(model, dumps(msg))
    assert again == msg
    assert json.loads(dumps(msg))["v"] == 1


BAD = [
    ("report_id missing", CitizenReport, f.report(report_id=None), "report_id"),
    ("unknown category", CitizenReport, f.report(category="alien_landing"), "category"),
    ("latitude out of range", CitizenReport, f.report(lat=91.0), "lat"),
    ("longitude out of range", CitizenReport, f.report(lon=-180.5), "lon"),
    ("naive time", CitizenReport, f.report(reported_at="2026-01-01T10:00:00"), "reported_at"),
    ("lat as text", CitizenReport, f.report(lat="north"), "lat"),
    ("description too long", CitizenReport, f.report(description="x" * 4001), "description"),
    ("not a url", CitizenReport, f.report(media_url="javascript:alert(1)"), "media_url"),
    ("unknown field", CitizenReport, {**f.report(), "colour": "red"}, "colour"),
    ("wrong version", CitizenReport, f.report(v=2), "v"),
    ("unknown alert kind", SensorAlert, f.alert(kind="ufo"), "kind"),
    ("value not finite", SensorAlert, f.alert(value=float("nan")), "value"),
    ("device id with slash", SensorAlert, f.alert(device_id="a/b"), "device_id"),
    # Scored on its kind's scale: 120 kPa read as 120 bar would be a burst main.
    ("pressure in kPa", SensorAlert, f.alert(kind="pressure_drop", value=120, unit="kPa"), "unit"),
    ("impact in m/s2", SensorAlert, f.alert(unit="m/s2"), "unit"),
    ("metric not a number", Telemetry, f.telemetry(metrics={"t": "hot"}), "metrics.t"),
    ("online not bool", DeviceStatus, f.device_status(online="maybe"), "online"),
    ("unknown crew status", CrewStatus, f.crew_status(status="napping"), "status"),
    ("heading out of range", CrewPosition, f.crew_position(heading_deg=400), "heading_deg"),
    # Numbers the dispatcher orders and sums: one of these used to stop it at every start.
    ("score not a number", Incident, f.incident(score=float("nan")), "score"),
    ("service time infinite", Incident, f.incident(service_s=float("inf")), "service_s"),
    ("negative material", Incident, f.incident(materials={"bags": -2}), "materials.bags"),
]


@pytest.mark.parametrize(("why", "model", "doc", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_messages_name_the_field(why, model, doc, field):
    payload = json.dumps(doc, allow_nan=True).encode()
    with pytest.raises(InvalidMessage) as err:
        parse(model, payload)
    assert err.value.field == field, why
    assert field in str(err.value)


def test_malformed_json_and_non_objects_are_payload_errors():
    for payload in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(InvalidMessage) as err:
            parse(CitizenReport, payload)
        assert err.value.field == "payload"


def test_a_nul_character_in_any_text_is_refused_and_its_spelling_out_is_not():
    # PostgreSQL text and jsonb cannot hold one: such a report would be dropped by the
    # store, with every version of the incident that quotes it.
    with pytest.raises(InvalidMessage) as err:
        parse(CitizenReport, json.dumps(f.report(description="deep\x00hole")).encode())
    assert err.value.field == "payload" and "NUL" in str(err.value)
    spelled = parse(CitizenReport, json.dumps(f.report(description="a \\u0000 b")).encode())
    assert spelled.description == "a \\u0000 b"


def test_every_alert_kind_has_its_unit():
    for kind in AlertKind:
        doc = f.alert(kind=kind.value, value=1.0, unit=ALERT_UNITS[kind])
        assert parse(SensorAlert, json.dumps(doc).encode()).unit == ALERT_UNITS[kind]
