"""The aging timer and the index of open incidents it reads (``streams.agents``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest

from core import schemas
from core.schemas import Incident, IncidentStatus
from streams.engine import dumps
from tests import factories
from tests.unit.streams.conftest import Event as _Event
from tests.unit.streams.conftest import later, point_along, report_raw

S = IncidentStatus
HOURS = 3600.0


@pytest.fixture
def index(agents, monkeypatch):
    """A fresh index of open incidents (the table itself is shared by every test of the run)."""
    fresh = agents.OpenIncidents()
    monkeypatch.setattr(agents, "open_incidents", fresh)
    return fresh


class _CountingTable:
    """The incidents table, recording every key aging reads from it."""

    def __init__(self, table) -> None:
        self._t = table
        self.read: list[bytes] = []

    def get(self, key, default=None):
        self.read.append(key)
        return self._t.get(key, default)

    def __getattr__(self, name):
        return getattr(self._t, name)


@pytest.fixture
def reads(agents, monkeypatch) -> _CountingTable:
    agents.engine()  # built over the table itself: only aging reads through the wrapper
    counting = _CountingTable(agents.incidents_table)
    monkeypatch.setattr(agents, "incidents_table", counting)
    return counting


async def _to_cells(agents, routed) -> None:
    async with agents.cells.test_context() as agent:
        for key, msg in routed:
            await agent.put(dumps(msg), key=key.encode())


def _ticked(sink) -> list[str]:
    return [m["incident_id"] for _k, m in sink.routes if m.get("t") == "tick"]


def _record(incident_id: str, lat: float, lon: float, **over) -> bytes:
    """An incident's table record, opened two days ago (so aging finds its score due)."""
    at = later(-48 * HOURS).isoformat()
    doc = factories.incident(
        incident_id,
        lat=lat,
        lon=lon,
        opened_at=at,
        updated_at=at,
        expected_at=at,
        score_breakdown={},
        **over,
    )
    return schemas.dumps(Incident.model_validate(doc))


def _put_straight(agents, records: dict[str, bytes]) -> None:
    """Into the table's store as recovery from the changelog puts them: past every agent."""
    for key, value in records.items():
        agents.incidents_table.data[key.encode()] = value


async def test_aging_reads_only_open_incidents_and_follows_them_to_closed_and_reopened(
    agents,
    sink,
    index,
    reads,
    ags,
    sites,
):
    edge, mid = sites[5]
    where = point_along(ags, edge, mid)
    routed = agents.engine().locate([report_raw(*where, at=later(-48 * HOURS))])
    await _to_cells(agents, routed)
    [opened] = [i for i in sink.incidents if i.status == S.OPEN]
    iid = opened.incident_id
    key = iid.encode()
    assert key in index.ids

    # open since two days, scored when it opened: its time-open points are due
    assert await agents.age_incidents() >= 1
    assert reads.read.count(key) == 1 and _ticked(sink).count(iid) == 1

    command = {
        "v": 1,
        "command_id": str(uuid.uuid4()),
        "kind": "close",
        "incident_id": iid,
        "at": later(-47 * HOURS).isoformat(),
        "issued_by": "ana",
    }
    await _to_cells(agents, [agents.engine().route_command(json.dumps(command).encode())])
    assert sink.incidents[-1].status == S.CLOSED
    assert key not in index.ids

    sink.routes.clear()
    reads.read.clear()
    for _ in range(3):
        await agents.age_incidents()
    assert key not in reads.read and iid not in _ticked(sink)  # never read again

    # A report made after the close, within the reopen window: open again, and aged again.
    routed = agents.engine().locate([report_raw(*where, at=later(-46 * HOURS))])
    await _to_cells(agents, routed)
    assert sink.incidents[-1].incident_id == iid and sink.incidents[-1].status == S.REOPENED
    assert key in index.ids
    await agents.age_incidents()
    assert reads.read.count(key) == 1 and _ticked(sink).count(iid) == 1


