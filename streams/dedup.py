"""Road-aware deduplication: which open incident, if any, a report or alert belongs to.

**Rule.** An observation (a citizen report or a sensor alert, snapped to its road
segment) joins an incident of the same fault family (``streams.families``) when

* both name the same asset (lamp id, hydrant id), or, when neither names a different one,
* the distance *along the road* between the observation and the incident's anchor (its
  first evidence, snapped) is within the family's ``radius_m``,

and it arrives within the family's ``window_s`` of the incident's evidence (or within
``reopen_window_s`` of the fix, for a resolved or closed incident, which then reopens).
The nearest eligible incident wins (an asset match first; ties go to the oldest, then
the smallest id), so the outcome never depends on storage order. A parallel street 20 m
away is far along the road, hence a different incident. When the reports of each fault
lie within ``radius_m`` of each other and faults are more than twice that apart, the set
of incidents does not depend on arrival order.

**Keying, and why it is correct at partition borders.** The plane is cut into square
cells of ``cell_size_m`` (at least twice the largest family radius) in a local metric
projection; dedup state is keyed by ``"{family}.{col}.{row}"``.

* An observation is routed to its *home cell*: the cell of its snapped point.
* An incident's index ``Entry`` is written into *every* cell within ``radius_m`` of its
  anchor (1, 2 or 4 cells, since a cell is at least two radii wide).

Road distance is never shorter than the straight line, so every incident an observation
could join has an entry in the observation's home cell: the processor of that one cell
sees all candidates, and two reports a metre apart on either side of a cell border meet
in whichever cell saw the first of them. The incident's own state (and its id, which
starts with its home cell key, see ``incident_id_for``) lives with its home cell, so
crew, assignment and command events for it are routed to the same partition.

Entries in neighbouring cells are written by messages through the cell topic, which
leaves one race: two observations of one fault that straddle a border and arrive within
one message hop of each other may each open an incident. When an entry from another
cell arrives and overlaps a local one (same family, anchors within radius, both active,
assets compatible), both cells pick the same survivor (``survivor``: first opened, then
smallest id, fields no cell ever changes) and the other is marked ``duplicate`` into it,
the survivor absorbing its evidence. So
the index converges to what a single sequential processor would have decided.

Everything here is pure: no Faust, no I/O. ``streams.engine`` applies it to tables.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from streams.families import MAX_RADIUS_M, Family

_EARTH_M = 6_371_008.8

DistanceFn = Callable[[int, float, int, float, float], float]
"""``(edge_a, along_a_m, edge_b, along_b_m, limit_m) -> metres along the road or inf``."""

ACTIVE = "active"
RESOLVED = "resolved"
CLOSED = "closed"


@dataclass(frozen=True)
class Grid:
    """Square cells of ``cell_m`` in a local equirectangular projection around ``ref_lat``."""

    cell_m: float
    ref_lat: float

    def __post_init__(self) -> None:
        if self.cell_m < 2 * MAX_RADIUS_M:
            raise ValueError(
                f"cell_size_m={self.cell_m} must be at least twice the largest radius "
                f"({2 * MAX_RADIUS_M} m)"
            )

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Metres east and north of (0, 0) in the local projection."""
        k = math.cos(math.radians(self.ref_lat))
        return math.radians(lon) * _EARTH_M * k, math.radians(lat) * _EARTH_M

    def cell_of(self, lat: float, lon: float) -> tuple[int, int]:
        """The (col, row) of the cell holding a point."""
        x, y = self.xy(lat, lon)
        return math.floor(x / self.cell_m), math.floor(y / self.cell_m)

    def cells_within(self, lat: float, lon: float, radius_m: float) -> list[tuple[int, int]]:
        """Every cell whose square comes within ``radius_m`` of a point (home cell first)."""
        x, y = self.xy(lat, lon)
        home = (math.floor(x / self.cell_m), math.floor(y / self.cell_m))
        out = [home]
        c0, c1 = math.floor((x - radius_m) / self.cell_m), math.floor((x + radius_m) / self.cell_m)
        r0, r1 = math.floor((y - radius_m) / self.cell_m), math.floor((y + radius_m) / self.cell_m)
        for c in range(c0, c1 + 1):
            for r in range(r0, r1 + 1):
                if (c, r) == home:
                    continue
                dx = max(c * self.cell_m - x, 0.0, x - (c + 1) * self.cell_m)
                dy = max(r * self.cell_m - y, 0.0, y - (r + 1) * self.cell_m)
                if math.hypot(dx, dy) <= radius_m:
                    out.append((c, r))
        return out


