"""What a dispatcher and a citizen see in the browser, against the running stack."""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import numpy as np
import pytest

from core.schemas import Evidence, Transition
from geo import load_city
from tests.integration.web.conftest import DISPATCHER, VIEWER, login
from tests.integration.web.stack import Stack, incident, wait_until

ROAD_LAYERS_JS = "window.cityfix.ROAD_LAYERS"
MAP_IDLE_JS = "window.cityfix.map.loaded() && window.cityfix.map.areTilesLoaded()"
LIVE_FEED = re.compile(r"/api/live")


def _centre(stack: Stack) -> tuple[float, float]:
    w, s, e, n = stack.bounds
    return (s + n) / 2, (w + e) / 2


def _road_point(stack: Stack, k: int = 0) -> tuple[float, float]:
    """(lat, lon) of the ``k``-th road node nearest the middle of the map."""
    graph = load_city(stack.settings.geo, "aguascalientes")
    lat, lon = _centre(stack)
    d = np.hypot(graph.node_lat - lat, (graph.node_lon - lon) * np.cos(np.radians(lat)))
    i = int(np.argsort(d)[k])
    return float(graph.node_lat[i]), float(graph.node_lon[i])


def _district() -> str:
    """A district of the test's own: other tests' incidents share the topics, and the
    list shows the most urgent few hundred, so each test filters the list to its own."""
    return f"webtest-{uuid.uuid4().hex[:8]}"


def _rendered(page, layers: str) -> int:
    return page.evaluate(f"window.cityfix.map.queryRenderedFeatures({{layers: {layers}}}).length")


def test_the_map_shows_the_road_network_and_the_incidents(stack: Stack, page) -> None:
    lat, lon = _centre(stack)
    district = _district()
    inc = incident(lat, lon, priority="P1", district=district)
    stack.produce_incident(inc)
    tiles: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda r: (
            tiles.append((r.status, r.headers.get("content-type", "")))
            if "/tiles/roads/" in r.url
            else None
        ),
    )

    login(page, stack, query=f"?district={district}")
    page.wait_for_function(MAP_IDLE_JS, timeout=30_000)

    assert any(s == 200 and "vector-tile" in ct for s, ct in tiles), tiles
    assert _rendered(page, ROAD_LAYERS_JS) > 0, "no road drawn"
    sel = f'#incident-list li[data-id="{inc.incident_id}"]'
    page.wait_for_selector(sel, timeout=10_000)
    page.wait_for_function(
        "window.cityfix.map.queryRenderedFeatures({layers: ['incidents', 'clusters']}).length > 0",
        timeout=10_000,
    )
    assert not page.errors, page.errors

    # Keyboard only: the list item opens the panel, Escape closes it.
    page.focus(sel)
    page.keyboard.press("Enter")
    panel = page.locator("#panel")
    panel.wait_for(state="visible")
    assert "Pothole" in panel.inner_text()
    assert panel.locator("a", has_text="photo").get_attribute("href") == (
        "https://example.org/photo.jpg"
    )
    assert "Category severity" in panel.inner_text()
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.dataset.id") == inc.incident_id
    # The list is one tab stop: Tab from the tabs lands on the item last visited.
    page.focus("#tab-incidents")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.id") == inc.incident_id


def test_a_new_incident_appears_live_within_two_seconds(stack: Stack, page) -> None:
    district = _district()
    login(page, stack, query=f"?district={district}")
    page.wait_for_function("window.cityfix.state.live && window.cityfix.state.liveMessages > 0")
    page.evaluate("window.__sameDocument = true")
    lat, lon = _centre(stack)
    inc = incident(
        lat + 0.001,
        lon + 0.001,
        priority="P3",
        category="streetlight_out",
        family="lighting",
        district=district,
    )

    on_kafka = stack.produce_incident(inc)
    page.wait_for_selector(f'#incident-list li[data-id="{inc.incident_id}"]', timeout=2_000)
    seen_after_s = time.monotonic() - on_kafka

    assert seen_after_s < 2.0, seen_after_s
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    state = page.evaluate(f"window.cityfix.state.incidents.get('{inc.incident_id}').priority")
    assert state == "P3"


