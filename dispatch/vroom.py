"""VROOM's JSON formats <-> the dispatch model (pure; no I/O).

Input (``problem_from_vroom``): ``jobs`` (``id``, ``location_index``, ``service``,
``skills``, ``priority`` 0..100, ``time_windows``, ``delivery``), ``vehicles`` (``id``,
``start_index``, ``end_index``, ``skills``, ``capacity``, ``time_window``, ``profile``)
and the travel-time matrix in ``matrices.<profile>.durations`` (or the legacy
``matrix``). Integer ids and skills become strings; amount dimension *k* becomes the
material named ``"k"``. Keys that would change the answer and that the model does not
support (shipments, pickups, setup times, breaks, per-vehicle limits and costs,
coordinates without a matrix) are refused with ``InvalidMessage`` naming the field rather
than silently ignored.

Model features VROOM lacks ride in an optional ``"cityfix"`` object: on a job
``{"deadline": seconds}`` (soft SLA), on a vehicle ``{"pinned_job": id, "heading_to": id}``.

Output (``plan_to_vroom``) follows VROOM's solution format: ``code``, ``summary``
(``cost``, ``routes``, ``unassigned``, ``service``, ``duration``, ``waiting_time``,
``priority``, ...), ``routes`` (``vehicle``, ``cost``, ``steps`` of type
``start``/``job``/``end`` with ``arrival``, cumulated travel ``duration``, ``service``,
``waiting_time``, ``load``) and ``unassigned`` (``id``, ``type``, ``location_index`` plus
a ``reason`` that VROOM does not give). ``cost`` is travel time, as in VROOM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import InvalidMessage
from dispatch.model import Crew, Job, Plan, Problem, TimeWindow

__all__ = [
    "UNBOUNDED_S",
    "open_shift_end",
    "plan_to_vroom",
    "problem_from_vroom",
    "problem_to_vroom",
]

UNBOUNDED_S = 10**9
"""The least end of the day of a vehicle without ``time_window`` (about 31 years)."""


def open_shift_end(jobs: Sequence[Job], durations: Sequence[Sequence[int]]) -> int:
    """When the day of a vehicle without ``time_window`` ends: ``[0, this]`` is its window.

    VROOM leaves such a vehicle unbounded. Here the day lasts at least ``UNBOUNDED_S`` and
    past the last job window by enough to do every job and drive every leg, so windows in
    unix time (about 1.7e9 s) stay within reach.
    """
    latest = max((w.end_s for j in jobs for w in j.windows), default=0)
    longest = max((max(row) for row in durations if row), default=0)
    work = sum(j.service_s for j in jobs) + (len(jobs) + 1) * longest
    return max(UNBOUNDED_S, latest + work)

_REFUSED_TOP = ("shipments",)
_REFUSED_JOB = ("pickup", "setup", "amount")
_REFUSED_VEHICLE = (
    "breaks",
    "max_tasks",
    "max_travel_time",
    "max_distance",
    "costs",
    "speed_factor",
    "steps",
)


def _int(value: Any, field: str, minimum: int | None = 0) -> int:
    whole = isinstance(value, int) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )
    if isinstance(value, bool) or not whole:
        raise InvalidMessage(f"expected an integer, got {value!r}", field)
    if minimum is not None and value < minimum:
        raise InvalidMessage(f"must be >= {minimum}", field)
    return int(value)


def _obj(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidMessage("expected an object", field)
    return value


def _list(value: Any, field: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise InvalidMessage("expected an array", field)
    return value


def _window(value: Any, field: str) -> TimeWindow:
    pair = _list(value, field)
    if len(pair) != 2:
        raise InvalidMessage("a time window is [start, end]", field)
    start, end = _int(pair[0], f"{field}[0]"), _int(pair[1], f"{field}[1]")
    if start > end:
        raise InvalidMessage("time window ends before it starts", field)
    return TimeWindow(start, end)


def _amounts(value: Any, field: str) -> dict[str, int]:
    return {str(k): _int(a, f"{field}[{k}]") for k, a in enumerate(_list(value, field))}


def _skills(value: Any, field: str) -> frozenset[str]:
    return frozenset(str(_int(s, f"{field}[{k}]")) for k, s in enumerate(_list(value, field)))


def _refuse(obj: Mapping[str, Any], keys: Sequence[str], field: str) -> None:
    for key in keys:
        value = obj.get(key)
        if value not in (None, 0, [], {}) and not (isinstance(value, list) and not any(value)):
            raise InvalidMessage("not supported by the cityfix model", f"{field}.{key}")


def _matrix(doc: Mapping[str, Any], profile: str) -> list[list[int]]:
    if "matrices" in doc:
        matrices = _obj(doc["matrices"], "matrices")
        entry = _obj(matrices.get(profile), f"matrices.{profile}")
        if "durations" not in entry:
            raise InvalidMessage("missing", f"matrices.{profile}.durations")
        if entry.get("costs") is not None:
            # VROOM would optimise these; this model's costs are the durations.
            raise InvalidMessage("not supported by the cityfix model", f"matrices.{profile}.costs")
        rows, field = entry["durations"], f"matrices.{profile}.durations"
    elif "matrix" in doc:
        rows, field = doc["matrix"], "matrix"
    else:
        raise InvalidMessage("a travel-time matrix is required", "matrices")
    rows = _list(rows, field)
    cell_types = {type(x) for row in rows if isinstance(row, list) for x in row}
    if cell_types <= {int} and all(isinstance(row, list) for row in rows):
        # A table of plain ints (the usual case) is checked in one go: per-cell checks
        # take a fifth of a second on 560 x 560. Anything else gets the per-cell errors.
        try:
            table = np.asarray(rows, dtype=np.int64)
        except (ValueError, OverflowError):
            pass
        else:
            if table.ndim == 2 and len(table) == table.shape[1] and table.min(initial=0) >= 0:
                fast: list[list[int]] = table.tolist()
                return fast
    out = [
        [_int(x, f"{field}[{i}][{k}]") for k, x in enumerate(_list(row, f"{field}[{i}]"))]
        for i, row in enumerate(rows)
    ]
    if any(len(row) != len(out) for row in out):
        raise InvalidMessage("the matrix must be square", field)
    return out


def _index(obj: Mapping[str, Any], key: str, field: str, size: int) -> int:
    if key not in obj:
        raise InvalidMessage("required (only matrix input is supported)", f"{field}.{key}")
    index = _int(obj[key], f"{field}.{key}")
    if index >= size:
        raise InvalidMessage(f"outside the {size}x{size} matrix", f"{field}.{key}")
    return index


def problem_from_vroom(doc: Mapping[str, Any]) -> Problem:
    """A ``Problem`` from a VROOM input document; ``InvalidMessage`` names a bad field."""
    doc = _obj(doc, "$")
    _refuse(doc, _REFUSED_TOP, "$")
    vehicles = _list(doc.get("vehicles"), "vehicles")
    jobs_in = _list(doc.get("jobs", []), "jobs")
    profiles = {
        str(_obj(v, f"vehicles[{i}]").get("profile", "car")) for i, v in enumerate(vehicles)
    }
    if len(profiles) > 1:
        raise InvalidMessage("all vehicles must share one profile", "vehicles.profile")
    matrix = _matrix(doc, profiles.pop() if profiles else "car")
    size = len(matrix)

    jobs: list[Job] = []
    for i, raw in enumerate(jobs_in):
        field = f"jobs[{i}]"
        job = _obj(raw, field)
        _refuse(job, _REFUSED_JOB, field)
        ext = _obj(job.get("cityfix", {}), f"{field}.cityfix")
        deadline = ext.get("deadline")
        priority = _int(job.get("priority", 0), f"{field}.priority")
        if priority > 100:
            raise InvalidMessage("must be in 0..100", f"{field}.priority")
        jobs.append(
            Job(
                id=str(_int(job.get("id"), f"{field}.id", None)),
                location=_index(job, "location_index", field, size),
                service_s=_int(job.get("service", 0), f"{field}.service"),
                skills=_skills(job.get("skills", []), f"{field}.skills"),
                materials=_amounts(job.get("delivery", []), f"{field}.delivery"),
                priority=priority,
                deadline_s=None
                if deadline is None
                else _int(deadline, f"{field}.cityfix.deadline", None),
                windows=tuple(
                    _window(w, f"{field}.time_windows[{k}]")
                    for k, w in enumerate(
                        _list(job.get("time_windows", []), f"{field}.time_windows")
                    )
                ),
            )
        )

    day_end = open_shift_end(jobs, matrix)
    crews: list[Crew] = []
    for i, raw in enumerate(vehicles):
        field = f"vehicles[{i}]"
        veh = _obj(raw, field)
        _refuse(veh, _REFUSED_VEHICLE, field)
        ext = _obj(veh.get("cityfix", {}), f"{field}.cityfix")
        shift = (
            _window(veh["time_window"], f"{field}.time_window")
            if "time_window" in veh
            else TimeWindow(0, day_end)
        )
        refs = {}
        for key in ("pinned_job", "heading_to"):
            if ext.get(key) is not None:
                refs[key] = str(_int(ext[key], f"{field}.cityfix.{key}", None))
        crews.append(
            Crew(
                id=str(_int(veh.get("id"), f"{field}.id", None)),
                start=_index(veh, "start_index", field, size),
                end=_index(veh, "end_index", field, size) if "end_index" in veh else None,
                shift=shift,
                skills=_skills(veh.get("skills", []), f"{field}.skills"),
                capacity=_amounts(veh.get("capacity", []), f"{field}.capacity"),
                pinned_job=refs.get("pinned_job"),
                heading_to=refs.get("heading_to"),
            )
        )
    try:
        return Problem.build(jobs, crews, matrix)
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from exc


def _external(value: str) -> int | str:
    """Back to VROOM's integer ids where the id is one."""
    return int(value) if value.lstrip("-").isdigit() else value


