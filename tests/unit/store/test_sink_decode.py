"""Decoding what the sink agents read (pure; no Kafka, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from core.schemas import CrewPosition, CrewStatus, DeviceStatus, Telemetry, dumps
from streams import sinks

AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_crew_events_are_told_apart_by_their_fields() -> None:
    pos = dumps(CrewPosition(crew_id="c1", lat=41.1, lon=-8.6, at=AT))
    st = dumps(CrewStatus(crew_id="c1", status="on_site", at=AT))
    got = sinks.decode("crew.events", [pos, st], sinks.pick_crew_event)
    assert [type(m) for m in got] == [CrewPosition, CrewStatus]


def test_device_status_and_telemetry_share_a_topic() -> None:
    values = [dumps(DeviceStatus(device_id="d1", online=False, at=AT)),
              dumps(Telemetry(device_id="d1", observed_at=AT, metrics={"v": 1.0}))]
    got = sinks.decode("raw.telemetry", values, sinks.pick_sensor_data)
    assert [type(m) for m in got] == [DeviceStatus, Telemetry]


def test_invalid_values_are_counted_and_skipped_not_raised() -> None:
    before = sinks.INVALID.labels("crew.events")._value.get()
    good = dumps(CrewStatus(crew_id="c1", status="on_site", at=AT))
    values = [b"{not json", b"[1, 2]", b'{"crew_id": "c1"}', good, None,
              b'{"v":1,"crew_id":"c1","status":"dancing","at":"2026-03-02T08:00:00Z"}']
    got = sinks.decode("crew.events", values, sinks.pick_crew_event)
    assert [type(m) for m in got] == [CrewStatus]
    assert sinks.INVALID.labels("crew.events")._value.get() - before == 4


def test_only_the_newest_version_of_each_incident_in_a_batch_is_kept() -> None:
    from tests.unit.store.factories import incident

    values = [dumps(incident(i, v, AT)) for i, v in (("a", 1), ("b", 1), ("a", 3), ("a", 2))]
    got = sinks.decode("incidents", [*values, None, b"not json"], sinks.SINKS["incidents"])
    assert sorted((inc.incident_id, inc.version) for inc in got) == [("a", 3), ("b", 1)]


async def test_a_batch_the_writer_raised_on_is_written_again_not_dropped(monkeypatch) -> None:
    monkeypatch.setattr(sinks, "_RETRY_S", 0.0)
    batch = [CrewStatus(crew_id="c1", status="on_site", at=AT)]

    class Flaky:
        name = "flaky"
        calls = 0

        async def write(self, messages):
            self.calls += 1
            if self.calls == 1:
                raise TypeError("a defect in staging")
            return len(messages)

    writer = Flaky()
    assert await sinks._write(writer, batch) == 1  # type: ignore[arg-type]
    assert writer.calls == 2
