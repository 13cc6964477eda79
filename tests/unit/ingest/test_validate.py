"""What the bridge does with each kind of input: forward it, keyed, or dead-letter it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from core import topics
from core.schemas import CitizenReport, DeadLetter, DeviceStatus, parse
from ingest.validate import (
    IDENTITY_MISMATCH,
    MALFORMED_JSON,
    SCHEMA,
    TOO_LARGE,
    UNKNOWN_TOPIC,
    Record,
    Rejected,
    route,
)
from tests import factories

LIMIT = 64 * 1024
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _route(topic: str, payload: bytes | dict) -> Record | Rejected:
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    return route(topic, payload, max_payload_bytes=LIMIT, received_at=NOW)


def _rejected(topic: str, payload: bytes | dict) -> Rejected:
    out = _route(topic, payload)
    assert isinstance(out, Rejected), out
    return out


@pytest.mark.parametrize(
    ("topic", "doc", "kafka_topic", "key"),
    [
        ("cityfix/v1/reports/app-1", factories.report(), topics.RAW_REPORTS, b"app-1"),
        ("cityfix/v1/sensors/s1/alert", factories.alert("s1"), topics.RAW_SENSOR_ALERTS, b"s1"),
        ("cityfix/v1/sensors/s1/telemetry", factories.telemetry("s1"), topics.RAW_TELEMETRY, b"s1"),
        (
            "cityfix/v1/sensors/s1/status",
            factories.device_status("s1"),
            topics.RAW_TELEMETRY,
            b"s1",
        ),
        ("cityfix/v1/crews/c1/position", factories.crew_position("c1"), topics.CREW_EVENTS, b"c1"),
        ("cityfix/v1/crews/c1/status", factories.crew_status("c1"), topics.CREW_EVENTS, b"c1"),
    ],
)
def test_valid_messages_go_to_their_raw_topic_keyed_by_source(topic, doc, kafka_topic, key):
    out = _route(topic, doc)
    assert isinstance(out, Record)
    assert (out.topic, out.key) == (kafka_topic, key)
    assert out.kind == str(topics.parse_inbound(topic).kind)


def test_a_report_gets_the_client_id_of_its_topic():
    doc = factories.report()
    out = _route("cityfix/v1/reports/app-7", doc)
    assert isinstance(out, Record)
    report = parse(CitizenReport, out.value)
    assert report.client_id == "app-7"
    assert str(report.report_id) == doc["report_id"]


def test_a_report_naming_its_own_client_id_is_accepted():
    out = _route("cityfix/v1/reports/app-7", factories.report(client_id="app-7"))
    assert isinstance(out, Record)


def test_device_status_records_carry_online():
    out = _route("cityfix/v1/sensors/s1/status", factories.device_status("s1", online=False))
    assert isinstance(out, Record)
    assert parse(DeviceStatus, out.value).online is False


def test_an_offline_status_written_at_connect_time_is_stamped_when_received():
    # A last will: written when the device connected, sent by the broker when it died.
    connected = "2025-03-01T08:00:00+00:00"
    out = _route(
        "cityfix/v1/sensors/s1/status", factories.device_status("s1", online=False, at=connected)
    )
    assert isinstance(out, Record)
    assert parse(DeviceStatus, out.value).at == NOW


@pytest.mark.parametrize(
    ("online", "at"),
    [(True, "2025-03-01T08:00:00+00:00"), (False, "2025-03-01T12:00:01+00:00")],
)
def test_online_statuses_and_offline_ones_not_older_than_their_receipt_keep_their_time(
    online, at
):
    doc = factories.device_status("s1", online=online, at=at)
    out = _route("cityfix/v1/sensors/s1/status", doc)
    assert isinstance(out, Record)
    assert parse(DeviceStatus, out.value).at == datetime.fromisoformat(at)


@pytest.mark.parametrize(
    ("topic", "doc", "field"),
    [
        ("cityfix/v1/reports/app-1", factories.report(client_id="app-2"), "client_id"),
        ("cityfix/v1/sensors/s1/alert", factories.alert("s2"), "device_id"),
        ("cityfix/v1/sensors/s1/telemetry", factories.telemetry("s2"), "device_id"),
        ("cityfix/v1/sensors/s1/status", factories.device_status("s2"), "device_id"),
        ("cityfix/v1/crews/c1/position", factories.crew_position("c2"), "crew_id"),
        ("cityfix/v1/crews/c1/status", factories.crew_status("c2"), "crew_id"),
    ],
)
def test_a_payload_claiming_another_identity_is_a_mismatch(topic, doc, field):
    out = _rejected(topic, doc)
    assert out.reason_class == IDENTITY_MISMATCH
    assert out.letter.field == field
    assert out.letter.reason.startswith("identity_mismatch: ")


@pytest.mark.parametrize(
    ("payload", "reason_class", "field"),
    [
        (b'{"v":1,"report_id":', MALFORMED_JSON, "payload"),
        (b"\xff\xfe not utf-8", MALFORMED_JSON, "payload"),
        (b'{"v":1,"lat":NaN}', MALFORMED_JSON, "payload"),
        (b"[1, 2, 3]", SCHEMA, "payload"),
        (b'"just a string"', SCHEMA, "payload"),
        (json.dumps(factories.report(lat="north")).encode(), SCHEMA, "lat"),
        (json.dumps(factories.report(lat=123.0)).encode(), SCHEMA, "lat"),
        (json.dumps(factories.report(lon=-181)).encode(), SCHEMA, "lon"),
        (json.dumps(factories.report(category="unicorn")).encode(), SCHEMA, "category"),
        (json.dumps(factories.report(report_id="not-a-uuid")).encode(), SCHEMA, "report_id"),
        (
            json.dumps(factories.report(reported_at="2025-03-01T12:00:00")).encode(),
            SCHEMA,
            "reported_at",
        ),
        (json.dumps(factories.report(v=2)).encode(), SCHEMA, "v"),
        (json.dumps(factories.report(description="a\x00b")).encode(), SCHEMA, "payload"),
        (json.dumps(factories.report(extra="x")).encode(), SCHEMA, "extra"),
        (
            json.dumps({k: v for k, v in factories.report().items() if k != "category"}).encode(),
            SCHEMA,
            "category",
        ),
    ],
)
def test_bad_reports_are_dead_lettered_naming_the_field(payload, reason_class, field):
    out = _rejected("cityfix/v1/reports/app-1", payload)
    assert (out.reason_class, out.letter.field) == (reason_class, field)
    assert out.letter.reason.startswith(f"{reason_class}: ")


@pytest.mark.parametrize(
    ("topic", "doc", "field"),
    [
        ("cityfix/v1/sensors/s1/alert", factories.alert("s1", kind="earthquake"), "kind"),
        ("cityfix/v1/sensors/s1/alert", factories.alert("s1", value="high"), "value"),
        (
            "cityfix/v1/sensors/s1/telemetry",
            factories.telemetry("s1", metrics={"a": "x"}),
            "metrics.a",
        ),
        ("cityfix/v1/sensors/s1/status", factories.device_status("s1", online="maybe"), "online"),
        ("cityfix/v1/crews/c1/position", factories.crew_position("c1", lat=91), "lat"),
        ("cityfix/v1/crews/c1/status", factories.crew_status("c1", status="napping"), "status"),
    ],
)
def test_bad_messages_of_every_kind_name_the_field(topic, doc, field):
    out = _rejected(topic, doc)
    assert (out.reason_class, out.letter.field) == (SCHEMA, field)


def test_oversized_payload_is_too_large_and_kept_only_up_to_the_limit():
    payload = b'{"v":1,"description":"' + b"x" * 1_000_000 + b'"}'
    out = _rejected("cityfix/v1/reports/app-1", payload)
    assert (out.reason_class, out.letter.field) == (TOO_LARGE, "payload")
    assert out.letter.size_bytes == len(payload)
    assert base64.b64decode(out.letter.payload_b64) == payload[:LIMIT]


def test_a_payload_at_the_limit_is_not_too_large():
    doc = factories.report(description=None)
    raw = json.dumps(doc).encode()
    out = route("cityfix/v1/reports/a", raw, max_payload_bytes=len(raw), received_at=NOW)
    assert isinstance(out, Record)


@pytest.mark.parametrize(
    "topic", ["cityfix/v1/reports/a/b", "cityfix/v2/reports/a", "cityfix/v1/crews/c1/assignment"]
)
def test_unknown_topics_are_dead_lettered(topic):
    out = _rejected(topic, factories.report())
    assert (out.reason_class, out.letter.field, out.kind) == (UNKNOWN_TOPIC, "topic", "unknown")


def test_the_dead_letter_record_keeps_everything_needed_to_replay():
    payload = b'{"broken'
    out = _rejected("cityfix/v1/sensors/s9/alert", payload)
    rec = out.record()
    assert (rec.topic, rec.key) == (topics.INGEST_DLQ, b"cityfix/v1/sensors/s9/alert")
    letter = parse(DeadLetter, rec.value)
    assert letter.topic == "cityfix/v1/sensors/s9/alert"
    assert base64.b64decode(letter.payload_b64) == payload
    assert letter.received_at == NOW
    assert letter.size_bytes == len(payload)
    assert letter.field == "payload"
