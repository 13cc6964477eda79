"""What the dispatcher knows, and how it becomes a ``Problem`` and then ``Assignment``s.

Pure: no I/O. The service feeds ``World`` with decoded messages (incidents, crew statuses
and positions, dispatcher commands), asks it for a ``Draft`` at a given instant, and hands
the draft to the planner, which snaps it to the road graph (``sites``), builds the
``Problem`` over the unique graph nodes (``build_problem``) and turns the solver's ``Plan``
back into wire messages (``assignments``).

Rules, in one place:

* **Jobs** are incidents in an active status (open, reopened, assigned, en_route,
  on_site). The skill comes from the incident, else from its fault family
  (``FAMILY_SKILLS``); the service time from the incident, else the settings' default.
  Priority 0..100 is the priority class (a manual override wins) refined by the score;
  the SLA deadline is ``expected_at``.
* **Crews** are those whose last status is not unavailable/off_shift, whose shift end
  (default: ``default_shift_s`` after the crew was last heard of) lies ahead, that have a
  known position and that a ``crew_unavailable`` command has not taken out. A stand-down
  lasts until the crew comes back on duty (an unavailable/off_shift status after it, then
  an on-duty one) or a ``crew_available`` command; a crew answering its empty plan with
  ``available`` is not back. A crew without ``skills`` can do every skill.
* **Materials**: a job uses what the incident names, else its family's
  (``FAMILY_MATERIALS``); a crew carries the ``materials`` its status reports (a material
  it does not list: none), or, when it reports none at all, enough of everything. Work
  already on site uses nothing more.
* **Work under way**: a crew reporting ``on_site`` at an incident has it pinned (its first
  stop, remaining service time only); ``en_route`` makes it the crew's ``heading_to``.
  The incident's own ``crew_id`` (status on_site/en_route) fills in when the crew has not
  said anything since the incident entered that status. An incident a crew reported
  ``completed`` and that has not changed since is already done.
* **Pins** (dispatcher command): the incident may only go to that crew. The model has no
  per-job crew list, so a pin is a private skill ``pin:{crew_id}`` held by that crew alone,
  which the solver enforces like any other skill. A pin to a crew that is not on shift is
  ignored (the job is planned normally) and said so in the draft's notes; so is a pin
  older than the incident's last (re)opening (it ended with the fix it was for).
* **Backlog**: only the jobs some crew could reach this shift are planned (``shortlist``);
  the rest wait in ``Draft.deferred`` and count as unassigned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from core.errors import NoRoute
from core.schemas import (
    ACTIVE_STATUSES,
    Assignment,
    Command,
    CommandKind,
    CrewPosition,
    CrewState,
    CrewStatus,
    Incident,
    IncidentStatus,
    LineString,
    Priority,
    Stop,
)
from core.settings import DispatchSettings
from dispatch.model import Crew, CrewRoute, Job, Plan, PlannedStop, Problem, TimeWindow
from geo import RoadGraph, Route

__all__ = [
    "FAMILY_MATERIALS",
    "FAMILY_SKILLS",
    "CrewDraft",
    "Draft",
    "JobDraft",
    "Router",
    "Sites",
    "World",
    "assignments",
    "build_problem",
    "empty_assignment",
    "plan_from_assignments",
    "priority_of",
    "same_stops",
    "shortlist",
    "sites",
]

#: The skill a fault family needs when the incident does not name one.
FAMILY_SKILLS: Mapping[str, str] = {
    "road_surface": "roads",
    "lighting": "electrical",
    "water": "water",
    "flooding": "drainage",
    "traffic_signal": "electrical",
    "fallen_tree": "arborist",
    "illegal_dumping": "sanitation",
    "graffiti": "sanitation",
    "damaged_sign": "roads",
}

#: What a fix of a fault family uses up from a crew's truck when the incident does not say.
FAMILY_MATERIALS: Mapping[str, Mapping[str, int]] = {
    "road_surface": {"asphalt_bags": 2},
    "lighting": {"lamps": 1},
    "damaged_sign": {"signs": 1},
}

PIN_SKILL_PREFIX = "pin:"
_OFF_DUTY = frozenset({CrewState.UNAVAILABLE, CrewState.OFF_SHIFT})
_UNDER_WAY = frozenset({IncidentStatus.EN_ROUTE, IncidentStatus.ON_SITE})
_OPENED = frozenset({IncidentStatus.OPEN, IncidentStatus.REOPENED})
# The CrewView field each stand-down command sets.
_STAND_DOWN = {
    CommandKind.CREW_UNAVAILABLE: "unavailable_at",
    CommandKind.CREW_AVAILABLE: "available_at",
}


def _entered_status(inc: Incident) -> datetime:
    """When the incident entered its current status (``updated_at`` moves on every rescore)."""
    times = [t.at for t in inc.history if t.status is inc.status]
    return max(times, default=inc.updated_at)


def _last_opened(inc: Incident) -> datetime:
    """When the incident was last opened or reopened."""
    times = [t.at for t in inc.history if t.status in _OPENED]
    return max(times, default=inc.opened_at)
# Lower bound of each priority class on the 0..100 scale; the score places a job in its band.
_BAND = {Priority.P1: 75, Priority.P2: 50, Priority.P3: 25, Priority.P4: 0}
_BAND_WIDTH = 24
# Shortlisting (see ``shortlist``): each crew considers this many times the jobs its shift
# (up to the horizon: later work is re-planned long before it starts) could hold, counting
# every job as at least MIN_JOB_S (service and driving).
SHORTLIST_FACTOR = 2
SHORTLIST_HORIZON_S = 12 * 3600
MIN_JOB_S = 900
# A leg the road graph cannot drive: longer than any shift, so the solver never uses it.
UNREACHABLE_S = 7 * 24 * 3600


def priority_of(incident: Incident) -> int:
    """The job priority (0..100, higher first): class band, refined by the score."""
    cls = incident.manual_priority or incident.priority
    score = min(max(incident.score, 0.0), 100.0)
    return _BAND[cls] + round(score * _BAND_WIDTH / 100)


def _plan_key(incident: Incident) -> tuple[object, ...] | None:
    """What of an incident the plan depends on; ``None`` when it is not a job.

    Open and assigned look alike here: the dispatcher's own plan turns one into the other,
    and re-planning on that echo would only churn. The score is left out too: aging moves
    it every few minutes within a class, and the timer's re-plan takes that in.
    """
    if incident.status not in ACTIVE_STATUSES:
        return None
    under_way = incident.status in _UNDER_WAY
    return (
        incident.manual_priority or incident.priority,
        incident.lat,
        incident.lon,
        incident.skill,
        incident.family,
        incident.service_s,
        tuple(sorted(incident.materials.items())),
        incident.expected_at,
        incident.status if under_way else "waiting",
        incident.crew_id if under_way else None,
    )


@dataclass
class CrewView:
    """The last word on one crew: status, position, and a dispatcher's stand-down."""

    crew_id: str
    status: CrewStatus | None = None
    position: CrewPosition | None = None
    unavailable_at: datetime | None = None  # the latest crew_unavailable command
    available_at: datetime | None = None  # the latest crew_available command
    off_duty_at: datetime | None = None  # the latest unavailable/off_shift status
    completed: tuple[str, datetime] | None = None

    def _status_key(self) -> tuple[object, ...] | None:
        st = self.status
        if st is None:
            return None
        skills = None if st.skills is None else tuple(sorted(st.skills))
        stock = None if st.materials is None else tuple(sorted(st.materials.items()))
        return (st.status, st.incident_id, skills, st.shift_end, stock)

    @property
    def stood_down(self) -> bool:
        """Whether a ``crew_unavailable`` command still holds.

        It ends with a ``crew_available`` command after it, or once the crew came back on
        duty: an off-duty status after the command, then an on-duty one. Any newer status
        is not enough: a crew app answers the empty plan the stand-down brings with
        ``available``, and finishing the job in hand ends with ``available`` too. Decided
        on times only, so the order commands and statuses are replayed in does not matter.
        """
        down = self.unavailable_at
        if down is None:
            return False
        if self.available_at is not None and self.available_at >= down:
            return False
        st, off = self.status, self.off_duty_at
        back = (
            st is not None
            and off is not None
            and off >= down
            and st.at > off
            and st.status not in _OFF_DUTY
        )
        return not back

    @property
    def off_duty(self) -> bool:
        """Whether the crew cannot be given work now.

        Its last status is unavailable or off shift, or a dispatcher stood it down.
        """
        st = self.status
        return (st is not None and st.status in _OFF_DUTY) or self.stood_down

    @property
    def last_heard(self) -> datetime | None:
        """The time of the crew's latest status or position."""
        times = [m.at for m in (self.status, self.position) if m is not None]
        return max(times, default=None)


