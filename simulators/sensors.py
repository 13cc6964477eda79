"""Field devices: online status with a last will, periodic telemetry, alerts on faults.

Each device logs in with its own credential and leaves a retained last will
(``DeviceStatus(online=False)`` on ``.../status``), then announces itself online (retained).
Telemetry goes out every ``telemetry_interval_s`` (simulated, phases spread over the
fleet); an alert goes out when a planned fault is detected by the device (the same fault
model the citizens use, so their reports and the alert fuse into one incident). Now and
then a device drops off the network without saying goodbye (the broker publishes its
will) and comes back a while later.
"""

from __future__ import annotations

import heapq
import logging
from datetime import datetime
from uuid import UUID

import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import ServiceUnavailable
from core.schemas import AlertKind, DeviceStatus, SensorAlert, Telemetry, dumps
from core.topics import sensor_topic
from simulators.faults import PlannedAlert
from simulators.fleet import Device, DeviceKind
from simulators.mqtt import Broker, Credentials, MqttAgent, Will, close_all
from simulators.simtime import SimTime

log = logging.getLogger(__name__)

# Events in the device loop: (due offset_s, order, kind, device index, payload).
_TELEMETRY, _ALERT, _DROP, _BACK = "telemetry", "alert", "drop", "back"
# A device that cannot get back online tries again this much later (simulated).
_RECONNECT_RETRY_S = 60.0


def status_payload(device_id: str, online: bool, at: datetime) -> bytes:
    """A device's retained online/offline status."""
    return dumps(DeviceStatus(device_id=device_id, online=online, at=at))


def telemetry_metrics(device: Device, rng: np.random.Generator) -> dict[str, float]:
    """Plausible readings for one telemetry message of a device."""
    if device.kind is DeviceKind.ROAD_SURFACE:
        return {
            "vibration_g": round(float(abs(rng.normal(1.0, 0.15))), 3),
            "speed_kph": round(float(rng.uniform(10, 50)), 1),
        }
    if device.kind is DeviceKind.STREETLIGHT:
        lamps = len(device.assets)
        return {"lamps": float(lamps), "power_w": round(lamps * float(rng.normal(70, 3)), 1)}
    return {"pressure_bar": round(float(rng.normal(3.2, 0.08)), 3)}


def alert_payload(alert: PlannedAlert, observed_at: datetime) -> bytes:
    """The wire form of a planned alert."""
    return dumps(
        SensorAlert(
            alert_id=UUID(alert.alert_id),
            device_id=alert.device_id,
            kind=AlertKind(alert.kind),
            lat=alert.lat,
            lon=alert.lon,
            observed_at=observed_at,
            value=alert.value,
            unit=alert.unit,
            asset_id=alert.asset_id,
        )
    )