def test_a_viewer_sees_no_actions(stack: Stack, page) -> None:
    lat, lon = _centre(stack)
    district = _district()
    inc = incident(lat - 0.001, lon, priority="P4", district=district)
    stack.produce_incident(inc)
    login(page, stack, VIEWER, query=f"?district={district}")
    page.locator(f'#incident-list li[data-id="{inc.incident_id}"]').click()
    page.locator("#panel").wait_for(state="visible")
    assert page.locator("#panel form[data-act]").count() == 0
    assert "viewer" in page.locator("#panel").inner_text()


def _row(page, incident_id: str):
    return page.locator(f'#incident-list li[data-id="{incident_id}"]')


def test_a_finished_incident_shows_whether_its_sla_was_met(stack: Stack, page) -> None:
    # Resolved and closed incidents used to count "overdue" for ever.
    lat, lon = _centre(stack)
    district = _district()
    t = datetime.now(UTC)

    def done(hours_ago: list[float], statuses: list[str], due_h_ago: float, dlat: float):
        history = [
            {"status": s, "at": (t - timedelta(hours=h)).isoformat(), "reason": "test"}
            for s, h in zip(statuses, hours_ago, strict=True)
        ]
        return incident(
            lat + dlat,
            lon,
            district=district,
            now=t - timedelta(hours=hours_ago[0]),
            status=statuses[-1],
            expected_at=(t - timedelta(hours=due_h_ago)).isoformat(),
            updated_at=history[-1]["at"],
            history=history,
        )

    met = done([5, 4, 3], ["open", "assigned", "resolved"], 2, 0.0005)
    # Resolved an hour late, closed later still: the resolution is what counts.
    missed = done([6, 4, 1], ["open", "resolved", "closed"], 5, -0.0005)
    # Produced once the map is live: a new client's snapshot may leave finished ones out.
    login(page, stack, query=f"?status=&district={district}")
    page.wait_for_function("window.cityfix.state.live", timeout=30_000)
    stack.produce_incident(met)
    stack.produce_incident(missed)
    _row(page, missed.incident_id).wait_for(timeout=10_000)
    _row(page, met.incident_id).wait_for(timeout=10_000)

    assert _row(page, met.incident_id).locator(".sla").inner_text() == "SLA met"
    late = _row(page, missed.incident_id).locator(".sla")
    assert late.inner_text() == "SLA missed by 1 h 00 min"
    assert "late" in (late.get_attribute("class") or "")
    _row(page, met.incident_id).click()
    assert page.locator("#panel dd.sla").inner_text() == "SLA met"
    assert not page.errors, page.errors


def test_live_shows_only_once_the_feed_answers(stack: Stack, page) -> None:
    # A server that accepts the socket and closes it at once (1011, Kafka down) must be
    # retried ever more slowly, and never shown as live.
    tries: list[float] = []

    def refuse(ws) -> None:  # open, read the token, give up
        tries.append(time.monotonic())
        ws.on_message(lambda _token: ws.close(code=1011, reason="kafka unavailable"))

    page.route_web_socket(LIVE_FEED, refuse)
    login(page, stack)
    page.wait_for_timeout(4_000)
    # 0.5, 1, 2 s apart: four tries in four seconds, not eight.
    assert 2 <= len(tries) <= 5, [round(b - a, 2) for a, b in itertools.pairwise(tries)]
    assert page.evaluate("window.cityfix.state.live") is False
    assert page.locator("#live-state").inner_text() != "live"