def cell_key(family: str, cell: tuple[int, int]) -> str:
    """The dedup key of a family's cell: ``"{family}.{col}.{row}"``."""
    return f"{family}.{cell[0]}.{cell[1]}"


def incident_id_for(home_key: str, first_evidence_id: str) -> str:
    """The id of the incident opened in ``home_key`` by ``first_evidence_id``.

    Deterministic, so an observation replayed after a crash re-creates the same incident
    rather than a second one.
    """
    digest = hashlib.sha256(first_evidence_id.encode()).hexdigest()[:16]
    return f"{home_key}.{digest}"


def cell_of_incident(incident_id: str) -> str:
    """The home cell key of an incident (the prefix of its id)."""
    head, sep, _ = incident_id.rpartition(".")
    if not sep or head.count(".") != 2:
        raise ValueError(f"not a cityfix incident id: {incident_id!r}")
    return head


@dataclass(frozen=True)
class Observation:
    """One report or alert, validated and snapped: what dedup and fusion need of it."""

    evidence_id: str
    kind: str  # "report" | "alert"
    family: str
    category: str  # citizen category, or sensor kind for alerts
    lat: float
    lon: float
    edge: int
    along_m: float
    snap_lat: float
    snap_lon: float
    at_s: float
    asset_id: str | None = None
    source: str | None = None  # client id (reports) or device id (alerts)
    value: float | None = None
    description: str | None = None
    media_url: str | None = None

    def home_key(self, grid: Grid) -> str:
        """The key of the cell this observation is decided in."""
        return cell_key(self.family, grid.cell_of(self.snap_lat, self.snap_lon))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Observation:
        """The inverse of ``to_dict``."""
        return cls(**doc)


@dataclass(frozen=True)
class Entry:
    """An incident as the dedup index sees it (one per cell its radius touches)."""

    incident_id: str
    family: str
    edge: int
    along_m: float
    lat: float  # snapped anchor
    lon: float
    first_at_s: float
    last_at_s: float
    asset_id: str | None = None
    state: str = ACTIVE  # active | resolved | closed
    resolved_at_s: float | None = None
    # When the incident was opened (its first evidence); never changes, so every cell
    # holding a copy of the entry agrees on which of two overlapping incidents survives.
    opened_at_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Entry:
        """The inverse of ``to_dict``."""
        return cls(**doc)

    def seen_at(self, at_s: float) -> Entry:
        """The entry with its evidence span widened to ``at_s``."""
        if self.first_at_s <= at_s <= self.last_at_s:
            return self
        return replace(
            self, first_at_s=min(self.first_at_s, at_s), last_at_s=max(self.last_at_s, at_s)
        )


def entry_for(incident_id: str, obs: Observation) -> Entry:
    """The index entry of an incident opened by ``obs``."""
    return Entry(
        incident_id=incident_id,
        family=obs.family,
        edge=obs.edge,
        along_m=obs.along_m,
        lat=obs.snap_lat,
        lon=obs.snap_lon,
        first_at_s=obs.at_s,
        last_at_s=obs.at_s,
        asset_id=obs.asset_id,
        opened_at_s=obs.at_s,
    )


def entry_cells(entry: Entry, grid: Grid, family: Family) -> list[str]:
    """Keys of every cell the entry must be written to (its home cell first)."""
    return [
        cell_key(entry.family, c) for c in grid.cells_within(entry.lat, entry.lon, family.radius_m)
    ]


@dataclass(frozen=True)
class Match:
    """The incident an observation joins, and why."""

    incident_id: str
    distance_m: float
    by: str  # "asset" | "road"
    reopens: bool = False


