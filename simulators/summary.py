"""What a demo run did, from the Kafka topics it produced (pure).

``Tally`` folds records of ``raw.reports``, ``raw.sensor-alerts``, ``incidents`` and
``assignments`` (decoded JSON) into live counts; ``summarise`` turns a tally (plus what
the simulated citizens saw) into the end-of-run summary: dedup ratio, time to assign and
to resolve per priority (p50/p90, simulated minutes, from each incident's history;
transitions stamped before the incident opened are counted apart, not as zero), the
share resolved within the SLA (before ``expected_at``), and how many citizens saw their
report closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

RAW_REPORTS = "raw.reports"
RAW_SENSOR_ALERTS = "raw.sensor-alerts"
INCIDENTS = "incidents"
ASSIGNMENTS = "assignments"

ASSIGNED_STATES = frozenset({"assigned", "en_route", "on_site"})
RESOLVED_STATES = frozenset({"resolved", "closed"})
FOLDED_STATES = frozenset({"duplicate", "merged"})  # not incidents of their own
PRIORITIES = ("P1", "P2", "P3", "P4")


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class Tally:
    """Live counts over the demo's Kafka topics; the latest state of each incident and crew."""

    reports: int = 0
    alerts: int = 0
    assignments: int = 0
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_event_at: datetime | None = None

    def add(self, topic: str, key: str | None, value: Mapping[str, Any] | None) -> None:
        """Fold one record in (``value`` ``None`` is a tombstone)."""
        if topic == RAW_REPORTS:
            self.reports += 1
        elif topic == RAW_SENSOR_ALERTS:
            self.alerts += 1
        elif topic == INCIDENTS:
            iid = str((value or {}).get("incident_id") or key or "")
            if not iid:
                return
            if value is None:
                self.incidents.pop(iid, None)
                return
            known = self.incidents.get(iid)
            if known is None or int(value.get("version", 0)) >= int(known.get("version", 0)):
                self.incidents[iid] = dict(value)
        elif topic == ASSIGNMENTS:
            self.assignments += 1
            crew = str((value or {}).get("crew_id") or key or "")
            if crew:
                self.plans[crew] = dict(value or {})
        if value is not None:
            at = _time(
                value.get("updated_at") or value.get("created_at") or value.get("reported_at")
            )
            if at is not None and (self.last_event_at is None or at > self.last_event_at):
                self.last_event_at = at

    def _live(self) -> list[dict[str, Any]]:
        return [i for i in self.incidents.values() if i.get("status") not in FOLDED_STATES]

    @property
    def incidents_open(self) -> int:
        """Incidents not resolved or closed (and not folded into another)."""
        return sum(1 for i in self._live() if i.get("status") not in RESOLVED_STATES)

    @property
    def incidents_resolved(self) -> int:
        """Incidents resolved or closed."""
        return sum(1 for i in self._live() if i.get("status") in RESOLVED_STATES)

    @property
    def crews_busy(self) -> int:
        """Crews whose latest plan has at least one stop."""
        return sum(1 for p in self.plans.values() if p.get("stops"))


def percentiles(values: Iterable[float]) -> dict[str, float | int | None]:
    """``{"n", "p50", "p90"}`` of ``values`` (``None`` when empty), rounded to 0.1."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return {"n": 0, "p50": None, "p90": None}
    p50, p90 = np.percentile(data, [50, 90])
    return {"n": int(data.size), "p50": round(float(p50), 1), "p90": round(float(p90), 1)}


def first_time(incident: Mapping[str, Any], states: frozenset[str]) -> datetime | None:
    """When an incident first reached one of ``states``, from its history."""
    times = [
        t
        for step in incident.get("history") or []
        if step.get("status") in states and (t := _time(step.get("at"))) is not None
    ]
    if not times and incident.get("status") in states:
        return _time(incident.get("updated_at"))
    return min(times) if times else None


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() / 60.0


# A transition stamped more than this before the incident opened came from another clock.
_SKEW_MIN = -0.5


def summarise(tally: Tally, citizens: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The end-of-run summary (see the module docstring); plain JSON-able values."""
    live = tally._live()
    evidence = sum(len(i.get("evidence") or []) for i in live)
    to_assign: dict[str, list[float]] = {p: [] for p in PRIORITIES}
    to_resolve: dict[str, list[float]] = {p: [] for p in PRIORITIES}
    sla_met = resolved = skewed = 0
    for inc in live:
        prio = str(inc.get("manual_priority") or inc.get("priority") or "P4")
        opened = _time(inc.get("opened_at"))
        assigned = first_time(inc, ASSIGNED_STATES)
        done = first_time(inc, RESOLVED_STATES)
        if (m := _minutes(opened, assigned)) is not None:
            if m < _SKEW_MIN:
                skewed += 1
            else:
                to_assign.setdefault(prio, []).append(max(m, 0.0))
        if done is not None:
            resolved += 1
            if (m := _minutes(opened, done)) is not None:
                if m < _SKEW_MIN:
                    skewed += 1
                else:
                    to_resolve.setdefault(prio, []).append(max(m, 0.0))
            expected = _time(inc.get("expected_at"))
            if expected is not None and done <= expected:
                sla_met += 1
    citizens = citizens or {}
    return {
        "reports": tally.reports,
        "alerts": tally.alerts,
        "incidents": len(live),
        "incidents_open": tally.incidents_open,
        "incidents_resolved": tally.incidents_resolved,
        "evidence": evidence,
        "dedup_ratio": round(evidence / len(live), 2) if live else None,
        "assignments": tally.assignments,
        "crews_busy": tally.crews_busy,
        "time_to_assign_min": _by_priority(to_assign),
        "time_to_resolve_min": _by_priority(to_resolve),
        # Transitions stamped before their incident opened (a service off the shared
        # clock); left out of the times above rather than counted as instant.
        "times_off_clock": skewed,
        "sla": {
            "resolved": resolved,
            "met": sla_met,
            "met_pct": round(100.0 * sla_met / resolved, 1) if resolved else None,
        },
        "citizens": {
            "reports_tracked": int(citizens.get("tracked", 0) or 0),
            "saw_closed": int(citizens.get("seen_closed", 0) or 0),
        },
    }


def _by_priority(values: dict[str, list[float]]) -> dict[str, dict[str, float | int | None]]:
    out = {p: percentiles(v) for p, v in sorted(values.items())}
    out["all"] = percentiles(x for v in values.values() for x in v)
    return out
