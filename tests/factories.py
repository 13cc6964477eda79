"""Factories for wire messages: valid by default, override any field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def report(**over: Any) -> dict[str, Any]:
    doc = {
        "v": 1,
        "report_id": str(uuid.uuid4()),
        "category": "pothole",
        "lat": 41.1496,
        "lon": -8.6109,
        "reported_at": now_iso(),
        "description": "deep hole in the right lane",
        "media_url": None,
        "asset_id": None,
    }
    doc.update(over)
    return doc


def alert(device_id: str = "bus-17", **over: Any) -> dict[str, Any]:
    doc = {
        "v": 1,
        "alert_id": str(uuid.uuid4()),
        "device_id": device_id,
        "kind": "road_impact",
        "lat": 41.1496,
        "lon": -8.6109,
        "observed_at": now_iso(),
        "value": 7.2,
        "unit": "g",
        "asset_id": None,
    }
    doc.update(over)
    return doc


def telemetry(device_id: str = "bus-17", **over: Any) -> dict[str, Any]:
    doc = {"v": 1, "device_id": device_id, "observed_at": now_iso(), "metrics": {"accel_g": 1.1}}
    doc.update(over)
    return doc


def device_status(device_id: str = "bus-17", **over: Any) -> dict[str, Any]:
    doc = {"v": 1, "device_id": device_id, "online": True, "at": now_iso()}
    doc.update(over)
    return doc


def crew_position(crew_id: str = "crew-1", **over: Any) -> dict[str, Any]:
    doc = {"v": 1, "crew_id": crew_id, "lat": 41.15, "lon": -8.61, "at": now_iso()}
    doc.update(over)
    return doc


def crew_status(crew_id: str = "crew-1", **over: Any) -> dict[str, Any]:
    doc = {"v": 1, "crew_id": crew_id, "status": "available", "incident_id": None, "at": now_iso()}
    doc.update(over)
    return doc


def incident(incident_id: str = "inc-1", **over: Any) -> dict[str, Any]:
    at = now_iso()
    doc = {
        "v": 1,
        "incident_id": incident_id,
        "status": "open",
        "category": "pothole",
        "family": "road_surface",
        "priority": "P3",
        "score": 30.0,
        "score_breakdown": {"severity": 20.0},
        "lat": 41.15,
        "lon": -8.61,
        "evidence": [{"kind": "report", "id": str(uuid.uuid4())}],
        "reporters": 1,
        "opened_at": at,
        "updated_at": at,
        "expected_at": at,
    }
    doc.update(over)
    return doc