def _sorted_external(values: frozenset[str]) -> list[int | str]:
    numeric = sorted(int(v) for v in values if v.lstrip("-").isdigit())
    return [*numeric, *sorted(v for v in values if not v.lstrip("-").isdigit())]


def _dimensions(problem: Problem) -> list[str]:
    names = {m for j in problem.jobs for m in j.materials} | {
        m for c in problem.crews for m in c.capacity
    }
    if all(n.isdigit() for n in names):
        return [str(k) for k in range(max((int(n) for n in names), default=-1) + 1)]
    return sorted(names)


def problem_to_vroom(problem: Problem) -> dict[str, Any]:
    """The VROOM input document for ``problem`` (inverse of ``problem_from_vroom``)."""
    dims = _dimensions(problem)
    jobs: list[dict[str, Any]] = []
    for j in problem.jobs:
        job: dict[str, Any] = {"id": _external(j.id), "location_index": j.location}
        if j.service_s:
            job["service"] = j.service_s
        if j.skills:
            job["skills"] = _sorted_external(j.skills)
        if dims and j.materials:
            job["delivery"] = [j.materials.get(d, 0) for d in dims]
        if j.priority:
            job["priority"] = j.priority
        if j.windows:
            job["time_windows"] = [[w.start_s, w.end_s] for w in j.windows]
        if j.deadline_s is not None:
            job["cityfix"] = {"deadline": j.deadline_s}
        jobs.append(job)
    day_end = open_shift_end(problem.jobs, problem.durations)
    vehicles: list[dict[str, Any]] = []
    for c in problem.crews:
        veh: dict[str, Any] = {"id": _external(c.id), "start_index": c.start}
        if c.end is not None:
            veh["end_index"] = c.end
        if c.skills:
            veh["skills"] = _sorted_external(c.skills)
        if dims:
            veh["capacity"] = [c.capacity.get(d, 0) for d in dims]
        if (c.shift.start_s, c.shift.end_s) != (0, day_end):
            veh["time_window"] = [c.shift.start_s, c.shift.end_s]
        ext = {
            k: _external(v)
            for k, v in (("pinned_job", c.pinned_job), ("heading_to", c.heading_to))
            if v is not None
        }
        if ext:
            veh["cityfix"] = ext
        vehicles.append(veh)
    return {
        "vehicles": vehicles,
        "jobs": jobs,
        "matrices": {"car": {"durations": [list(row) for row in problem.durations]}},
    }


