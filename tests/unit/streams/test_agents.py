"""The Faust agents, driven through ``agent.test_context()`` (no Kafka)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from streams.engine import dumps
from tests.unit.streams.conftest import Event as _Event
from tests.unit.streams.conftest import later, point_along, report_raw


async def test_the_cell_agent_opens_an_incident_and_the_next_report_joins_it(
    agents, sink, ags, sites
):
    edge, mid = sites[0]
    raws = [report_raw(*point_along(ags, edge, mid + d), at=later(d)) for d in (0, 4)]
    routed = agents.engine().locate(raws)
    async with agents.cells.test_context() as agent:
        for key, msg in routed:
            await agent.put(dumps(msg), key=key.encode())

    # One batch or two, the last record of the one incident holds both reports.
    assert len({i.incident_id for i in sink.incidents}) == 1
    last = sink.incidents[-1]
    assert last.version == 2 and len(last.evidence) == 2 and last.reporters == 2
    assert {s.request_id for s in sink.statuses} == {e.id for e in last.evidence}
    assert {s.incident_id for s in sink.statuses} == {last.incident_id}
    assert agents.incidents_table.get(last.incident_id.encode()) is not None
    # every table change is logged, to the partition of the cell message that made it
    logged = {(t.rsplit("-", 2)[-2], k.decode()) for t, k, _p in sink.changelogs}
    assert ("incidents", last.incident_id) in logged
    assert {("seen", e.id) for e in last.evidence} <= logged


async def test_a_batch_publishes_each_incident_once_in_its_final_state(agents, sink, ags, sites):
    edge, mid = sites[2]
    raws = [report_raw(*point_along(ags, edge, mid + d), at=later(d)) for d in (0, 3, 6)]
    routed = agents.engine().locate(raws)
    out = agents.handle_batch(agents.engine(), [_Event(k, dumps(m), 0) for k, m in routed])
    assert [i.version for i in out.incidents] == [1, 2, 3]
    [inc] = agents.coalesce(out).incidents
    assert inc.version == 3 and inc.reporters == 3


class _PartitionedTable(dict):
    """Stands in for a keyed table: records the partition every batch write went to."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []

    async def write(self, items) -> None:
        from streams.agents import _GONE

        for key, value, event in items:
            self.writes.append((key, event.message.partition))
            if value is _GONE:
                self.pop(key, None)
            else:
                self[key] = value


async def test_the_overlay_writes_each_key_once_with_its_last_writers_partition(agents):
    from streams.agents import _AsEvent, _Overlay

    table = _PartitionedTable()
    table["cell-b"] = b"old"
    overlay = _Overlay(table)
    a, b = _Event("c1", b"", 3), _Event("c2", b"", 5)
    with _AsEvent(a):
        overlay["cell-a"] = b"1"
        overlay["cell-a"] = b"2"
    with _AsEvent(b):
        del overlay["cell-b"]
        overlay["cell-c"] = b"y"
    assert overlay["cell-a"] == b"2" and "cell-b" not in overlay and overlay.get("cell-b") is None
    assert table == {"cell-b": b"old"}
    assert await overlay.flush() == 3
    assert table == {"cell-a": b"2", "cell-c": b"y"}
    assert sorted(table.writes) == [("cell-a", 3), ("cell-b", 5), ("cell-c", 5)]


def test_settle_heap_freezes_the_loaded_objects_and_makes_young_collections_rarer(agents) -> None:
    import gc

    from streams import app as streams_app

    before = gc.get_threshold()
    try:
        gc.unfreeze()
        streams_app.settle_heap()
        assert gc.get_freeze_count() > 0
        assert all(now > was for now, was in zip(gc.get_threshold(), before, strict=True))
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _RocksPartitions:
    """What ``_write_batches`` uses of Faust's RocksDB store, over real rocksdict databases."""

    use_rocksdict = True

    def __init__(self, root) -> None:
        import rocksdict

        self._root, self._dbs, self._key_index = root, {}, {}
        self._options = rocksdict.Options(raw_mode=True)

    def _db_for_partition(self, partition: int):
        import rocksdict

        if partition not in self._dbs:
            path = str(self._root / f"p{partition}")
            self._dbs[partition] = rocksdict.Rdict(path, options=self._options)
        return self._dbs[partition]


def test_batched_rocksdb_writes_land_in_each_events_partition(agents, tmp_path):
    store = _RocksPartitions(tmp_path)
    store._db_for_partition(1)[b"gone"] = b"old"
    agents._write_batches(
        store,
        [
            (b"a", b"1", _Event("a", b"", 0)),
            (b"b", b"2", _Event("b", b"", 1)),
            (b"gone", None, _Event("gone", b"", 1)),
            (b"a", b"3", _Event("a", b"", 0)),  # the last write of a key wins
        ],
    )
    p0, p1 = store._db_for_partition(0), store._db_for_partition(1)
    assert p0.get(b"a") == b"3" and p0.get(b"b") is None
    assert p1.get(b"b") == b"2" and p1.get(b"gone") is None
    assert store._key_index == {b"a": 0, b"b": 1}
    for db in (p0, p1):
        db.close()


