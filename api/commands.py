"""Dispatcher actions as ``core.schemas.Command`` messages (pure).

The API never changes an incident or a crew itself: it sends a command on Kafka
``commands`` and the owning service (streams for incidents, dispatch for crews and pins)
applies it, so every change still flows through the one place that owns the state.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from core.errors import Conflict
from core.schemas import Command, CommandKind, Priority


def command(
    kind: CommandKind,
    *,
    issued_by: str,
    at: datetime,
    incident_id: str | None = None,
    crew_id: str | None = None,
    priority: Priority | None = None,
    duplicate_of: str | None = None,
    note: str | None = None,
) -> Command:
    """A validated command; ``Conflict`` for an action that contradicts itself."""
    if kind is CommandKind.MARK_DUPLICATE and duplicate_of == incident_id:
        raise Conflict("an incident cannot be a duplicate of itself")
    return Command(
        command_id=uuid.uuid4(),
        kind=kind,
        at=at,
        issued_by=issued_by,
        incident_id=incident_id,
        crew_id=crew_id,
        priority=priority,
        duplicate_of=duplicate_of,
        note=note,
    )