def test_live_waits_for_the_first_message(stack: Stack, page) -> None:
    held = []

    def hold(ws) -> None:  # accepted, then silent
        held.append(ws)

    page.route_web_socket(LIVE_FEED, hold)
    login(page, stack)
    page.wait_for_timeout(1_000)
    assert held and page.locator("#live-state").inner_text() != "live"

    held[0].send(json.dumps({"type": "snapshot", "incidents": [], "assignments": []}))
    page.wait_for_function(
        "document.getElementById('live-state').textContent === 'live'", timeout=5_000
    )


def test_bad_live_records_are_skipped_and_what_they_say_stays_text(stack: Stack, page) -> None:
    lat, lon = _centre(stack)
    district = _district()
    relayed = []

    def relay(ws) -> None:
        ws.connect_to_server()
        relayed.append(ws)

    page.route_web_socket(LIVE_FEED, relay)
    login(page, stack, query=f"?status=&district={district}")
    page.wait_for_function("window.cityfix.state.live", timeout=30_000)
    hostile = incident(lat, lon + 0.001, district=district).model_dump(mode="json")
    hostile["priority"] = '<img src="x" onerror="window.__owned = true">'
    good = incident(lat, lon + 0.002, district=district).model_dump(mode="json")
    for data in (
        {"incident_id": "inc-webtest-broken", "status": "open", "district": district},
        {**good, "incident_id": "inc-webtest-nowhere", "lat": None},
        hostile,
        good,
    ):
        relayed[0].send(json.dumps({"type": "incident", "key": data["incident_id"], "data": data}))

    _row(page, good["incident_id"]).wait_for(timeout=10_000)
    assert not page.errors, page.errors
    assert page.evaluate("window.__owned") is None
    assert "<img" in _row(page, hostile["incident_id"]).inner_text()
    known = page.evaluate("[...window.cityfix.state.incidents.keys()]")
    assert "inc-webtest-broken" not in known and "inc-webtest-nowhere" not in known


def test_a_failed_crew_poll_is_shown(stack: Stack, page) -> None:
    page.route(
        "**/api/crews",
        lambda route: route.fulfill(
            status=503, content_type="application/json", json={"detail": "database: no answer"}
        ),
    )
    login(page, stack)
    page.locator("#toast", has_text="Could not load crews: database: no answer").wait_for(
        timeout=10_000
    )


# --- on the demo's clock ------------------------------------------------------------------


def _minutes(text: str) -> int:
    m = re.fullmatch(r"due in (?:(\d+) h )?(\d+) min", text)
    assert m, text
    return int(m[1] or 0) * 60 + int(m[2])


def test_the_sla_counts_down_on_the_city_clock(demo: Stack, city_page) -> None:
    # `cityfix demo` runs the city a day ahead and 60 times faster: an incident due three
    # city hours from now is not "due in 1 d 3 h", and a wall second is a city minute.
    page = city_page
    lat, lon = _centre(demo)
    district = _district()
    inc = incident(lat, lon, district=district, now=demo.clock.now())
    inc = inc.model_copy(update={"expected_at": inc.opened_at + timedelta(hours=3)})
    demo.produce_incident(inc)

    login(page, demo, query=f"?district={district}")
    sla = _row(page, inc.incident_id).locator(".sla")
    sla.wait_for(timeout=10_000)
    first = _minutes(sla.inner_text())
    assert 120 < first <= 180, sla.inner_text()
    page.wait_for_timeout(3_000)
    assert first - _minutes(sla.inner_text()) >= 2, sla.inner_text()

    # Opened "today" on the city's clock: the time alone, no date.
    _row(page, inc.incident_id).click()
    opened = page.locator("#panel dt", has_text="Opened").locator("xpath=following-sibling::dd[1]")
    assert re.fullmatch(r"\d{1,2}:\d{2}(\s?[AP]M)?", opened.inner_text()), opened.inner_text()
    assert not page.errors, page.errors


# --- with the pipeline --------------------------------------------------------------------


