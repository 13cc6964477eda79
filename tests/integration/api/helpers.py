"""Helpers for the API's integration tests: incidents as the sink would write them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.schemas import Evidence, EvidenceKind, Incident, IncidentStatus, Transition
from core.settings import Settings
from store.writers import Writer

SCHEMAS = Path("/work/shared/open311-schemas")


def incident(
    incident_id: str,
    report_ids: list[str],
    history: list[tuple[str, datetime, str | None]],
    *,
    version: int | None = None,
    merged_into: str | None = None,
    category: str = "pothole",
    lat: float = 41.15,
    lon: float = -8.61,
) -> Incident:
    """An incident message with these reports as evidence and this history."""
    trans = [Transition(status=IncidentStatus(s), at=at, reason=r) for s, at, r in history]
    opened = trans[0].at
    return Incident(
        incident_id=incident_id,
        version=version or len(trans),
        status=trans[-1].status,
        category=category,
        family="road_surface",
        priority="P2",
        score=50.0,
        score_breakdown={"severity": 30.0, "reporters": 20.0},
        lat=lat,
        lon=lon,
        evidence=[Evidence(kind=EvidenceKind.REPORT, id=r, at=opened) for r in report_ids],
        reporters=len(report_ids),
        opened_at=opened,
        updated_at=trans[-1].at,
        expected_at=opened + timedelta(days=2),
        history=trans,
        merged_into=merged_into,
        district="centro",
    )


def write(settings: Settings, *messages: Any) -> None:
    """Write messages through the store writer, as the pipeline's sink does."""

    async def run() -> None:
        async with Writer(settings.pg.dsn, name="test") as w:
            await w.write(list(messages))

    asyncio.run(run())


def now() -> datetime:
    return datetime.now(UTC)


def check_against_schema(doc: dict[str, Any], schema_file: str) -> None:
    """Check required fields and simple types against a shared GeoReport JSON schema."""
    schema = json.loads((SCHEMAS / schema_file).read_text())
    for key in schema.get("required", []):
        assert key in doc, f"{schema_file}: missing {key}"
    kinds = {
        "string": str,
        "number": (int, float),
        "boolean": bool,
        "integer": int,
        "null": type(None),
        "array": list,
    }
    for key, spec in schema.get("properties", {}).items():
        if key not in doc:
            continue
        options = [spec] if "type" in spec else spec.get("anyOf", [])
        allowed = tuple(kinds[o["type"]] for o in options if o.get("type") in kinds)
        if allowed:
            assert isinstance(doc[key], allowed), f"{schema_file}: {key}={doc[key]!r}"
        for o in options:
            if "enum" in o and isinstance(doc[key], str):
                assert doc[key] in o["enum"], f"{schema_file}: {key}={doc[key]!r}"
            if "maxLength" in o and isinstance(doc[key], str):
                assert len(doc[key]) <= o["maxLength"]
