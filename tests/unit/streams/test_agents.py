"""The Faust agents, driven through ``agent.test_context()`` (no Kafka)."""

from __future__ import annotations

import pytest

from core.settings import Settings
from streams.engine import dumps
from tests.unit.streams.conftest import later, point_along, report_raw


class RecordingSink:
    """Collects what the agents would send to Kafka and MQTT."""

    def __init__(self) -> None:
        self.incidents = []
        self.routes = []
        self.statuses = []
        self.dead = []

    async def incident(self, inc) -> None:
        self.incidents.append(inc)

    async def route(self, key, msg) -> None:
        self.routes.append((key, msg))

    async def dead_letter(self, source, payload, rejected) -> None:
        self.dead.append(rejected)

    def status(self, status) -> None:
        self.statuses.append(status)


@pytest.fixture(scope="module")
def agents(geo_settings, tmp_path_factory):
    from streams import app as streams_app

    base = Settings()
    settings = base.model_copy(
        update={
            "geo": geo_settings,
            "streams": base.streams.model_copy(
                update={"store": "memory://", "data_dir": tmp_path_factory.mktemp("streams")}
            ),
        }
    )
    streams_app.configure(settings)
    from streams import agents

    return agents


@pytest.fixture
def sink(agents, monkeypatch) -> RecordingSink:
    rec = RecordingSink()
    monkeypatch.setattr(agents, "sink", rec)
    return rec


async def test_the_cell_agent_opens_an_incident_and_the_next_report_joins_it(
    agents, sink, ags, sites
):
    edge, mid = sites[0]
    raws = [report_raw(*point_along(ags, edge, mid + d), at=later(d)) for d in (0, 4)]
    routed = agents.engine().locate(raws)
    async with agents.cells.test_context() as agent:
        for key, msg in routed:
            await agent.put(dumps(msg), key=key.encode())

    first, second = sink.incidents
    assert first.incident_id == second.incident_id
    assert (first.version, second.version) == (1, 2)
    assert len(second.evidence) == 2 and second.reporters == 2
    assert [s.incident_id for s in sink.statuses] == [first.incident_id] * 2
    assert agents.incidents_table.get(first.incident_id.encode()) is not None


async def test_the_locate_agent_routes_reports_to_their_home_cell(agents, sink, ags, sites):
    edge, mid = sites[1]
    raw = report_raw(*point_along(ags, edge, mid))[1]
    outside = report_raw(40.0, -3.7)[1]
    async with agents.locate_reports.test_context() as agent:
        await agent.put(raw)
        await agent.put(outside)
    [(key, msg)] = sink.routes
    assert key.startswith("road_surface.") and msg["t"] == "obs"
    [rejected] = sink.dead
    assert "outside the service area" in rejected.reason
