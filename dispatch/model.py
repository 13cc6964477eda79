"""Value objects of the dispatch model: what the solver is asked and what it answers.

Everything here is pure, immutable and picklable, so a ``Problem`` can be shipped to a
worker process and a ``Plan`` shipped back. Times are integer seconds from the start of the
plan (``t = 0`` is "now" for the dispatcher service); locations are row/column indices of
``Problem.durations``, a square travel-time matrix in integer seconds.

A service builds a ``Problem`` from incidents, crew states and a travel-time matrix:

* each open incident becomes a ``Job`` at the matrix index of its road-graph node, with the
  skills and material its category needs, a priority (0..100, higher is more urgent) and an
  SLA deadline (``deadline_s``: by when the work should be *finished*);
* each crew on shift becomes a ``Crew`` whose ``start`` is the matrix index of where it is
  now; an on-site crew names its current job in ``pinned_job`` (it stays its first stop, no
  matter what) and an en-route crew names its destination in ``heading_to`` (moving that job
  elsewhere costs the reshuffle penalty).

``jobs_moved(previous, current)`` tells which jobs changed crew between two plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Protocol, SupportsFloat

import numpy as np

__all__ = [
    "Crew",
    "CrewRoute",
    "Job",
    "Plan",
    "PlannedStop",
    "Problem",
    "SolverSettings",
    "TimeWindow",
    "Unassigned",
    "UnassignedKind",
    "jobs_moved",
]


class SolverSettings(Protocol):
    """What the model reads from settings; ``core.settings.DispatchSettings`` fits.

    Any object with these attributes works (a dataclass in a test, a pydantic model in a
    service); it must be picklable to reach a worker process.
    """

    @property
    def time_limit_s(self) -> float: ...  # noqa: D102

    @property
    def first_solution(self) -> str: ...  # noqa: D102

    @property
    def metaheuristic(self) -> str: ...  # noqa: D102

    @property
    def reshuffle_penalty_s(self) -> int: ...  # noqa: D102

    @property
    def lateness_cost_per_s(self) -> int: ...  # noqa: D102

    @property
    def drop_penalty_base_s(self) -> int: ...  # noqa: D102

    @property
    def search_processes(self) -> int: ...  # noqa: D102


def _materials(value: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, amount in value.items():
        if int(amount) != amount or amount < 0:
            raise ValueError(f"material {name!r}: amount must be a non-negative integer")
        if amount:
            out[str(name)] = int(amount)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class TimeWindow:
    """A closed interval ``[start_s, end_s]`` of plan time, in integer seconds."""

    start_s: int
    end_s: int

    def __post_init__(self) -> None:
        if self.start_s > self.end_s:
            raise ValueError(f"time window ends before it starts: {self.start_s}..{self.end_s}")

    def __repr__(self) -> str:
        return f"TimeWindow({self.start_s}..{self.end_s})"

    def contains(self, t_s: int) -> bool:
        """Whether ``t_s`` lies inside the window (both ends included)."""
        return self.start_s <= t_s <= self.end_s


def _union(windows: Sequence[TimeWindow]) -> tuple[TimeWindow, ...]:
    """The same instants as disjoint windows in time order (overlapping ones merged).

    Service may start in any window, so only their union matters; the routing model and
    the schedule both read the windows as sorted and disjoint.
    """
    out: list[TimeWindow] = []
    for w in sorted(windows, key=lambda w: (w.start_s, w.end_s)):
        if out and w.start_s <= out[-1].end_s + 1:  # overlapping, or next to it (whole seconds)
            out[-1] = TimeWindow(out[-1].start_s, max(out[-1].end_s, w.end_s))
        else:
            out.append(w)
    return tuple(out)


@dataclass(frozen=True, repr=False)
class Job:
    """One piece of field work at one place.

    ``windows`` are hard (service may only *start* inside one of them; empty means any
    time); ``deadline_s`` is soft (the SLA: finishing later costs lateness weighted by
    priority). ``materials`` is what the job uses up from the crew's truck.
    """

    id: str
    location: int
    service_s: int = 0
    skills: frozenset[str] = frozenset()
    materials: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0
    deadline_s: int | None = None
    windows: tuple[TimeWindow, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", frozenset(str(s) for s in self.skills))
        object.__setattr__(self, "materials", _materials(self.materials))
        object.__setattr__(self, "windows", _union(self.windows))
        if not 0 <= self.priority <= 100:
            raise ValueError(f"job {self.id}: priority must be in 0..100, got {self.priority}")
        if self.service_s < 0:
            raise ValueError(f"job {self.id}: negative service_s")
        if self.location < 0:
            raise ValueError(f"job {self.id}: negative location index")

    @property
    def weight(self) -> int:
        """Priority weight used for lateness and drop penalties (``1 + priority``)."""
        return 1 + self.priority

    def __repr__(self) -> str:
        parts = [repr(self.id), f"@{self.location}"]
        if self.service_s:
            parts.append(f"service={self.service_s}s")
        if self.skills:
            parts.append(f"skills={sorted(self.skills)}")
        if self.materials:
            parts.append(f"materials={dict(self.materials)}")
        parts.append(f"priority={self.priority}")
        if self.deadline_s is not None:
            parts.append(f"deadline={self.deadline_s}s")
        if self.windows:
            parts.append(f"windows={list(self.windows)}")
        return f"Job({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class Crew:
    """A field crew: where it is, what it can do, what it carries, when it works.

    ``capacity`` maps a material to the amount on the truck; a material not listed is not
    carried (capacity 0). ``end`` is where the shift must end (``None``: wherever the last
    job is). The shift end is hard: all work, and the drive to ``end``, fit inside
    ``shift``. ``pinned_job`` is the job the crew is working on right now (always its first
    stop; its ``service_s`` should be the remaining time); ``heading_to`` the job it is
    driving to (kept unless moving it pays for the reshuffle penalty).
    """

    id: str
    start: int
    shift: TimeWindow
    skills: frozenset[str] = frozenset()
    capacity: Mapping[str, int] = field(default_factory=dict)
    end: int | None = None
    pinned_job: str | None = None
    heading_to: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", frozenset(str(s) for s in self.skills))
        object.__setattr__(self, "capacity", _materials(self.capacity))
        if self.start < 0 or (self.end is not None and self.end < 0):
            raise ValueError(f"crew {self.id}: negative location index")

    def can_do(self, job: Job) -> bool:
        """Whether the crew has every skill ``job`` needs."""
        return job.skills <= self.skills

    def __repr__(self) -> str:
        parts = [repr(self.id), f"@{self.start}", repr(self.shift)]
        if self.skills:
            parts.append(f"skills={sorted(self.skills)}")
        if self.capacity:
            parts.append(f"capacity={dict(self.capacity)}")
        if self.end is not None:
            parts.append(f"end={self.end}")
        if self.pinned_job is not None:
            parts.append(f"pinned={self.pinned_job!r}")
        if self.heading_to is not None:
            parts.append(f"heading_to={self.heading_to!r}")
        return f"Crew({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class Problem:
    """Jobs, crews and the travel-time matrix (seconds) between their locations.

    Build it with ``Problem.build`` to accept any nested sequence (or numpy array) of
    durations; the constructor wants a tuple of integer tuples.
    """

    jobs: tuple[Job, ...]
    crews: tuple[Crew, ...]
    durations: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        n = len(self.durations)
        if any(len(row) != n for row in self.durations):
            raise ValueError("durations must be a square matrix")
        job_ids = [j.id for j in self.jobs]
        crew_ids = [c.id for c in self.crews]
        for kind, ids in (("job", job_ids), ("crew", crew_ids)):
            dup = {i for i in ids if ids.count(i) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} ids: {sorted(dup)}")
        for j in self.jobs:
            if j.location >= n:
                raise ValueError(f"job {j.id}: location {j.location} outside the matrix ({n})")
        known = set(job_ids)
        pinned: dict[str, str] = {}
        for c in self.crews:
            for loc in (c.start, c.end):
                if loc is not None and loc >= n:
                    raise ValueError(f"crew {c.id}: location {loc} outside the matrix ({n})")
            for ref in (c.pinned_job, c.heading_to):
                if ref is not None and ref not in known:
                    raise ValueError(f"crew {c.id}: unknown job {ref!r}")
            if c.pinned_job is not None:
                if c.pinned_job in pinned:
                    raise ValueError(
                        f"job {c.pinned_job} pinned to both {pinned[c.pinned_job]} and {c.id}"
                    )
                pinned[c.pinned_job] = c.id

    @classmethod
    def build(
        cls,
        jobs: Iterable[Job],
        crews: Iterable[Crew],
        durations: Iterable[Iterable[SupportsFloat]],
    ) -> Problem:
        """A problem from any matrix-like ``durations`` (rounded to whole seconds)."""
        try:
            table = np.asarray(durations, dtype=np.float64)
        except (TypeError, ValueError):  # ragged or not numbers: the checks below say why
            table = None
        if table is not None and table.ndim == 2 and np.isfinite(table).all():
            # numpy rounds halves to even, as ``round`` does
            rounded = np.rint(table)
            negative = bool(rounded.size) and rounded.min() < 0
            matrix = tuple(map(tuple, rounded.astype(np.int64).tolist()))
        else:
            matrix = tuple(tuple(round(float(x)) for x in row) for row in durations)
            negative = any(x < 0 for row in matrix for x in row)
        if negative:
            raise ValueError("durations must be non-negative")
        return cls(tuple(jobs), tuple(crews), matrix)

    def __repr__(self) -> str:
        return (
            f"Problem(jobs={len(self.jobs)}, crews={len(self.crews)}, "
            f"locations={len(self.durations)})"
        )

    @cached_property
    def _jobs_by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}

    @cached_property
    def _crews_by_id(self) -> dict[str, Crew]:
        return {c.id: c for c in self.crews}

    def job(self, job_id: str) -> Job:
        """The job with this id (``KeyError`` if unknown)."""
        return self._jobs_by_id[job_id]

    def crew(self, crew_id: str) -> Crew:
        """The crew with this id (``KeyError`` if unknown)."""
        return self._crews_by_id[crew_id]

    def travel_s(self, src: int, dst: int | None) -> int:
        """Travel time between two matrix indices; 0 to an open end (``None``)."""
        return 0 if dst is None else self.durations[src][dst]

    @cached_property
    def matrix(self) -> np.ndarray:
        """``durations`` as a read-only integer array."""
        out = np.asarray(self.durations, dtype=np.int64)
        out.flags.writeable = False
        return out

    @cached_property
    def pinned_to(self) -> dict[str, str]:
        """Job id -> id of the crew working on it right now."""
        return {c.pinned_job: c.id for c in self.crews if c.pinned_job is not None}


@dataclass(frozen=True)
class PlannedStop:
    """One job in a crew's route, with its ETA and schedule (plan seconds)."""

    job_id: str
    location: int
    arrival_s: int
    start_s: int
    end_s: int
    late_s: int = 0
    pinned: bool = False

    @property
    def waiting_s(self) -> int:
        """Time between arriving and starting the work (a window not yet open)."""
        return self.start_s - self.arrival_s