def plan_to_vroom(problem: Problem, plan: Plan, loading_ms: float = 0.0) -> dict[str, Any]:
    """The VROOM solution document for ``plan`` (``code`` 0)."""
    dims = _dimensions(problem)

    def vec(amounts: Mapping[str, int]) -> list[int]:
        return [amounts.get(d, 0) for d in dims]

    routes: list[dict[str, Any]] = []
    totals = {"service": 0, "duration": 0, "waiting_time": 0, "priority": 0}
    delivery_total = [0] * len(dims)
    for route in plan.routes:
        if not route.stops:
            continue
        crew = problem.crew(route.crew_id)
        load = dict(route.load)
        steps: list[dict[str, Any]] = [
            {
                "type": "start",
                "location_index": crew.start,
                "setup": 0,
                "service": 0,
                "waiting_time": 0,
                "load": vec(load),
                "arrival": route.start_s,
                "duration": 0,
                "violations": [],
            }
        ]
        travel = 0
        here = crew.start
        service = waiting = priority = 0
        for stop in route.stops:
            job = problem.job(stop.job_id)
            travel += problem.travel_s(here, stop.location)
            here = stop.location
            for m, a in job.materials.items():
                load[m] = load.get(m, 0) - a
            jid = _external(stop.job_id)
            steps.append(
                {
                    "type": "job",
                    "location_index": stop.location,
                    "id": jid,
                    "setup": 0,
                    "service": job.service_s,
                    "waiting_time": stop.waiting_s,
                    "job": jid,
                    "load": vec(load),
                    "arrival": stop.arrival_s,
                    "duration": travel,
                    "violations": [],
                }
            )
            service += job.service_s
            waiting += stop.waiting_s
            priority += job.priority
        steps.append(
            {
                "type": "end",
                "location_index": crew.end if crew.end is not None else here,
                "setup": 0,
                "service": 0,
                "waiting_time": 0,
                "load": vec(load),
                "arrival": route.end_s,
                "duration": route.travel_s,
                "violations": [],
            }
        )
        delivered = vec(route.load)
        delivery_total = [a + b for a, b in zip(delivery_total, delivered, strict=True)]
        routes.append(
            {
                "vehicle": _external(route.crew_id),
                "cost": route.travel_s,
                "delivery": delivered,
                "amount": delivered,
                "pickup": [0] * len(dims),
                "setup": 0,
                "service": service,
                "duration": route.travel_s,
                "waiting_time": waiting,
                "priority": priority,
                "steps": steps,
                "violations": [],
            }
        )
        totals["service"] += service
        totals["duration"] += route.travel_s
        totals["waiting_time"] += waiting
        totals["priority"] += priority
    unassigned = [
        {
            "id": _external(u.job_id),
            "type": "job",
            "location_index": problem.job(u.job_id).location,
            "reason": u.reason,
        }
        for u in plan.unassigned
    ]
    return {
        "code": 0,
        "summary": {
            # The crews VROOM lists: an idle crew's drive to its end is not in the cost.
            "cost": sum(r["cost"] for r in routes),
            "routes": len(routes),
            "unassigned": len(unassigned),
            "delivery": delivery_total,
            "amount": delivery_total,
            "pickup": [0] * len(dims),
            "setup": 0,
            "service": totals["service"],
            "duration": totals["duration"],
            "waiting_time": totals["waiting_time"],
            "priority": totals["priority"],
            "violations": [],
            "computing_times": {
                "loading": round(loading_ms),
                "solving": round(plan.solve_ms),
                "routing": 0,
            },
        },
        "unassigned": unassigned,
        "routes": routes,
    }