def _time_ok(obs_at: float, e: Entry, family: Family, reopen_window_s: float) -> tuple[bool, bool]:
    """(eligible, reopens) for an observation at ``obs_at`` against ``e``."""
    if e.state != ACTIVE and e.resolved_at_s is not None and obs_at >= e.resolved_at_s:
        return obs_at - e.resolved_at_s <= reopen_window_s, True
    return e.first_at_s - family.window_s <= obs_at <= e.last_at_s + family.window_s, False


def find_match(
    obs: Observation,
    entries: Iterable[Entry],
    family: Family,
    distance: DistanceFn,
    reopen_window_s: float,
) -> Match | None:
    """The incident ``obs`` joins among ``entries`` (see the module docstring), or None."""
    best: tuple[tuple[int, float, float, str], Match] | None = None
    for e in entries:
        if e.family != obs.family:
            continue
        ok, reopens = _time_ok(obs.at_s, e, family, reopen_window_s)
        if not ok:
            continue
        if obs.asset_id and e.asset_id:
            if obs.asset_id != e.asset_id:
                continue
            m = Match(e.incident_id, 0.0, "asset", reopens)
            rank = (0, 0.0, e.first_at_s, e.incident_id)
        else:
            # The road is never shorter than the straight line: skip the graph search
            # for anything further than the radius as the crow flies.
            if _straight_m(obs.snap_lat, obs.snap_lon, e.lat, e.lon) > family.radius_m + 1.0:
                continue
            d = distance(obs.edge, obs.along_m, e.edge, e.along_m, family.radius_m)
            if not d <= family.radius_m:
                continue
            m = Match(e.incident_id, d, "road", reopens)
            rank = (1, d, e.first_at_s, e.incident_id)
        if best is None or rank < best[0]:
            best = (rank, m)
    return best[1] if best else None


def _straight_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Metres between two nearby points (equirectangular; exact to well under 1 % in a city)."""
    k = math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(math.radians(lon2 - lon1) * k, math.radians(lat2 - lat1)) * _EARTH_M


def overlaps(a: Entry, b: Entry, family: Family, distance: DistanceFn) -> bool:
    """Whether two active entries describe one fault (what a border race can produce)."""
    if a.incident_id == b.incident_id or a.family != b.family:
        return False
    if a.state != ACTIVE or b.state != ACTIVE:
        return False
    if a.first_at_s > b.last_at_s + family.window_s or b.first_at_s > a.last_at_s + family.window_s:
        return False
    if a.asset_id and b.asset_id:
        return a.asset_id == b.asset_id
    return distance(a.edge, a.along_m, b.edge, b.along_m, family.radius_m) <= family.radius_m


def survivor(a: Entry, b: Entry) -> tuple[Entry, Entry]:
    """(kept, merged) of two overlapping entries: the first opened survives, then the smallest id.

    Decided on fields that never change, so both cells of a border race pick the same one.
    """
    if (a.opened_at_s, a.incident_id) <= (b.opened_at_s, b.incident_id):
        return a, b
    return b, a


def expired(e: Entry, now_s: float, reopen_window_s: float) -> bool:
    """Whether an entry can be dropped: its incident was fixed a reopen window ago.

    The entry of an active incident stays, however old its evidence: new evidence joins it
    only within the family's window (``find_match`` compares event times), but the entry
    must be there when the incident is resolved, or a report after a fix that took longer
    than the window could not reopen it. It also keeps a worker that works through a
    backlog older than the window from dropping the entry it has just opened.
    """
    if e.state == ACTIVE:
        return False
    fixed = e.resolved_at_s if e.resolved_at_s is not None else e.last_at_s
    return now_s > fixed + reopen_window_s


def upsert(entries: list[Entry], entry: Entry) -> list[Entry]:
    """``entries`` with ``entry`` replacing the one of the same incident (or appended)."""
    out = [e for e in entries if e.incident_id != entry.incident_id]
    out.append(entry)
    return out


def remove(entries: list[Entry], incident_id: str) -> list[Entry]:
    """``entries`` without the incident's entry."""
    return [e for e in entries if e.incident_id != incident_id]