@dataclass(frozen=True)
class JobDraft:
    """An incident as a job, before it has a place in the matrix."""

    incident_id: str
    lat: float
    lon: float
    service_s: int
    skills: frozenset[str]
    priority: int
    deadline_s: int | None
    materials: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CrewDraft:
    """A crew on shift, before it has a place in the matrix.

    ``skills`` is ``None`` when the crew did not say (it can do everything).
    """

    crew_id: str
    lat: float
    lon: float
    shift_end_s: int
    skills: frozenset[str] | None
    pinned_job: str | None = None
    heading_to: str | None = None
    materials: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Draft:
    """The world at instant ``at`` as the planner sees it; plan time 0 is ``at``."""

    at: datetime
    jobs: tuple[JobDraft, ...]
    crews: tuple[CrewDraft, ...]
    notes: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Draft({self.at.isoformat()}, jobs={len(self.jobs)}, crews={len(self.crews)})"


@dataclass
class World:
    """Incidents, crews and pins, updated message by message.

    Each ``apply_*`` returns the reason the plan should be redone (``"incident"``,
    ``"crew"``, ``"pin"``) or ``None`` when the message changes nothing the plan uses.
    """

    incidents: dict[str, Incident] = field(default_factory=dict)
    crews: dict[str, CrewView] = field(default_factory=dict)
    pins: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    def _crew(self, crew_id: str) -> CrewView:
        view = self.crews.get(crew_id)
        if view is None:
            view = self.crews[crew_id] = CrewView(crew_id)
        return view

    def apply_incident(self, incident: Incident) -> str | None:
        """A new state of an incident (older versions than the one held are ignored)."""
        held = self.incidents.get(incident.incident_id)
        if held is not None and incident.version < held.version:
            return None
        before = None if held is None else _plan_key(held)
        after = _plan_key(incident)
        if after is None:
            self.incidents.pop(incident.incident_id, None)
            self.pins.pop(incident.incident_id, None)
        else:
            self.incidents[incident.incident_id] = incident
        return "incident" if before != after else None

    def remove_incident(self, incident_id: str) -> str | None:
        """A tombstone: the incident is gone."""
        self.pins.pop(incident_id, None)
        return "incident" if self.incidents.pop(incident_id, None) is not None else None

    def apply_crew_status(self, status: CrewStatus) -> str | None:
        """A crew's new status (older than the one held: ignored)."""
        view = self._crew(status.crew_id)
        if view.status is not None and status.at < view.status.at:
            return None
        before = (view._status_key(), view.stood_down)
        if status.status is CrewState.COMPLETED and status.incident_id:
            view.completed = (status.incident_id, status.at)
        off = view.off_duty_at
        if status.status in _OFF_DUTY and (off is None or status.at > off):
            view.off_duty_at = status.at
        view.status = status
        return "crew" if (view._status_key(), view.stood_down) != before else None

    def apply_crew_position(self, position: CrewPosition) -> str | None:
        """A crew's new position; only a crew's first position changes who can be planned."""
        view = self._crew(position.crew_id)
        if view.position is not None and position.at < view.position.at:
            return None
        first = view.position is None
        view.position = position
        return "crew" if first and view.status is not None else None

    def apply_command(self, command: Command) -> str | None:
        """A dispatcher command; only ``pin`` and ``crew_unavailable`` concern dispatch."""
        if command.kind is CommandKind.PIN and command.incident_id and command.crew_id:
            held = self.pins.get(command.incident_id)
            if held is not None and held[1] > command.at:
                return None
            self.pins[command.incident_id] = (command.crew_id, command.at)
            return "pin"
        if command.kind in _STAND_DOWN and command.crew_id:
            view, name = self._crew(command.crew_id), _STAND_DOWN[command.kind]
            held = getattr(view, name)
            if held is not None and held >= command.at:
                return None
            before = view.stood_down
            setattr(view, name, command.at)
            return "crew" if view.stood_down != before else None
        return None

    def off_duty(self, crew_id: str) -> bool:
        """Whether a known crew cannot be given work now (``CrewView.off_duty``)."""
        view = self.crews.get(crew_id)
        return view is not None and view.off_duty

    def crew_position(self, crew_id: str) -> tuple[float, float] | None:
        """The crew's last known (lat, lon)."""
        view = self.crews.get(crew_id)
        if view is None or view.position is None:
            return None
        return view.position.lat, view.position.lon

    # -- the snapshot the planner works on ---------------------------------------------
    def draft(self, at: datetime, settings: DispatchSettings) -> Draft:
        """Jobs and crews as of ``at`` (see the module docstring for the rules)."""
        notes: list[str] = []
        done = {
            v.completed[0]: v.completed[1] for v in self.crews.values() if v.completed is not None
        }
        incidents = {
            i: inc
            for i, inc in sorted(self.incidents.items())
            if not (i in done and done[i] >= inc.updated_at)
        }

        crews: dict[str, CrewDraft] = {}
        pinned_by: dict[str, str] = {}
        for crew_id, view in sorted(self.crews.items()):
            c = self._crew_draft(view, at, incidents, settings, notes)
            if c is None:
                continue
            if c.pinned_job in pinned_by:  # two crews on one site: the first one has it
                c = _replace(c, pinned_job=None)
            crews[crew_id] = c
            if c.pinned_job is not None:
                pinned_by[c.pinned_job] = crew_id

        # The incident's own crew_id fills in what a crew has not said more recently.
        heading_by = {c.heading_to: c.crew_id for c in crews.values() if c.heading_to}
        for inc in incidents.values():
            if inc.status not in _UNDER_WAY or inc.crew_id not in crews:
                continue
            if inc.incident_id in pinned_by or inc.incident_id in heading_by:
                continue
            c = crews[inc.crew_id]
            st = self.crews[c.crew_id].status
            if st is not None and st.at > _entered_status(inc):
                continue
            if inc.status is IncidentStatus.ON_SITE and c.pinned_job is None:
                crews[c.crew_id] = _replace(c, pinned_job=inc.incident_id, heading_to=None)
                pinned_by[inc.incident_id] = c.crew_id
            elif inc.status is IncidentStatus.EN_ROUTE and c.heading_to is None:
                crews[c.crew_id] = _replace(c, heading_to=inc.incident_id)
                heading_by[inc.incident_id] = c.crew_id

        jobs: list[JobDraft] = []
        pin_skills: dict[str, set[str]] = {}
        for inc in incidents.values():
            job = self._job_draft(inc, at, settings, pinned_by.get(inc.incident_id))
            pin = self.pins.get(inc.incident_id)
            if pin is not None and pin[1] < _last_opened(inc):
                notes.append(
                    f"pin of {inc.incident_id} to {pin[0]} ignored: older than its reopening"
                )
                pin = None
            if pin is not None and inc.incident_id not in pinned_by:
                crew_id = pin[0]
                if crew_id in crews:
                    skill = PIN_SKILL_PREFIX + crew_id
                    job = _replace_job(job, skills=job.skills | {skill})
                    pin_skills.setdefault(crew_id, set()).add(skill)
                else:
                    notes.append(
                        f"pin of {inc.incident_id} to {crew_id} ignored: crew not on shift"
                    )
            jobs.append(job)

        for crew_id, extra in pin_skills.items():
            c = crews[crew_id]
            if c.skills is not None:
                crews[crew_id] = _replace(c, skills=c.skills | frozenset(extra))
            else:
                # "Every skill" must stay every skill, pins included: resolve it now.
                every = {s for j in jobs for s in j.skills if not s.startswith(PIN_SKILL_PREFIX)}
                crews[crew_id] = _replace(c, skills=frozenset(every | extra))
        kept, deferred = shortlist(jobs, list(crews.values()))
        return Draft(at, tuple(kept), tuple(crews.values()), tuple(notes), tuple(deferred))

    def _crew_draft(
        self,
        view: CrewView,
        at: datetime,
        incidents: Mapping[str, Incident],
        settings: DispatchSettings,
        notes: list[str],
    ) -> CrewDraft | None:
        st = view.status
        if st is None or view.off_duty:
            return None
        pinned = heading = None
        if st.incident_id in incidents:
            if st.status is CrewState.ON_SITE:
                pinned = st.incident_id
            elif st.status is CrewState.EN_ROUTE:
                heading = st.incident_id
        # A crew that never said when its shift ends works default_shift_s from when it was
        # last heard of: counted from now, a crew whose app died stayed on shift for ever.
        heard = view.last_heard or at
        shift_end = st.shift_end or heard + timedelta(seconds=settings.default_shift_s)
        shift_end_s = math.floor((shift_end - at).total_seconds())
        if shift_end_s <= 0:
            if pinned is None:
                return None
            # On site past the shift end: the crew finishes the job it is on (the plan's
            # shift stretches to it) and is given nothing after it.
            shift_end_s = 0
        if view.position is not None:
            lat, lon = view.position.lat, view.position.lon
        elif pinned is not None:
            lat, lon = incidents[pinned].lat, incidents[pinned].lon
        else:
            notes.append(f"crew {view.crew_id} left out: no position yet")
            return None
        skills = None if st.skills is None else frozenset(st.skills)
        stock = None if st.materials is None else dict(st.materials)
        return CrewDraft(view.crew_id, lat, lon, shift_end_s, skills, pinned, heading, stock)

    def _job_draft(
        self, inc: Incident, at: datetime, settings: DispatchSettings, pinned_to: str | None
    ) -> JobDraft:
        """The job of an incident; ``pinned_to`` is the crew of the draft working on it."""
        service = inc.service_s if inc.service_s is not None else settings.default_service_s
        materials = dict(inc.materials or FAMILY_MATERIALS.get(inc.family, {}))
        st = self.crews[pinned_to].status if pinned_to is not None else None
        if st is not None and st.status is CrewState.ON_SITE and st.incident_id == inc.incident_id:
            # Work under way: only what is left of it, with what is already unloaded. Only
            # the crew the plan pins it to counts: a crew left out of the plan (stood down,
            # no position) is not doing the work, and a second crew on site does not halve it.
            service -= max(0.0, (at - st.at).total_seconds())
            materials = {}
        skill = inc.skill or FAMILY_SKILLS.get(inc.family)
        return JobDraft(
            incident_id=inc.incident_id,
            lat=inc.lat,
            lon=inc.lon,
            service_s=max(0, round(service)),
            skills=frozenset({skill}) if skill else frozenset(),
            priority=priority_of(inc),
            deadline_s=math.floor((inc.expected_at - at).total_seconds()),
            materials=materials,
        )