class SensorSim:
    """Runs the fleet over MQTT until the scenario ends or is stopped."""

    def __init__(
        self,
        devices: list[Device],
        alerts: list[PlannedAlert],
        creds: dict[str, Credentials],
        broker: Broker,
        time: SimTime,
        duration_s: float,
        *,
        telemetry_interval_s: float,
        seed: int,
        dropouts_per_device_day: float = 0.5,
        dropout_s: float = 1200.0,
    ) -> None:
        self.devices = devices
        self.alerts = alerts
        self.creds = creds
        self.broker = broker
        self.time = time
        self.duration_s = duration_s
        self.telemetry_interval_s = telemetry_interval_s
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
        self.dropout_rate_per_s = dropouts_per_device_day / 86400.0
        self.dropout_s = dropout_s
        self.agents: list[MqttAgent] = []
        self.online: list[bool] = []
        self.counts = {"telemetry": 0, "alerts": 0, "dropouts": 0}

    def _agent(self, device: Device) -> MqttAgent:
        will = Will(
            sensor_topic(device.device_id, "status"),
            status_payload(device.device_id, False, self.time.now()),
        )
        return MqttAgent(self.broker, self.creds[device.device_id], will=will)

    def _connect(self, i: int) -> None:
        dev = self.devices[i]
        agent = self._agent(dev)
        agent.start()
        self.agents[i] = agent
        self.online[i] = True
        agent.publish(
            sensor_topic(dev.device_id, "status"),
            status_payload(dev.device_id, True, self.time.now()),
            retain=True,
            stop=self.time.stop,
        )

    def run(self) -> dict[str, object]:
        """Bring the fleet online, then send telemetry and alerts until the end."""
        self.agents = [self._agent(d) for d in self.devices]
        self.online = [False] * len(self.devices)
        for i in range(len(self.devices)):
            if self.time.stop.is_set():
                break
            self._connect(i)
        log.info(
            "sensor fleet online devices=%d alerts_planned=%d", len(self.devices), len(self.alerts)
        )
        index = {d.device_id: i for i, d in enumerate(self.devices)}
        queue: list[tuple[float, int, str, int, PlannedAlert | None]] = []
        order = 0
        start = max(self.time.elapsed_s(), 0.0)
        for i in range(len(self.devices)):
            phase = float(self.rng.uniform(0, self.telemetry_interval_s))
            queue.append((start + phase, order, _TELEMETRY, i, None))
            order += 1
            drop = self._next_dropout(start)
            if drop is not None:
                queue.append((drop, order, _DROP, i, None))
                order += 1
        for planned in self.alerts:
            if planned.device_id in index:
                queue.append((planned.at_s, order, _ALERT, index[planned.device_id], planned))
                order += 1
        heapq.heapify(queue)
        try:
            while queue:
                due, _, kind, i, alert = heapq.heappop(queue)
                if due >= self.duration_s or not self.time.sleep_until(due):
                    break
                nxt = self._handle(kind, i, alert, due)
                if nxt is not None:
                    order += 1
                    heapq.heappush(queue, (nxt[0], order, nxt[1], i, nxt[2]))
        finally:
            self._shutdown()
        return self.results()

    def _next_dropout(self, after_s: float) -> float | None:
        if self.dropout_rate_per_s <= 0:
            return None
        return after_s + float(self.rng.exponential(1.0 / self.dropout_rate_per_s))

    def _handle(
        self, kind: str, i: int, alert: PlannedAlert | None, due: float
    ) -> tuple[float, str, PlannedAlert | None] | None:
        dev, agent = self.devices[i], self.agents[i]
        if kind == _TELEMETRY:
            if self.online[i]:
                msg = Telemetry(
                    device_id=dev.device_id,
                    observed_at=self.time.now(),
                    metrics=telemetry_metrics(dev, self.rng),
                )
                if agent.publish(
                    sensor_topic(dev.device_id, "telemetry"), dumps(msg), stop=self.time.stop
                ):
                    self.counts["telemetry"] += 1
            return due + self.telemetry_interval_s, _TELEMETRY, None
        if kind == _ALERT and alert is not None:
            if not self.online[i]:
                # An offline device keeps its alert and sends it once it is back.
                return due + min(self.dropout_s, 60.0), _ALERT, alert
            if agent.publish(
                sensor_topic(dev.device_id, "alert"),
                alert_payload(alert, self.time.at(alert.at_s)),
                stop=self.time.stop,
            ):
                self.counts["alerts"] += 1
                log.info(
                    "alert sent device=%s kind=%s fault=%s asset=%s",
                    dev.device_id,
                    alert.kind,
                    alert.fault_id,
                    alert.asset_id or "-",
                )
            return None
        if kind == _DROP:
            self._drop(i)
            return due + self.dropout_s, _BACK, None
        if kind == _BACK:
            try:
                self._connect(i)
            except ServiceUnavailable as exc:
                # One device's failed login must not end the fleet's day: try again later.
                log.warning("device reconnect failed device=%s reason=%s", dev.device_id, exc)
                return due + _RECONNECT_RETRY_S, _BACK, None
            log.info("device back online device=%s", dev.device_id)
            nxt = self._next_dropout(due)
            return (nxt, _DROP, None) if nxt is not None else None
        return None

    def _drop(self, i: int) -> None:
        """Lose the connection as a dead battery would: the broker sends the last will."""
        agent = self.agents[i]
        agent.drain(0.5)
        self.online[i] = False
        self.counts["dropouts"] += 1
        log.info("device dropped off device=%s", self.devices[i].device_id)
        # MQTT 5 "disconnect with will message" (0x04) makes the broker publish the will.
        agent.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        agent.stop(graceful=False)

    def _shutdown(self) -> None:
        online = [a for i, a in enumerate(self.agents) if self.online[i]]
        for i, agent in enumerate(self.agents):
            if self.online[i] and agent.unacked < self.broker.max_unacked:
                dev = self.devices[i]
                agent.publish(
                    sensor_topic(dev.device_id, "status"),
                    status_payload(dev.device_id, False, self.time.now()),
                    retain=True,
                )
        close_all(online)

    def results(self) -> dict[str, object]:
        """How much the fleet sent."""
        return {"devices": len(self.devices), **self.counts}
