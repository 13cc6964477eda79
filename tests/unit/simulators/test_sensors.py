from __future__ import annotations

from simulators.fleet import Device, DeviceKind
from simulators.mqtt import Broker, Credentials
from simulators.sensors import _BACK, _RECONNECT_RETRY_S, SensorSim
from simulators.simtime import SimTime
from tests.unit.simulators.factories import ManualClock

T0 = 1_800_000_000.0


def test_a_device_that_cannot_get_back_online_tries_again_later() -> None:
    device = Device("road-001", DeviceKind.ROAD_SURFACE, 41.15, -8.61)
    sim = SensorSim(
        [device],
        [],
        {"road-001": Credentials("road-001", "pw")},
        Broker(port=1),  # nothing listens there: every login fails
        SimTime(ManualClock(T0 + 1200.0), T0),
        3600.0,
        telemetry_interval_s=300.0,
        seed=1,
    )
    sim.agents, sim.online = [sim._agent(device)], [False]  # dropped off, as run() left it
    assert sim._handle(_BACK, 0, None, 1200.0) == (1200.0 + _RECONNECT_RETRY_S, _BACK, None)
    assert sim.online == [False]