def _crew_messages(crew_id: str, lat: float, lon: float, skill: str) -> list[tuple[str, dict]]:
    now = datetime.now(UTC).isoformat()
    return [
        (
            f"cityfix/v1/crews/{crew_id}/status",
            {
                "v": 1,
                "crew_id": crew_id,
                "status": "available",
                "incident_id": None,
                "at": now,
                "skills": [skill],
            },
        ),
        (
            f"cityfix/v1/crews/{crew_id}/position",
            {"v": 1, "crew_id": crew_id, "lat": lat, "lon": lon, "at": now, "heading_deg": 90.0},
        ),
    ]


def _plan_of(page, crew_id: str) -> list[str]:
    return page.evaluate(
        f"(window.cityfix.state.assignments.get('{crew_id}')?.stops ?? []).map(s => s.incident_id)"
    )


def test_pinning_an_incident_changes_the_crews_plan(pipeline: Stack, page) -> None:
    # Other tests' crews live in the same compacted topics: a skill only these two crews
    # have keeps the dispatcher from giving the incident to anyone else.
    uid = uuid.uuid4().hex[:6]
    skill = f"webtest-{uid}"
    crews = [f"crew-web-{uid}-a", f"crew-web-{uid}-b"]
    messages = []
    for k, crew in enumerate(crews):
        messages += _crew_messages(crew, *_road_point(pipeline, 5 + 10 * k), skill)
    pipeline.mqtt_publish(messages)
    lat, lon = _road_point(pipeline, 0)
    district = _district()
    inc = incident(lat, lon, priority="P1", skill=skill, service_s=600.0, district=district)
    inc_id = inc.incident_id
    pipeline.produce_incident(inc)
    login(page, pipeline, DISPATCHER, query=f"?district={district}")
    first = wait_until(
        lambda: next((c for c in crews if inc_id in _plan_of(page, c)), None),
        120,
        "the dispatcher's plan with the incident",
    )
    other = crews[1 - crews.index(first)]
    # The API checks a pin against the database, which the stream worker's sinks fill.
    token = pipeline.token(*DISPATCHER)
    with pipeline.http() as h:
        auth = {"Authorization": f"Bearer {token}"}
        wait_until(
            lambda: (
                h.get(f"/api/incidents/{inc_id}", headers=auth).status_code == 200
                and other in {c["crew_id"] for c in h.get("/api/crews", headers=auth).json()}
            ),
            120,
            "the incident and the crews in the database",
        )
    wait_until(
        lambda: page.evaluate(f"window.cityfix.state.crews.has('{other}')"), 30, "the crew list"
    )
    page.screenshot(path=str(pipeline_artifact("pin-before.png")))

    page.locator(f'#incident-list li[data-id="{inc_id}"]').click()
    pin_form = page.locator("#panel form[data-act=pin]")
    pin_form.locator("select").select_option(other)
    pin_form.get_by_role("button", name="Pin to crew").click()
    page.locator("#toast", has_text="sent").wait_for(timeout=10_000)

    wait_until(lambda: inc_id in _plan_of(page, other), 60, f"{other}'s plan to take {inc_id}")
    assert inc_id not in _plan_of(page, first)
    # The crew list shows the new plan with an ETA.
    page.get_by_role("tab", name="Crews").click()
    page.locator(f'#crew-list li[data-id="{other}"]').click()
    stop = page.locator(f'#crew-list li[data-id="{other}"] li[data-stop="{inc_id}"]')
    stop.wait_for(timeout=10_000)
    assert ":" in stop.locator(".eta").inner_text()


def pipeline_artifact(name: str):
    from tests.integration.web.stack import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def _report_at(page, stack: Stack, category: str, lat: float, lon: float) -> None:
    """The citizen page, a category chosen and the map's pin at (lat, lon)."""
    page.goto(f"{stack.base_url}/report")
    page.wait_for_function("window.cityfix && window.cityfix.ready === true", timeout=30_000)
    page.get_by_label("What is the problem?").select_option(category)
    page.evaluate(f"window.cityfix.map.jumpTo({{center: [{lon}, {lat}], zoom: 17}})")
    page.get_by_role("button", name="Pin the map centre").click()