def shortlist(
    jobs: Sequence[JobDraft], crews: Sequence[CrewDraft]
) -> tuple[list[JobDraft], list[str]]:
    """The jobs worth planning now, and the ids of those deferred to a later plan.

    A crew can do only so much before its shift ends: about ``shift / service`` jobs. Each
    crew shortlists ``SHORTLIST_FACTOR`` times that many of the jobs it is able to do, most
    urgent first (priority, then deadline); a job nobody shortlisted could not be served
    this shift anyway, and leaving it out keeps a backlog of thousands from swamping the
    solver. Work under way, pinned jobs and jobs no crew is able to do (the solver says
    why) are always kept.
    """
    must = {c.pinned_job for c in crews} | {c.heading_to for c in crews}
    must |= {j.incident_id for j in jobs if any(s.startswith(PIN_SKILL_PREFIX) for s in j.skills)}
    ranked = sorted(
        jobs,
        key=lambda j: (
            -j.priority,
            math.inf if j.deadline_s is None else j.deadline_s,
            j.incident_id,
        ),
    )
    keep = set(must)
    nobody = {j.incident_id for j in jobs}
    for c in crews:
        able = [j for j in ranked if c.skills is None or j.skills <= c.skills]
        nobody.difference_update(j.incident_id for j in able)
        if not able:
            continue
        per_job_s = max(min(j.service_s for j in able), MIN_JOB_S)
        room = math.ceil(min(c.shift_end_s, SHORTLIST_HORIZON_S) / per_job_s) * SHORTLIST_FACTOR
        keep.update(j.incident_id for j in able[:room])
    # Jobs no crew has the skills for cost the solver nothing and get their reason there.
    keep |= nobody
    kept = [j for j in jobs if j.incident_id in keep]
    return kept, [j.incident_id for j in jobs if j.incident_id not in keep]


