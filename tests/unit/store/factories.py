"""Message factories for store tests (valid wire messages, deterministic given a Random)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from core.schemas import (
    Assignment,
    CitizenReport,
    CrewPosition,
    CrewStatus,
    DeviceStatus,
    Incident,
    SensorAlert,
    Telemetry,
)

CATEGORIES = ["pothole", "streetlight_out", "water_leak", "fallen_tree", "graffiti"]
LIFECYCLE = ["open", "assigned", "en_route", "on_site", "resolved", "closed"]


def _uuid(rnd: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rnd.getrandbits(128), version=4)


def citizen_report(rnd: random.Random, at: datetime) -> CitizenReport:
    return CitizenReport(
        report_id=_uuid(rnd), category=rnd.choice(CATEGORIES),
        lat=41.14 + rnd.random() / 50, lon=-8.62 + rnd.random() / 50, reported_at=at,
        description="a hole in the road",
    )


def sensor_alert(rnd: random.Random, at: datetime) -> SensorAlert:
    return SensorAlert(
        alert_id=_uuid(rnd), device_id=f"bus-{rnd.randrange(30)}", kind="road_impact",
        lat=41.15, lon=-8.61, observed_at=at, value=round(rnd.uniform(2, 9), 2), unit="g",
    )


def telemetry(device_id: str, at: datetime) -> Telemetry:
    return Telemetry(device_id=device_id, observed_at=at,
                     metrics={"battery_v": 3.7, "temp_c": 21.5})


def device_status(device_id: str, at: datetime, online: bool) -> DeviceStatus:
    return DeviceStatus(device_id=device_id, online=online, at=at)


def crew_position(crew_id: str, at: datetime) -> CrewPosition:
    return CrewPosition(crew_id=crew_id, lat=41.15, lon=-8.61, at=at, speed_kph=30.0)


def crew_status(crew_id: str, at: datetime) -> CrewStatus:
    return CrewStatus(crew_id=crew_id, status="en_route", at=at, skills=["road"])


def assignment(crew_id: str, plan_id: str, at: datetime) -> Assignment:
    return Assignment(
        crew_id=crew_id, plan_id=plan_id, created_at=at,
        stops=[{"incident_id": "inc-1", "eta": at + timedelta(minutes=10), "lat": 41.15,
                "lon": -8.61}],
        route={"coordinates": [(-8.62, 41.14), (-8.61, 41.15)]},
    )


def incident(
    incident_id: str,
    version: int,
    t0: datetime,
    *,
    reports: Sequence[uuid.UUID] = (),
    district: str | None = "D1",
    status: str | None = None,
    merged_into: str | None = None,
) -> Incident:
    """Version ``v`` has walked ``v`` steps of the lifecycle, ten minutes apart (or
    ``v - 1`` steps and then ``status``)."""
    steps = LIFECYCLE[: min(version, len(LIFECYCLE))]
    if status is not None and steps[-1] != status:
        steps = [*steps[: max(1, version - 1)], status]
    history = [{"status": s, "at": t0 + timedelta(minutes=10 * i)} for i, s in enumerate(steps)]
    return Incident(
        incident_id=incident_id, version=version, status=steps[-1], category="pothole",
        family="road_surface", priority="P2", score=40.0 + version,
        score_breakdown={"severity": 30.0, "reporters": float(len(reports))},
        lat=41.15, lon=-8.61,
        evidence=[{"kind": "report", "id": str(r)} for r in reports],
        reporters=len(reports), opened_at=t0, updated_at=history[-1]["at"],
        expected_at=t0 + timedelta(hours=4), history=history, district=district,
        merged_into=merged_into,
    )


def changed(msg: Incident, **changes: object) -> Incident:
    """A validated copy of ``msg`` with ``changes`` (``model_copy`` would skip validation)."""
    return type(msg).model_validate({**msg.model_dump(), **changes})
