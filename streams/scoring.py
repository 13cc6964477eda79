"""Explainable priority: a score made of named parts, a class P1-P4 and an SLA deadline.

Every incident carries ``score_breakdown`` (part name -> points) and ``score`` is exactly
the sum of the parts. The parts, and the most each can give:

=====================  ======  ==========================================================
part                   max     how
=====================  ======  ==========================================================
severity               32      the fault family's severity (``streams.families``)
sensor_magnitude       15      15 x the strongest sensor reading, normalised to 0..1
reporters              20      10 x log2(1 + distinct reporters), capped
sensor_corroboration   10      a sensor alert and a citizen report agree
road_class             12      motorway/trunk/primary 12, secondary 8, tertiary 5, ...
nearby_poi             15      hospital 10, school/kindergarten/nursing home 8, clinic 6,
                               university 4 within the POI radius; summed, capped
time_open              20      20 x min(time open / SLA, 1.5) / 1.5
=====================  ======  ==========================================================

Priority classes (thresholds in ``StreamsSettings``, defaults shown): **P1** score >= 70,
**P2** >= 45, **P3** >= 25, else **P4**. A dispatcher's ``manual_priority`` overrides the
class, never the score. The SLA deadline ``expected_at`` is ``opened_at`` plus the
family's SLA, shortened for urgent classes (P1 at most 4 h, P2 at most 24 h).

Every part is non-decreasing in reporters, corroboration, magnitude and time open, so
more evidence never lowers the priority. Time open is measured up to the clock when the
aging timer re-scores, and up to the newest evidence when evidence arrives; the points it
has reached are kept (``Factors.time_open_floor``), so a late report, stamped before the
last aging, does not take them back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.schemas import Priority
from streams.families import Family

SEVERITY = "severity"
SENSOR_MAGNITUDE = "sensor_magnitude"
REPORTERS = "reporters"
SENSOR_CORROBORATION = "sensor_corroboration"
ROAD_CLASS = "road_class"
NEARBY_POI = "nearby_poi"
TIME_OPEN = "time_open"

MAGNITUDE_POINTS = 15.0
REPORTER_POINTS = 10.0
REPORTERS_MAX_POINTS = 20.0
CORROBORATION_POINTS = 10.0
POI_MAX_POINTS = 15.0
TIME_OPEN_POINTS = 20.0
TIME_OPEN_MAX_RATIO = 1.5

ROAD_CLASS_POINTS: dict[str, float] = {
    "motorway": 12, "trunk": 12, "primary": 12,
    "secondary": 8,
    "tertiary": 5,
    "unclassified": 2, "residential": 2,
    "living_street": 1, "service": 1,
}  # fmt: skip
POI_POINTS: dict[str, float] = {
    "hospital": 10, "school": 8, "kindergarten": 8, "nursing_home": 8, "clinic": 6, "university": 4,
}  # fmt: skip
#: Upper bound of the SLA per class (seconds); P3/P4 keep the family's SLA.
CLASS_SLA_CAP_S: dict[Priority, float] = {Priority.P1: 4 * 3600.0, Priority.P2: 24 * 3600.0}


@dataclass(frozen=True)
class Thresholds:
    """Minimum scores of the priority classes."""

    p1: float = 70.0
    p2: float = 45.0
    p3: float = 25.0

    def classify(self, score: float) -> Priority:
        """The priority class of a score."""
        if score >= self.p1:
            return Priority.P1
        if score >= self.p2:
            return Priority.P2
        if score >= self.p3:
            return Priority.P3
        return Priority.P4


@dataclass(frozen=True)
class Factors:
    """What the score is computed from (one incident at one instant)."""

    family: Family
    magnitude: float = 0.0
    reporters: int = 0
    corroborated: bool = False
    road_class: str | None = None
    poi_kinds: tuple[str, ...] = ()
    open_s: float = 0.0
    # The time_open points already reached: time open only grows while an incident lasts.
    time_open_floor: float = 0.0


@dataclass(frozen=True)
class Score:
    """A score, its breakdown and its class."""

    total: float
    breakdown: dict[str, float]
    priority: Priority

    def __repr__(self) -> str:
        return f"Score({self.total:.1f} {self.priority.value})"


def road_class_points(highway: str | None) -> float:
    """Points for the OSM highway class of the incident's road (links count as their road)."""
    if not highway:
        return 0.0
    return float(ROAD_CLASS_POINTS.get(highway.removesuffix("_link"), 0.0))


def poi_points(kinds: Iterable[str]) -> float:
    """Points for the points of interest near the incident (one per kind, capped)."""
    return min(POI_MAX_POINTS, float(sum(POI_POINTS.get(k, 0.0) for k in set(kinds))))


def breakdown(f: Factors) -> dict[str, float]:
    """The named parts of the score (see the module table)."""
    ratio = max(0.0, f.open_s) / f.family.sla_s if f.family.sla_s > 0 else TIME_OPEN_MAX_RATIO
    return {
        SEVERITY: float(f.family.severity),
        SENSOR_MAGNITUDE: round(MAGNITUDE_POINTS * min(1.0, max(0.0, f.magnitude)), 3),
        REPORTERS: round(
            min(REPORTERS_MAX_POINTS, REPORTER_POINTS * math.log2(1 + f.reporters)), 3
        ),
        SENSOR_CORROBORATION: CORROBORATION_POINTS if f.corroborated else 0.0,
        ROAD_CLASS: road_class_points(f.road_class),
        NEARBY_POI: poi_points(f.poi_kinds),
        TIME_OPEN: max(
            f.time_open_floor,
            round(TIME_OPEN_POINTS * min(ratio, TIME_OPEN_MAX_RATIO) / TIME_OPEN_MAX_RATIO, 3),
        ),
    }


def score(f: Factors, thresholds: Thresholds | None = None) -> Score:
    """Score an incident: breakdown, total (the exact sum) and class."""
    parts = breakdown(f)
    total = round(sum(parts.values()), 3)
    return Score(total, parts, (thresholds or Thresholds()).classify(total))


def sla_deadline(family: Family, priority: Priority, opened_at: datetime) -> datetime:
    """When the incident should be fixed: the family's SLA, capped for urgent classes."""
    sla_s = min(family.sla_s, CLASS_SLA_CAP_S.get(priority, family.sla_s))
    return opened_at + timedelta(seconds=sla_s)


def changed(old_score: float, old: Priority, new_score: float, new: Priority, eps: float) -> bool:
    """Whether a re-score is worth publishing: the class changed or the score moved > eps."""
    return old != new or abs(new_score - old_score) > eps