def _replace(c: CrewDraft, **changes: object) -> CrewDraft:
    doc: dict[str, object] = {**vars(c), **changes}
    return CrewDraft(**doc)  # type: ignore[arg-type]


def _replace_job(j: JobDraft, **changes: object) -> JobDraft:
    doc: dict[str, object] = {**vars(j), **changes}
    return JobDraft(**doc)  # type: ignore[arg-type]


# -- onto the road graph ----------------------------------------------------------------


@dataclass(frozen=True)
class Sites:
    """Where the draft's jobs and crews sit on the road graph.

    ``nodes`` are the unique graph nodes (the matrix's rows and columns, in order);
    ``job_at``/``crew_at`` map an id to its index in ``nodes``. Jobs and crews the graph
    refused (outside the service area) are absent, with a note.
    """

    nodes: tuple[int, ...]
    job_at: Mapping[str, int]
    crew_at: Mapping[str, int]
    notes: tuple[str, ...] = ()


def sites(draft: Draft, graph: RoadGraph) -> Sites:
    """Snap every job and crew of ``draft`` to its nearest graph node."""
    points = [(j.incident_id, j.lat, j.lon) for j in draft.jobs]
    points += [(c.crew_id, c.lat, c.lon) for c in draft.crews]
    notes: list[str] = []
    if not points:
        return Sites((), {}, {})
    snapped = graph.snap([p[1] for p in points], [p[2] for p in points])
    index: dict[int, int] = {}
    at: list[int | None] = []
    for i, (what, _lat, _lon) in enumerate(points):
        if not snapped.ok[i]:
            notes.append(f"{what} left out: {snapped.reason[i]}")
            at.append(None)
            continue
        node = int(snapped.node[i])
        at.append(index.setdefault(node, len(index)))
    n_jobs = len(draft.jobs)
    job_at = {
        j.incident_id: k for j, k in zip(draft.jobs, at[:n_jobs], strict=True) if k is not None
    }
    crew_at = {c.crew_id: k for c, k in zip(draft.crews, at[n_jobs:], strict=True) if k is not None}
    return Sites(tuple(index), job_at, crew_at, tuple(notes))