async def test_a_crew_plan_assigns_the_incidents_that_entered_it_and_is_kept(
    agents, sink, ags, sites
):
    import json

    from streams import dedup

    edge, mid = sites[3]
    lat, lon = point_along(ags, edge, mid)
    [(cell, _obs)] = agents.engine().locate([report_raw(lat, lon)])
    inc_id = dedup.incident_id_for(cell, "r-plan-1")
    at = later(60).isoformat()
    plan = {
        "crew_id": "crew-7",
        "plan_id": "p1",
        "stops": [{"incident_id": inc_id, "eta": at, "lat": lat, "lon": lon}],
        "route": {"type": "LineString", "coordinates": [[lon, lat], [lon, lat]]},
        "created_at": at,
    }
    async with agents.plans.test_context() as agent:
        await agent.put(json.dumps(plan).encode(), key=b"crew-7")

    assigned = [(k, m) for k, m in sink.routes if m.get("t") == "assign"]
    assert [(k, m["incident_id"], m["crew_id"]) for k, m in assigned] == [
        (cell, inc_id, "crew-7")
    ]
    assert agents.plans_table.get(b"crew-7") == dumps([inc_id])
    assert [k for t, k, _p in sink.changelogs if t.endswith("-crew-plans-changelog")] == [
        b"crew-7"
    ]


class _Stopped(Exception):
    """What the worker's exit is replaced with here."""


@pytest.fixture
def fatal(agents, monkeypatch) -> list[str]:
    calls: list[str] = []

    def stop(what: str, error: BaseException | None = None):
        calls.append(what)
        raise _Stopped(what)

    monkeypatch.setattr(agents, "_fatal", stop)
    return calls


async def test_a_plan_whose_messages_cannot_be_sent_is_not_kept(agents, sink, fatal, monkeypatch):
    import json

    async def refuse(key, msg):
        raise RuntimeError("broker gone")

    monkeypatch.setattr(sink, "route", refuse)
    at = later(60).isoformat()
    plan = {
        "crew_id": "crew-8",
        "plan_id": "p8",
        "stops": [{"incident_id": "c.1.2.r-x", "eta": at, "lat": 0.0, "lon": 0.0}],
        "route": {"type": "LineString", "coordinates": [[0.0, 0.0], [0.0, 0.0]]},
        "created_at": at,
    }
    with pytest.raises(_Stopped):
        async with agents.plans.test_context() as agent:
            await agent.put(json.dumps(plan).encode(), key=b"crew-8")
    # Not kept: the replay after the restart finds the plan new and sends the messages.
    assert fatal == ["crew plan"] and agents.plans_table.get(b"crew-8") is None


async def test_a_cell_batch_that_cannot_be_delivered_stops_the_worker(
    agents, sink, fatal, monkeypatch, ags, sites
):
    async def refuse(inc, encoded=None):
        raise RuntimeError("record too large")

    monkeypatch.setattr(sink, "incident", refuse)
    edge, mid = sites[4]
    routed = agents.engine().locate([report_raw(*point_along(ags, edge, mid))])
    with contextlib.suppress(_Stopped):  # the agent crashes; how it surfaces varies
        async with agents.cells.test_context() as agent:
            for key, msg in routed:
                await agent.put(dumps(msg), key=key.encode())
            for _ in range(100):
                if fatal:
                    break
                await asyncio.sleep(0.02)
    assert fatal == ["cell batch"]


class _Producer:
    """Takes records and hands back the futures Kafka's answers would resolve."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future] = []

    async def send(self, topic, key, value, partition, timestamp, headers):
        fut = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut


@pytest.mark.parametrize("how", ["incident", "route", "changelog", "dead_letter"])
async def test_a_record_kafka_refuses_stops_the_worker_before_a_commit(
    agents, fatal, monkeypatch, how
):
    from types import SimpleNamespace

    from streams.engine import Rejected

    producer = _Producer()
    monkeypatch.setattr(agents, "app", SimpleNamespace(producer=producer, conf=agents.app.conf))
    real = agents.Sink()
    sends = {
        "incident": lambda: real.incident(SimpleNamespace(incident_id="c.1.2.r-x"), b"{}"),
        "route": lambda: real.route("c.1.2", {"t": "tick", "incident_id": "c.1.2.r-x"}),
        "changelog": lambda: real.changelog("app-incidents-changelog", b"k", b"v", 0),
        "dead_letter": lambda: real.dead_letter("raw.reports", b"{", Rejected("bad json")),
    }
    await sends[how]()
    ok = await real.route("c.1.3", {"t": "tick", "incident_id": "c.1.3.r-y"})
    ok.set_result(None)
    await asyncio.sleep(0)
    assert fatal == []  # a record Kafka took changes nothing

    producer.futures[0].set_exception(RuntimeError("delivery timed out"))
    # What a commit waits on (the producer's flush) wakes later than the record's callbacks.
    flush = asyncio.ensure_future(asyncio.wait([producer.futures[0]]))
    await asyncio.sleep(0)
    assert fatal == ["record send"] and not flush.done()
    await flush
