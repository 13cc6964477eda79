"""The helper process of a parted solve, inside a worker process as the dispatcher runs it."""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from core.settings import DispatchSettings
from dispatch import _schedule, solver
from dispatch.model import Crew, Job, Problem, TimeWindow
from dispatch.solver import _PARTS_MIN_CREWS, solve
from tests.unit.dispatch.factories import matrix


def parted_problem(places: int = 0) -> Problem:
    """20 jobs and enough crews for parts; ``places`` more locations nobody visits."""
    crews = _PARTS_MIN_CREWS + 1
    points = [(100.0 * i, 50.0 * (i % 3)) for i in range(20 + crews + places)]
    jobs = [Job(f"j{i}", location=i, service_s=60) for i in range(20)]
    team = [Crew(f"c{k}", start=20 + k, shift=TimeWindow(0, 8 * 3600)) for k in range(crews)]
    return Problem(jobs=tuple(jobs), crews=tuple(team), durations=matrix(points))


def solve_in_worker() -> int:
    plan = solve(parted_problem(), DispatchSettings(time_limit_s=0.6, search_processes=2))
    return sum(len(r.stops) for r in plan.routes)


def test_a_worker_that_used_the_helper_still_shuts_down() -> None:
    """A process ending joins its children: the helper must be stopped before that."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    assert pool.submit(solve_in_worker).result(timeout=120) == 20
    done = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
    done.start()
    done.join(timeout=60)
    assert not done.is_alive(), "the solve worker hangs on exit (helper still running)"


def helpers_after_prepare() -> tuple[bool, int, int]:
    """Whether nothing started for one process or too few crews; worker and helper pids."""
    solver.prepare(DispatchSettings(search_processes=1), _PARTS_MIN_CREWS)
    solver.prepare(DispatchSettings(search_processes=2), _PARTS_MIN_CREWS - 1)
    none_for_one = solver._helpers is None
    solver.prepare(DispatchSettings(search_processes=2), _PARTS_MIN_CREWS)
    assert solver._helpers is not None
    return none_for_one, os.getpid(), solver._helpers.submit(solver._helper_ready).result(60)


def test_prepare_starts_the_helper_only_when_solves_would_use_one() -> None:
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        none_for_one, worker, helper = pool.submit(helpers_after_prepare).result(timeout=120)
    finally:
        pool.shutdown(wait=True)
    assert none_for_one
    assert helper not in (worker, os.getpid())


def test_a_problem_sent_ahead_is_held_by_the_helper_for_the_parts() -> None:
    """Parts submitted without the problem find it, under the key it was sent with."""
    problem = parted_problem()
    settings = DispatchSettings(time_limit_s=0.6, search_processes=2)
    elig = _schedule.eligibility(problem)
    pool = solver._helper()
    key = solver._send_ahead(pool, problem, elig, settings)
    assert key is not None
    group = list(range(4))
    before: list[list[str]] = [[] for _ in group]
    part = (group, ["j0", "j1", "j2"], before, 0.05)
    held = pool.submit(solver._helper_part, key, None, *part).result(timeout=60)
    assert held is not None and sorted(j for r in held for j in r) == ["j0", "j1", "j2"]
    # Another solve's key: the helper does not hold that problem and says so.
    with pytest.raises(LookupError):
        pool.submit(solver._helper_part, "other", None, *part).result(timeout=60)


def test_parts_send_the_problem_again_when_the_helper_lacks_it() -> None:
    """A key the helper never got: its first part says so, and the next one brings it."""
    problem = parted_problem()
    settings = DispatchSettings(time_limit_s=0.6, search_processes=2)
    elig = _schedule.eligibility(problem)
    pool = solver._helper()
    seen: list[bool] = []
    submit = pool.submit

    def recording(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fn is solver._helper_part:
            seen.append(args[1] is not None)  # whether the part brings the problem
        return submit(fn, *args, **kwargs)

    pool.submit = recording  # type: ignore[method-assign]
    try:
        routes: list[list[str]] = [[] for _ in problem.crews]
        deadline = time.monotonic() + 0.5
        solver._improve_in_parts(problem, elig, settings, routes, deadline, pool, "never-sent")
    finally:
        del pool.submit
    assert seen[0] is False and True in seen
    assert solver._helpers is pool  # not dropped for it


def test_a_problem_sent_ahead_arrives_while_its_cached_properties_fill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The solve goes on with the problem (its cached lookups fill) as it travels.

    Pickled by the pool's own thread, the problem changed under the pickler and never
    arrived, and every part of that solve came back empty.
    """
    settings = DispatchSettings(time_limit_s=0.6, search_processes=2)
    pool = solver._helper()
    monkeypatch.setattr(solver, "_HAND_OFF_S", 0.0)  # go on at once, as a solve may
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the pool's threads run between any two of ours
    try:
        for round_ in range(5):
            problem = parted_problem(places=400)  # big enough to take a while to pickle
            elig = _schedule.eligibility(problem)
            key = solver._send_ahead(pool, problem, elig, settings)
            for name in ("_jobs_by_id", "_crews_by_id", "pinned_to", "matrix"):
                problem.__dict__.pop(name, None)
            for _ in range(2000):  # what a solve does meanwhile: fill them again
                problem.job("j0")
                problem.crew("c0")
                problem.__dict__.pop("_jobs_by_id")
                problem.__dict__.pop("_crews_by_id")
            part = ([0, 1], ["j0", "j1"], [[], []], 0.05)
            held = pool.submit(solver._helper_part, key, None, *part).result(timeout=60)
            assert held is not None, f"round {round_}: the helper never got the problem"
    finally:
        sys.setswitchinterval(switch)
