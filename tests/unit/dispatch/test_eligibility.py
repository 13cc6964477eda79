"""Who may do a job alone: the edges of the one-stop rule, crew by crew and all at once.

A crew at (0, 0), a job 100 s away taking 100 s; ``eligibility`` must agree with a one-stop
``schedule`` on every case, to the second.
"""

from __future__ import annotations

import pytest

from dispatch import _schedule
from dispatch.model import Crew, Job, TimeWindow
from tests.unit.dispatch.factories import problem

POINTS = [(100, 0), (0, 0), (300, 0)]  # the job, the crew's start, elsewhere


def _allowed(job: Job, crews: list[Crew], extra: list[Job] | None = None) -> list[bool]:
    p = problem(POINTS, [job, *(extra or [])], crews)
    elig = _schedule.eligibility(p)
    by_schedule = [
        _schedule.schedule(p, c, [job.id], elig.origins[i]) is not None
        for i, c in enumerate(p.crews)
    ]
    allowed = elig.allowed.get(job.id, ())
    assert [i in allowed for i in range(len(crews))] == by_schedule
    return by_schedule


def _crew(cid: str = "c", end: int | None = 1, shift_end: int = 10_000, **kw: object) -> Crew:
    return Crew(cid, start=1, shift=TimeWindow(0, shift_end), end=end, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("windows", "ok"),
    [
        ((TimeWindow(50, 100),), True),  # arrives at 100, the window's last second
        ((TimeWindow(50, 99),), False),  # closed a second before
        ((TimeWindow(50, 99), TimeWindow(500, 600)), True),  # waits for the second one
        ((TimeWindow(50, 99), TimeWindow(9_850, 9_900)), False),  # second one too late to get back
        ((TimeWindow(9_700, 9_800),), True),  # done 9,900, back 10,000: the shift end exactly
    ],
)
def test_a_window_is_open_to_its_last_second(windows, ok):
    job = Job("j", location=0, service_s=100, windows=windows)
    assert _allowed(job, [_crew()]) == [ok]


def test_the_leg_back_to_a_closed_end_counts_and_an_open_end_costs_nothing():
    job = Job("j", location=0, service_s=100)
    crews = [
        _crew("exact", shift_end=300),  # there 100, done 200, back 300
        _crew("short", shift_end=299),
        _crew("open", end=None, shift_end=200),  # done 200, nothing to drive back
        _crew("far", end=2, shift_end=399),  # back to (300, 0): 200 s, home 400
    ]
    assert _allowed(job, crews) == [True, False, True, False]


def test_a_pinned_job_past_the_shift_end_leaves_its_crew_nothing_else():
    # 300 s away, ends at 1,300, home at 1,600: the shift stretches to 1,600 for it. A
    # zero-minute job on the same spot would still fit that stretched shift.
    pinned = Job("p", location=2, service_s=1_000)
    job = Job("j", location=2, service_s=0)
    crews = [
        _crew("overrun", shift_end=1_000, pinned_job="p"),
        _crew("fine", shift_end=5_000),
    ]
    assert _allowed(job, crews, extra=[pinned]) == [False, True]
