"""One re-plan of the dispatcher service: what it publishes, and what it survives.

The solve runs in-process on the test city (the service would run it in its worker);
Kafka and MQTT are recording fakes, the subject being which plans go out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.errors import KafkaTimeoutError

import geo
from core import topics
from core.clock import Clock
from core.schemas import Assignment, DispatchRun, parse
from core.settings import Settings
from dispatch import _worker
from dispatch.service import Dispatcher
from dispatch.world import World
from tests.unit.dispatch.test_world import (
    CENTRE,
    FAR_AWAY,
    NOW,
    SETTINGS,
    WEST,
    crew,
    incident,
    position,
    status,
)


class Producer:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.sent: list[tuple[str, bytes]] = []
        self.runs: list[DispatchRun] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        if key.decode() in self.refuse:
            raise KafkaTimeoutError()
        self.sent.append((topic, key))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, key))
        self.runs.append(parse(DispatchRun, value))


class Mqtt:
    def __init__(self) -> None:
        self.plans: list[Assignment] = []

    def publish(self, a: Assignment) -> None:
        self.plans.append(a)


def dispatcher(graph: geo.RoadGraph, w: World, producer: Producer | None = None) -> Dispatcher:
    frozen = Clock(factor=1e-9, wall_epoch_s=time.time(), sim_epoch_s=NOW.timestamp())
    d = Dispatcher(Settings(dispatch=SETTINGS), clock=frozen)
    d.world = w
    d._producer = producer or Producer()  # type: ignore[assignment]
    d._mqtt = Mqtt()  # type: ignore[assignment]

    async def in_worker(fn: Any, draft: Any, *args: Any) -> Any:
        assert fn is _worker.plan
        return _worker.plan_draft(draft, graph, *args)

    d._in_worker = in_worker  # type: ignore[method-assign]
    return d


def stops(a: Assignment | None) -> list[str]:
    return [s.incident_id for s in a.stops] if a else []


async def _hole_planned_for_c1(ags: geo.RoadGraph) -> tuple[World, Dispatcher]:
    """A world of one incident and one crew, after the first plan gave it to that crew."""
    w = World()
    w.apply_incident(incident("hole", CENTRE))
    crew(w, "c1", WEST)
    d = dispatcher(ags, w)
    await d._replan("start")
    assert stops(d.published["c1"]) == ["hole"]
    return w, d


async def test_a_crew_that_drove_off_the_map_loses_the_jobs_given_to_another(
    ags: geo.RoadGraph,
) -> None:
    w, d = await _hole_planned_for_c1(ags)

    w.apply_crew_position(position("c1", FAR_AWAY))  # still on shift, no longer on the graph
    crew(w, "c2", WEST)
    await d._replan("crew")

    assert stops(d.published["c2"]) == ["hole"]
    assert stops(d.published["c1"]) == [], "the job is on one crew's plan only"
    assert stops(d._mqtt.plans[-1]) == [] and d._mqtt.plans[-1].crew_id == "c1"  # type: ignore[union-attr]


async def test_a_plan_kafka_refuses_to_queue_is_left_out_and_the_others_go(
    ags: geo.RoadGraph,
) -> None:
    w = World()
    w.apply_incident(incident("hole", CENTRE))
    crew(w, "c1", WEST)
    crew(w, "c2", CENTRE)
    producer = Producer(refuse={"c1"})
    d = dispatcher(ags, w, producer)

    await d._replan("start")

    assert set(d.published) == {"c2"}
    assert (topics.ASSIGNMENTS, b"c2") in producer.sent


async def test_a_failing_plan_is_logged_and_the_service_goes_on(
    ags: geo.RoadGraph, caplog: Any
) -> None:
    w = World()
    crew(w, "c1", WEST)
    d = dispatcher(ags, w)

    async def broken(*_: Any) -> Any:
        raise ValueError("a defect in the planner")

    d._in_worker = broken  # type: ignore[method-assign]
    await d._replan("timer")  # does not raise

    assert d.runs == 0 and "re-plan failed" in caplog.text


async def test_the_run_record_counts_every_job_and_every_one_left_out(
    ags: geo.RoadGraph,
) -> None:
    w = World()
    w.apply_incident(incident("hole", CENTRE))
    w.apply_incident(incident("elsewhere", FAR_AWAY))  # refused at snapping
    crew(w, "c1", WEST)
    producer = Producer()
    d = dispatcher(ags, w, producer)

    await d._replan("start")

    [run] = producer.runs
    assert (run.jobs, run.crews, run.unassigned) == (2, 1, 1)


async def test_a_crew_that_goes_off_shift_during_the_solve_is_not_sent_its_plan(
    ags: geo.RoadGraph,
) -> None:
    w, d = await _hole_planned_for_c1(ags)
    w.apply_incident(incident("leak", WEST))
    solve = d._in_worker

    async def off_shift_meanwhile(fn: Any, draft: Any, *args: Any) -> Any:
        outcome = await solve(fn, draft, *args)  # planned with c1 on shift
        w.apply_crew_status(status("c1", "off_shift", at=NOW))
        return outcome

    d._in_worker = off_shift_meanwhile  # type: ignore[method-assign]
    await d._replan("incident")

    sent = d._mqtt.plans[-1]  # type: ignore[attr-defined]
    assert sent.crew_id == "c1" and stops(sent) == [], "its stops are taken back"
    assert stops(d.published["c1"]) == []
