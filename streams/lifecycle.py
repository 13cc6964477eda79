"""An incident's lifecycle, as pure functions from (incident, event) to incident.

::

    open ──assigned──► assigned ──en_route──► en_route ──on_site──► on_site ──completed──► resolved
     ▲                   │  (dropped from every plan)                                      │
     └───────────────────┘                                            close_after_s / close │
                                                                                            ▼
    reopened ◄── new evidence within reopen_window_s of resolved ─────────────────────── closed
    (an active state, like open)

    any active state ──mark_duplicate──► duplicate (merged_into = target; the target absorbs
                                         the evidence)

Crew statuses may skip steps (a crew can report ``on_site`` without ``en_route``); a
status that would move an incident backwards (``en_route`` after ``on_site``) is ignored,
and so is anything addressed to a ``duplicate`` incident. Every change appends a
``Transition`` with its timestamp and reason to ``history``; functions return the incident
unchanged (the same object) when an event changes nothing, so callers can tell.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.schemas import (
    ACTIVE_STATUSES,
    CrewState,
    Incident,
    IncidentStatus,
    Priority,
    Transition,
)

S = IncidentStatus

#: Forward order of the working states; a crew status never moves an incident backwards.
_RANK = {S.OPEN: 0, S.REOPENED: 0, S.ASSIGNED: 1, S.EN_ROUTE: 2, S.ON_SITE: 3, S.RESOLVED: 4}
_CREW_TO_STATUS = {
    CrewState.EN_ROUTE: S.EN_ROUTE,
    CrewState.ON_SITE: S.ON_SITE,
    CrewState.COMPLETED: S.RESOLVED,
}
TERMINAL = frozenset({S.CLOSED, S.DUPLICATE, S.MERGED})
_RESTARTS = frozenset({S.OPEN, S.REOPENED})


def transition(
    inc: Incident, status: IncidentStatus, at: datetime, reason: str, **fields: object
) -> Incident:
    """``inc`` moved to ``status`` at ``at`` (history appended, ``updated_at`` set)."""
    history = [*inc.history, Transition(status=status, at=at, reason=reason)]
    return inc.model_copy(
        update={
            "status": status,
            "history": history,
            "updated_at": max(at, inc.updated_at),
            **fields,
        }
    )


def resolved_at(inc: Incident) -> datetime | None:
    """When the incident was resolved (``None`` if it never was, or was reopened since).

    The first ``resolved`` transition since it was last (re)opened: later entries with
    the same status (a priority set, evidence absorbed) do not move the fix.
    """
    return _first_since_restart(inc, {S.RESOLVED})


def fixed_at(inc: Incident) -> datetime:
    """When the work on a resolved or closed incident ended: resolved, else closed."""
    return (
        _first_since_restart(inc, {S.RESOLVED})
        or _first_since_restart(inc, {S.CLOSED})
        or inc.updated_at
    )


def _first_since_restart(inc: Incident, statuses: set[IncidentStatus]) -> datetime | None:
    first = None
    for t in reversed(inc.history):
        if t.status in _RESTARTS:
            break
        if t.status in statuses:
            first = t.at
    return first


def on_assigned(inc: Incident, crew_id: str, at: datetime) -> Incident:
    """The incident appeared in ``crew_id``'s plan."""
    if inc.status in (S.OPEN, S.REOPENED):
        return transition(inc, S.ASSIGNED, at, f"planned for crew {crew_id}", crew_id=crew_id)
    if inc.status == S.ASSIGNED and inc.crew_id != crew_id:
        return transition(inc, S.ASSIGNED, at, f"moved to crew {crew_id}", crew_id=crew_id)
    return inc


def on_unassigned(inc: Incident, crew_id: str, at: datetime) -> Incident:
    """The incident left ``crew_id``'s plan: back to open when no one else holds it."""
    if inc.status == S.ASSIGNED and inc.crew_id == crew_id:
        return transition(inc, S.OPEN, at, f"dropped from the plan of crew {crew_id}", crew_id=None)
    return inc


def on_crew_status(inc: Incident, crew_id: str, state: CrewState, at: datetime) -> Incident:
    """A crew reported ``state`` for this incident (en_route, on_site, completed).

    A status older than the incident's last return to open (reopened by new evidence, or
    dropped from every plan) is about the work before it: a late or redelivered
    ``completed`` must not resolve the reopened incident again.
    """
    target = _CREW_TO_STATUS.get(state)
    if target is None or inc.status in TERMINAL or inc.status == S.RESOLVED:
        return inc
    if _RANK.get(inc.status, 0) >= _RANK[target]:
        return inc
    restarted = next((t.at for t in reversed(inc.history) if t.status in _RESTARTS), None)
    if restarted is not None and at < restarted:
        return inc
    return transition(inc, target, at, f"crew {crew_id} {state.value}", crew_id=crew_id)


def on_evidence(inc: Incident, at: datetime, reopen_window_s: float) -> Incident:
    """New evidence arrived: a resolved or closed incident reopens within the window."""
    if inc.status not in (S.RESOLVED, S.CLOSED):
        return inc
    fixed = fixed_at(inc)
    if at < fixed or (at - fixed).total_seconds() > reopen_window_s:
        return inc
    return transition(inc, S.REOPENED, at, "new evidence after the fix", crew_id=None)


def close_due(inc: Incident, now: datetime, close_after_s: float) -> bool:
    """Whether a resolved incident has waited ``close_after_s`` and should close."""
    fixed = resolved_at(inc)
    return (
        inc.status == S.RESOLVED
        and fixed is not None
        and now - fixed >= timedelta(seconds=close_after_s)
    )


def on_close(inc: Incident, at: datetime, reason: str) -> Incident:
    """Close the incident (after the resolved grace period, or by a dispatcher)."""
    if inc.status in TERMINAL:
        return inc
    return transition(inc, S.CLOSED, at, reason)


def on_reprioritise(inc: Incident, priority: Priority | None, at: datetime, by: str) -> Incident:
    """A dispatcher set (or, with ``None``, cleared) the manual priority."""
    if inc.manual_priority == priority:
        return inc
    history = [*inc.history, Transition(status=inc.status, at=at, reason=f"priority set by {by}")]
    return inc.model_copy(
        update={
            "manual_priority": priority,
            "priority": priority or inc.priority,
            "history": history,
            "updated_at": max(at, inc.updated_at),
        }
    )


def on_duplicate(inc: Incident, target_id: str, at: datetime, reason: str) -> Incident:
    """The incident is the same fault as ``target_id``; it stops being worked on."""
    if inc.status in (S.DUPLICATE, S.MERGED) or target_id == inc.incident_id:
        return inc
    return transition(inc, S.DUPLICATE, at, reason, merged_into=target_id, crew_id=None)


def is_active(inc: Incident) -> bool:
    """Whether the incident still needs work."""
    return inc.status in ACTIVE_STATUSES
