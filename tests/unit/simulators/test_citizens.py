from __future__ import annotations

import json

from core.schemas import Category
from simulators.citizens import CitizenSim
from simulators.faults import PlannedReport
from simulators.mqtt import Broker, Credentials
from simulators.simtime import SimTime
from tests.unit.simulators.factories import ManualClock

T0 = 1_800_000_000.0


class FakeApp:
    """An app's MQTT connection that keeps what it publishes."""

    def __init__(self, app_id: str) -> None:
        self.creds = Credentials(app_id, "pw")
        self.published: list[tuple[str, bytes]] = []

    def subscribe(self, topic: str) -> None:
        pass

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, stop=None) -> bool:
        self.published.append((topic, payload))
        return True


def citizens(clock: ManualClock) -> tuple[CitizenSim, FakeApp]:
    app = FakeApp("app-001")
    sim = CitizenSim([], [app.creds], Broker(), SimTime(clock, T0), duration_s=3600.0)
    sim.agents = [app]  # type: ignore[list-item]
    return sim, app


def test_a_report_sent_again_by_a_restarted_simulator_is_the_same_report() -> None:
    report = PlannedReport(
        at_s=600.0,
        report_id="0b6f3c1e-8d1a-4d2e-9a53-6f1e2b7c9d10",
        app=0,
        fault_id="f-1",
        category=Category.POTHOLE,
        lat=41.15,
        lon=-8.61,
    )
    clock = ManualClock(T0 + 605.0)
    first, app = citizens(clock)
    first._send(report)
    clock.advance(1800.0)  # the simulator restarts half an hour later and replays it
    again, app_again = citizens(clock)
    again._send(report)
    sent = [json.loads(p) for _t, p in app.published + app_again.published]
    assert sent[0] == sent[1]
    assert sent[0]["reported_at"] == "2027-01-15T08:10:00Z"  # T0 + 600 s, when planned