async def test_every_recovery_rebuilds_the_index_from_the_table(
    agents,
    sink,
    index,
    reads,
    ags,
    sites,
    monkeypatch,
):
    lat, lon = point_along(ags, *sites[6])
    ids = {name: f"road_surface.-901.-902.{name}-{uuid.uuid4().hex[:8]}" for name in "ocdr"}
    _put_straight(
        agents,
        {
            ids["o"]: _record(ids["o"], lat, lon),
            ids["c"]: _record(ids["c"], lat, lon, status="closed"),
            ids["d"]: _record(ids["d"], lat, lon, status="duplicate", merged_into=ids["o"]),
            ids["r"]: _record(ids["r"], lat, lon, status="resolved"),
        },
    )
    monkeypatch.setattr(agents, "held_partitions", lambda: frozenset({0}))

    # Written by no agent of this process: aging knows nothing of them yet.
    await agents.age_incidents()
    assert not {i.encode() for i in ids.values()} & set(reads.read)

    await agents._incidents_recovered()
    await index._scan
    assert index.scanned == frozenset({0})
    assert {ids["o"].encode(), ids["r"].encode()} <= index.ids
    assert not {ids["c"].encode(), ids["d"].encode()} & index.ids

    await agents.age_incidents()
    assert ids["o"] in _ticked(sink)
    assert not {ids["c"].encode(), ids["d"].encode()} & set(reads.read)

    # The same partitions, recovered again after another worker wrote to them meanwhile
    # (replayed into the store past every agent): the new scan finds its incident.
    other = f"road_surface.-901.-902.x-{uuid.uuid4().hex[:8]}"
    _put_straight(agents, {other: _record(other, lat, lon)})
    await agents._incidents_recovered()
    await index._scan
    assert other.encode() in index.ids

    # A recovery that closed an open incident: aging reads it once more, then forgets it.
    _put_straight(agents, {ids["o"]: _record(ids["o"], lat, lon, status="closed")})
    sink.routes.clear()
    await agents.age_incidents()
    assert ids["o"].encode() not in index.ids and ids["o"] not in _ticked(sink)


async def test_a_revocation_stops_a_scan_under_way(agents, index, ags, sites):
    lat, lon = point_along(ags, *sites[7])
    table = _DictTable()
    table.data.update(
        (k.encode(), _record(k, lat, lon))
        for k in (f"road_surface.-905.-906.rv-{i:05d}" for i in range(3 * agents.SCAN_SLICE))
    )
    index._scan = scan = asyncio.ensure_future(index.rebuild(table, frozenset({0})))
    await asyncio.sleep(0)  # the first slice is read
    assert not scan.done()
    await agents._incidents_revoked(agents.app, set())
    with pytest.raises(asyncio.CancelledError):
        await scan
    assert index._scan is None and index.scanned is None


