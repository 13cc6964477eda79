"""Row mapping from wire messages, and the migration files (no database)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from core.schemas import DeadLetter
from store import rows
from store.schema import load_migrations
from tests.unit.store.factories import changed, incident, telemetry

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_every_table_row_matches_its_column_list() -> None:
    inc = incident("inc-1", 3, T0, reports=[uuid.uuid4()])
    split = rows.incident_rows(inc)
    assert len(split.state) == len(rows.TABLES["incidents"].columns)
    assert all(len(e) == len(rows.TABLES["incident_events"].columns) for e in split.events)
    assert all(len(r) == len(rows.TABLES["report_incident"].columns) for r in split.links)
    assert len(rows.telemetry_row(telemetry("d", T0))) == len(rows.TABLES["telemetry"].columns)


def test_incident_events_mark_the_first_time_a_status_is_reached() -> None:
    inc = changed(incident("inc-1", 3, T0), history=[
        {"status": "open", "at": T0},
        {"status": "assigned", "at": T0 + timedelta(minutes=5)},
        {"status": "open", "at": T0 + timedelta(minutes=9), "reason": "crew unavailable"},
        {"status": "assigned", "at": T0 + timedelta(minutes=20)},
    ])
    cols = rows.TABLES["incident_events"].columns
    events = [dict(zip(cols, e, strict=True)) for e in rows.incident_rows(inc).events]
    assert [(e["status"], e["first_of_status"], e["since_open_s"]) for e in events] == [
        ("open", True, 0.0), ("assigned", True, 300.0), ("open", False, 540.0),
        ("assigned", False, 1200.0),
    ]
    state = dict(zip(rows.TABLES["incidents"].columns, rows.incident_rows(inc).state, strict=True))
    assert state["assigned_at"] == T0 + timedelta(minutes=5)  # the first assignment
    assert state["resolved_at"] is None


def test_an_incident_without_history_still_has_its_transitions() -> None:
    inc = changed(incident("inc-1", 2, T0), history=[])
    got = [(t.status.value, t.at) for t in rows.transitions(inc)]
    assert got == [("open", T0), ("assigned", inc.updated_at)]


def test_only_report_evidence_with_a_uuid_links_a_request() -> None:
    rid = uuid.uuid4()
    inc = incident("inc-1", 1, T0, reports=[rid])
    inc = changed(inc, evidence=[*inc.model_dump()["evidence"],
                                 {"kind": "alert", "id": str(uuid.uuid4())},
                                 {"kind": "report", "id": "not-a-uuid"}])
    links = rows.incident_rows(inc).links
    assert [link[0] for link in links] == [rid]


def test_dead_letters_are_keyed_by_their_payload_digest() -> None:
    a = DeadLetter(topic="t", payload_b64="aGVsbG8=", reason="bad", received_at=T0, size_bytes=5)
    b = a.model_copy(update={"reason": "other words"})
    assert rows.dead_letter_row(a)[2] == rows.dead_letter_row(b)[2]
    assert rows.dead_letter_row(a)[2] == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")


def test_migrations_are_ordered_and_differ_by_mode_only_where_they_should() -> None:
    plain, tsdb = load_migrations("postgres"), load_migrations("timescaledb")
    assert [m.version for m in plain] == [m.version for m in tsdb] == [1, 2, 3, 4]
    assert plain[0].sql == tsdb[0].sql and plain[0].checksum == tsdb[0].checksum
    assert plain[3].sql == tsdb[3].sql and "open311_details" in plain[3].sql
    assert "create_hypertable" in tsdb[1].sql and "create_hypertable" not in plain[1].sql
    assert "timescaledb.continuous" in tsdb[2].sql and "date_bin" in plain[2].sql
    for name in ("reports_hourly", "incidents_hourly", "incident_times_daily"):
        assert name in plain[2].sql and name in tsdb[2].sql


def test_factories_are_deterministic() -> None:
    from tests.unit.store.factories import citizen_report

    assert citizen_report(random.Random(1), T0) == citizen_report(random.Random(1), T0)