def build_problem(draft: Draft, where: Sites, durations: NDArray[np.float64]) -> Problem:
    """The ``Problem`` of ``draft`` over ``where.nodes`` with travel times ``durations``.

    ``durations`` is the square matrix between ``where.nodes`` (seconds; ``inf`` where the
    graph has no path, which becomes ``UNREACHABLE_S``).
    """
    matrix = np.where(np.isfinite(durations), durations, UNREACHABLE_S)
    jobs = [
        Job(
            id=j.incident_id,
            location=where.job_at[j.incident_id],
            service_s=j.service_s,
            skills=j.skills,
            priority=j.priority,
            deadline_s=j.deadline_s,
            materials=j.materials,
        )
        for j in draft.jobs
        if j.incident_id in where.job_at
    ]
    known = {j.id for j in jobs}
    every = frozenset(s for j in jobs for s in j.skills if not s.startswith(PIN_SKILL_PREFIX))
    # A crew that does not report its stock is not held back by it: enough for every job.
    plenty: dict[str, int] = {}
    for j in jobs:
        for m, n in j.materials.items():
            plenty[m] = plenty.get(m, 0) + n
    crews = [
        Crew(
            id=c.crew_id,
            start=where.crew_at[c.crew_id],
            shift=TimeWindow(0, c.shift_end_s),
            skills=every if c.skills is None else c.skills,
            capacity=plenty if c.materials is None else c.materials,
            pinned_job=c.pinned_job if c.pinned_job in known else None,
            heading_to=c.heading_to if c.heading_to in known else None,
        )
        for c in draft.crews
        if c.crew_id in where.crew_at
    ]
    return Problem.build(jobs, crews, matrix.tolist())