@dataclass(frozen=True)
class CrewRoute:
    """A crew's ordered stops, when it leaves, when it is done, and how long it drives."""

    crew_id: str
    stops: tuple[PlannedStop, ...]
    start_s: int
    end_s: int
    travel_s: int
    load: Mapping[str, int] = field(default_factory=dict)

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The jobs in visiting order."""
        return tuple(s.job_id for s in self.stops)


class UnassignedKind(StrEnum):
    """Why a job is in nobody's route."""

    SKILL = "skill"
    SHIFT = "shift"
    CAPACITY = "capacity"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Unassigned:
    """A job left out of the plan, with a reason a dispatcher can read."""

    job_id: str
    kind: UnassignedKind
    reason: str


@dataclass(frozen=True)
class Plan:
    """The answer: one route per crew (in problem order) and the jobs left out.

    ``travel_s`` is the total driving time (the VROOM ``cost``), ``late_s`` the total time
    past SLA deadlines, ``objective`` the full model cost (travel, weighted lateness, drop
    and reshuffle penalties), comparable across solvers for the same problem and settings.
    """

    routes: tuple[CrewRoute, ...]
    unassigned: tuple[Unassigned, ...]
    travel_s: int
    late_s: int
    objective: int
    solve_ms: float = 0.0
    method: str = ""
    warm_started: bool = False

    def __repr__(self) -> str:
        used = sum(1 for r in self.routes if r.stops)
        jobs = sum(len(r.stops) for r in self.routes)
        return (
            f"Plan({self.method or 'plan'}: {jobs} jobs on {used}/{len(self.routes)} crews, "
            f"{len(self.unassigned)} unassigned, travel={self.travel_s}s, late={self.late_s}s, "
            f"objective={self.objective}, {self.solve_ms:.0f} ms)"
        )

    def route_of(self, crew_id: str) -> CrewRoute | None:
        """The route of one crew, or ``None`` if the crew is not in the plan."""
        for r in self.routes:
            if r.crew_id == crew_id:
                return r
        return None

    def assignments(self) -> dict[str, str]:
        """Job id -> crew id for every assigned job."""
        return {s.job_id: r.crew_id for r in self.routes for s in r.stops}

    def crew_of(self, job_id: str) -> str | None:
        """The crew a job is assigned to, or ``None``."""
        return self.assignments().get(job_id)

    def unassigned_ids(self) -> frozenset[str]:
        """Ids of the jobs left out."""
        return frozenset(u.job_id for u in self.unassigned)


def jobs_moved(previous: Plan, current: Plan) -> frozenset[str]:
    """Jobs that had a crew in ``previous`` and have another crew (or none) in ``current``.

    Jobs that no longer appear in ``current`` (finished, closed) are not moves.
    """
    before = previous.assignments()
    after = current.assignments()
    present = set(after) | current.unassigned_ids()
    return frozenset(j for j, crew in before.items() if j in present and after.get(j) != crew)


def route_loads(problem: Problem, job_ids: Sequence[str]) -> dict[str, int]:
    """Total material the listed jobs use (what a crew must carry out for them)."""
    load: dict[str, int] = {}
    for jid in job_ids:
        for name, amount in problem.job(jid).materials.items():
            load[name] = load.get(name, 0) + amount
    return dict(sorted(load.items()))
