"""Which ``incidents`` records the dispatcher takes into its world."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from core import schemas, topics
from dispatch import world
from dispatch.service import _decode
from tests.unit.dispatch.test_world import incident


def _record(topic: str, key: str, value: bytes, headers=()) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=headers,
    )


def record(incident_id: str, headers: tuple[tuple[str, bytes], ...]) -> ConsumerRecord:
    return _record(topics.INCIDENTS, incident_id, schemas.dumps(incident(incident_id)), headers)


def test_incidents_of_another_deployment_stay_out_of_the_world() -> None:
    state = world.World()
    ours = record("ours-1", ((topics.APP_HEADER, b"cityfix-streams"),))
    by_hand = record("by-hand-1", ())
    theirs = record("bench-1", ((topics.APP_HEADER, b"cityfix-bench-streams"),))

    for r in (ours, by_hand, theirs):
        _decode(r, state, "cityfix-streams")

    assert set(state.incidents) == {"ours-1", "by-hand-1"}


def crew_record(doc: dict) -> ConsumerRecord:
    return _record(topics.CREW_EVENTS, doc["crew_id"], json.dumps(doc).encode())


def test_a_crew_message_stamped_ahead_of_the_clock_is_skipped() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    state = world.World()
    ahead = {"crew_id": "c1", "status": "available", "at": "2027-03-02T09:00:00+00:00"}
    _decode(crew_record(ahead), state, now=now)
    assert "c1" not in state.crews  # a year ahead: it would have hidden every later status
    drift = {"crew_id": "c1", "status": "available", "at": "2026-03-02T09:02:00+00:00"}
    assert _decode(crew_record(drift), state, now=now) == "crew"  # a clock 2 min fast is fine
    later = {"crew_id": "c1", "status": "unavailable", "at": "2026-03-02T09:03:00+00:00"}
    assert _decode(crew_record(later), state, now=now) == "crew"
