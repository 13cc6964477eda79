"""Which ``incidents`` records the dispatcher takes into its world."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from core import schemas, topics
from dispatch import world
from dispatch.service import _decode
from tests.unit.dispatch.test_world import incident


def record(incident_id: str, headers: tuple[tuple[str, bytes], ...]) -> ConsumerRecord:
    value = schemas.dumps(incident(incident_id))
    return ConsumerRecord(
        topic=topics.INCIDENTS,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=incident_id.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(incident_id),
        serialized_value_size=len(value),
        headers=headers,
    )


def test_incidents_of_another_deployment_stay_out_of_the_world() -> None:
    state = world.World()
    ours = record("ours-1", ((topics.APP_HEADER, b"cityfix-streams"),))
    by_hand = record("by-hand-1", ())
    theirs = record("bench-1", ((topics.APP_HEADER, b"cityfix-bench-streams"),))

    for r in (ours, by_hand, theirs):
        _decode(r, state, "cityfix-streams")

    assert set(state.incidents) == {"ours-1", "by-hand-1"}