def test_a_citizen_report_from_the_page_becomes_an_incident(streams: Stack, page) -> None:
    pipeline = streams
    lat, lon = _road_point(pipeline, 3)
    _report_at(page, pipeline, "pothole", lat, lon)
    page.get_by_label("Describe it").fill("Pothole reported from the web page")
    page.get_by_role("button", name="Send report").click()

    item = page.locator("#mine li[data-request]").first
    item.wait_for(timeout=10_000)
    request_id = item.get_attribute("data-request")
    assert request_id
    # The page polls Open311 until the report has joined an incident.
    page.locator(f'#mine li[data-request="{request_id}"]:not([data-incident=""])').wait_for(
        timeout=120_000
    )
    incident_id = page.locator(f'#mine li[data-request="{request_id}"]').get_attribute(
        "data-incident"
    )
    token = pipeline.token(*DISPATCHER)
    with pipeline.http() as h:
        r = h.get(f"/api/incidents/{incident_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert any(e["id"] == request_id for e in r.json()["evidence"])


def test_the_open_panel_follows_new_evidence(streams: Stack, page) -> None:
    # The panel reads the incident's detail once; evidence arriving live must still show.
    lat, lon = _centre(streams)
    district = _district()
    # A skill no crew has: nothing but this test changes the incident.
    inc = incident(lat - 0.002, lon, district=district, skill=f"webtest-{uuid.uuid4().hex[:6]}")
    streams.produce_incident(inc)
    token = streams.token(*DISPATCHER)
    with streams.http() as h:
        wait_until(
            lambda: (
                h.get(
                    f"/api/incidents/{inc.incident_id}",
                    headers={"Authorization": f"Bearer {token}"},
                ).status_code
                == 200
            ),
            60,
            "the incident in the database",
        )
    login(page, streams, query=f"?district={district}")
    with page.expect_response(lambda r: r.url.endswith(f"/api/incidents/{inc.incident_id}")):
        _row(page, inc.incident_id).click()
    panel = page.locator("#panel")
    panel.get_by_text("Evidence (1)").wait_for()

    at = datetime.now(UTC)
    second = Evidence(
        kind="report",
        id=str(uuid.uuid4()),
        source="web-test",
        at=at,
        lat=inc.lat,
        lon=inc.lon,
        category=inc.category,
        description="Now two cars have hit it",
    )
    streams.produce_incident(
        inc.model_copy(
            update={
                "version": 2,
                "evidence": [*inc.evidence, second],
                "reporters": 2,
                "updated_at": at,
                "history": [*inc.history, Transition(status="open", at=at, reason="new report")],
            }
        )
    )
    panel.get_by_text("Evidence (2)").wait_for(timeout=10_000)
    assert "Now two cars have hit it" in panel.inner_text()
    assert "new report" in panel.locator(".history").inner_text()


def test_a_citizen_can_say_when_a_leak_began(stack: Stack, city_page) -> None:
    # A datetime-local field has no zone, and Open311 refuses a datetime without one.
    page = city_page
    lat, lon = _road_point(stack, 4)
    _report_at(page, stack, "water_leak", lat, lon)
    page.get_by_label("When did you first notice it?").fill("2025-01-15T14:30")
    page.get_by_label("Describe it").fill("Water running down the street")
    with page.expect_response("**/report/submit") as answer:
        page.get_by_role("button", name="Send report").click()

    assert answer.value.ok, answer.value.text()
    sent = parse_qs(answer.value.request.post_data or "")
    assert sent["attribute[noticed_at]"] == ["2025-01-15T14:30-06:00"]
    page.locator("#mine li[data-request]").first.wait_for(timeout=10_000)
    assert page.locator("#report-error").inner_text() == ""


@pytest.mark.parametrize("query", ["?wall=1"])
def test_wall_mode_uses_bigger_type(stack: Stack, page, query: str) -> None:
    login(page, stack, query=query)
    size = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert size >= 20