# -- back to the wire -------------------------------------------------------------------


def _line(coordinates: Sequence[tuple[float, float]]) -> LineString:
    coords = [(float(x), float(y)) for x, y in coordinates]
    if len(coords) == 1:  # a LineString needs two positions
        coords.append(coords[0])
    return LineString(coordinates=coords)


def empty_assignment(
    crew_id: str, plan_id: str, at: datetime, lonlat: tuple[float, float]
) -> Assignment:
    """A plan with nothing to do, its route a point where the crew is."""
    return Assignment(
        crew_id=crew_id, plan_id=plan_id, stops=[], route=_line([lonlat]), created_at=at
    )


class Router(Protocol):
    """What ``assignments`` needs to draw a route (``RoadGraph`` is one)."""

    def route(self, nodes: Sequence[int]) -> Route:
        """The fastest drive through ``nodes`` in order (``NoRoute`` if impossible)."""
        ...


def _route_of(
    graph: Router, nodes: Sequence[int], fallback: Sequence[tuple[float, float]]
) -> tuple[list[tuple[float, float]], list[float] | None]:
    try:
        route = graph.route(nodes)
    except NoRoute:
        return list(fallback), None
    return list(route.coordinates), list(route.leg_travel_time_s)


def assignments(
    draft: Draft,
    where: Sites,
    problem: Problem,
    plan: Plan,
    graph: Router,
    plan_id: str,
) -> dict[str, Assignment]:
    """One ``Assignment`` per crew of ``plan`` (crews without work get an empty one).

    ETAs are absolute: ``draft.at`` plus the planned arrival. The route is the drive on
    the road graph from the crew's node through its stops, starting at the crew's reported
    position; ``leg_eta_s`` holds the driving seconds of the leg into each stop.
    """
    jobs = {j.incident_id: j for j in draft.jobs}
    crews = {c.crew_id: c for c in draft.crews}
    out: dict[str, Assignment] = {}
    for route in plan.routes:
        crew = crews[route.crew_id]
        here = (crew.lon, crew.lat)
        if not route.stops:
            out[crew.crew_id] = empty_assignment(crew.crew_id, plan_id, draft.at, here)
            continue
        start = where.nodes[problem.crew(crew.crew_id).start]
        nodes = [start, *(where.nodes[s.location] for s in route.stops)]
        fallback = [here, *((jobs[s.job_id].lon, jobs[s.job_id].lat) for s in route.stops)]
        coords, legs = _route_of(graph, nodes, fallback)
        if legs is None:
            legs = [_leg_s(problem, a, b) for a, b in _pairs(problem, crew.crew_id, route)]
        if coords and coords[0] != here:
            coords.insert(0, here)
        stops = [
            Stop(
                incident_id=s.job_id,
                eta=draft.at + timedelta(seconds=s.arrival_s),
                lat=jobs[s.job_id].lat,
                lon=jobs[s.job_id].lon,
                service_s=float(problem.job(s.job_id).service_s),
                pinned=s.pinned,
                materials=dict(problem.job(s.job_id).materials),
            )
            for s in route.stops
        ]
        out[crew.crew_id] = Assignment(
            crew_id=crew.crew_id,
            plan_id=plan_id,
            stops=stops,
            route=_line(coords),
            created_at=draft.at,
            leg_eta_s=[round(x, 1) for x in legs],
        )
    return out