class _DictTable:
    """A table over a plain dict store, as the scan and ``_Keyed`` use one."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "app-incidents-changelog")


async def test_a_scan_yields_to_the_loop_and_the_writes_made_meanwhile_win(
    agents,
    sink,
    index,
    ags,
    sites,
):
    lat, lon = point_along(ags, *sites[7])
    n = 4 * agents.SCAN_SLICE
    prefix = "road_surface.-903.-904.scan"
    keys = [f"{prefix}-{i:05d}" for i in range(n)]
    table = _DictTable()
    table.data.update((k.encode(), _record(k, lat, lon)) for k in keys)
    first, fresh = keys[0], f"{prefix}-new"
    steps = 0

    async def meanwhile(scan: asyncio.Future) -> None:
        nonlocal steps
        while not scan.done():
            steps += 1
            if steps == 1:
                # The scan's first slice has read ``first``, open: the agent closes it now,
                # and opens an incident the scan's copy of the keys does not have.
                closed = _record(first, lat, lon, status="closed")
                await agents._Keyed(table, agents._incidents_written).write(
                    [
                        (first, closed, _Event(first, b"", 0)),
                        (fresh, _record(fresh, lat, lon), _Event(fresh, b"", 0)),
                    ]
                )
                assert first.encode() not in index.ids and fresh.encode() in index.ids
            await asyncio.sleep(0)

    scan = asyncio.ensure_future(index.rebuild(table, frozenset({0})))
    await asyncio.gather(scan, meanwhile(scan))

    # the loop ran other work between the scan's slices
    assert steps >= n // agents.SCAN_SLICE - 1
    assert index.ids == {k.encode() for k in keys[1:]} | {fresh.encode()}
    assert index.scanned == frozenset({0})


async def test_aging_yields_to_the_loop_between_slices(agents, sink, index, ags, sites):
    lat, lon = point_along(ags, *sites[8])
    n = 3 * agents.AGING_SLICE
    prefix = f"road_surface.-905.-906.{uuid.uuid4().hex[:8]}"
    keys = [f"{prefix}-{i:05d}" for i in range(n)]
    _put_straight(agents, {k: _record(k, lat, lon) for k in keys})
    index.ids.update(k.encode() for k in keys)

    steps = 0

    async def meanwhile(aging: asyncio.Future) -> None:
        nonlocal steps
        while not aging.done():
            steps += 1
            await asyncio.sleep(0)

    aging = asyncio.ensure_future(agents.age_incidents())
    await asyncio.gather(aging, meanwhile(aging))
    assert aging.result() == n
    assert steps >= n // agents.AGING_SLICE - 1


async def test_aging_drops_ids_the_worker_no_longer_holds(agents, sink, index):
    gone = f"road_surface.-907.-908.{uuid.uuid4().hex}".encode()
    index.ids.add(gone)
    assert await agents.age_incidents() == 0
    assert gone not in index.ids and _ticked(sink) == []


def test_a_tick_for_an_incident_not_held_or_finished_changes_nothing(agents, ags, sites):
    eng = agents.engine()
    lat, lon = point_along(ags, *sites[9])
    closed_id = f"road_surface.-909.-910.{uuid.uuid4().hex[:8]}"
    closed = _record(closed_id, lat, lon, status="closed", version=3)
    _put_straight(agents, {closed_id: closed})
    missing_id = f"road_surface.-909.-910.{uuid.uuid4().hex[:8]}"
    events = [
        _Event("road_surface.-909.-910", dumps({"t": "tick", "incident_id": i}), 0)
        for i in (missing_id, closed_id)
    ]
    out = agents.handle_batch(eng, events)
    # The closed one is only published again as it is (same version), the other not at all.
    assert [(i.incident_id, i.version, i.status) for i in out.incidents] == [
        (closed_id, 3, S.CLOSED)
    ]
    assert out.routes == []
    assert agents.incidents_table.get(closed_id.encode()) == closed
    assert agents.incidents_table.get(missing_id.encode()) is None


async def test_the_engine_tells_a_finished_record_without_parsing_what_it_wrote(
    agents,
    sink,
    index,
    ags,
    sites,
    monkeypatch,
):
    from streams import engine as engine_module

    eng = agents.engine()
    edge, mid = sites[1]
    routed = eng.locate([report_raw(*point_along(ags, edge, mid), at=later(-1 * HOURS))])
    [inc] = agents.handle_batch(eng, [_Event(k, dumps(m), 0) for k, m in routed]).incidents
    raw = eng.incidents[inc.incident_id]

    parsed: list[bytes] = []
    real_loads = engine_module.orjson.loads

    class _Orjson:
        @staticmethod
        def loads(data):
            parsed.append(data)
            return real_loads(data)

    monkeypatch.setattr(engine_module, "orjson", _Orjson)
    assert eng.finished(inc.incident_id, raw) is False
    assert parsed == []  # the engine's own copy of the bytes it stored
    closed = inc.model_copy(
        update={"status": S.CLOSED, "updated_at": inc.updated_at + timedelta(seconds=1)}
    )
    other = schemas.dumps(closed)  # bytes the engine did not write: read for the status
    assert eng.finished(inc.incident_id, other) is True
    assert parsed == [other]

    # and the batch's write to the table, noted by the index, parses nothing either
    parsed.clear()
    await agents._flush_tables()
    assert inc.incident_id.encode() in index.ids and parsed == []