def _pairs(problem: Problem, crew_id: str, route: CrewRoute) -> list[tuple[int, int]]:
    locs = [problem.crew(crew_id).start, *(s.location for s in route.stops)]
    return list(pairwise(locs))


def _leg_s(problem: Problem, a: int, b: int) -> float:
    return float(problem.travel_s(a, b))


def same_stops(a: Assignment | None, b: Assignment) -> bool:
    """Whether two plans of a crew visit the same incidents in the same order."""
    if a is None:
        return False
    return [(s.incident_id, s.pinned) for s in a.stops] == [
        (s.incident_id, s.pinned) for s in b.stops
    ]


def plan_from_assignments(published: Iterable[Assignment]) -> Plan:
    """The published plans as a ``Plan``, to warm-start and count moves after a restart.

    Only the order of stops survives (locations and times are placeholders): that is all
    the solver's warm start and ``jobs_moved`` read.
    """
    routes = tuple(
        CrewRoute(
            crew_id=a.crew_id,
            stops=tuple(PlannedStop(s.incident_id, 0, 0, 0, 0, pinned=s.pinned) for s in a.stops),
            start_s=0,
            end_s=0,
            travel_s=0,
        )
        for a in published
    )
    return Plan(routes=routes, unassigned=(), travel_s=0, late_s=0, objective=0, method="published")
