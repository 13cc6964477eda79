"""Browser tests of the web map against the running stack.

``stack`` migrates a fresh database ``cityfix_web_<uid>`` with ``cityfix db migrate`` and
starts ``cityfix api`` on a free port with the Aguascalientes map; tests that need the
pipeline start ``cityfix ingest``, ``cityfix streams worker`` and ``cityfix dispatch run``
through ``pipeline``; ``demo`` serves the same database from a second ``cityfix api`` on
the demo's accelerated clock. Chromium is Debian's (``/usr/bin/chromium``), driven by
Playwright. Screenshots go to ``tests/artifacts/web/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from core.clock import Clock
from core.settings import Settings
from ingest.bridge import end_session
from tests.integration.web.stack import (
    ARTIFACTS,
    CITYFIX,
    REPO,
    Stack,
    cityfix_commands,
    fast_forward,
    free_port,
    wait_until,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
]
CITY_TIME_ZONE = "America/Mexico_City"
DISPATCHER = ("dispatch1", "dispatcher-password-1")
VIEWER = ("viewer1", "viewer-password-1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/web" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def _admin(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(settings.pg.dsn, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """``cityfix api`` on a free port, on a fresh migrated database, with two users."""
    if not (REPO / "api" / "static" / "dist" / "index.html").is_file():
        pytest.fail("the web bundle is not built: run `make web`", pytrace=False)
    uid = uuid.uuid4().hex[:10]
    database = f"cityfix_web_{uid}"
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="cityfix-web-streams-"))
    env = {
        **os.environ,
        "CITYFIX_PG__DATABASE": database,
        "CITYFIX_GEO__CITY": "aguascalientes",
        "CITYFIX_API__PORT": str(port),
        "CITYFIX_API__POST_RATE_PER_MIN": "10000",
        "CITYFIX_API__POST_RATE_PER_ADDRESS_PER_MIN": "10000",
        "CITYFIX_INGEST__CLIENT_ID": f"cityfix-ingest-web-{uid}",
        # A share group of its own: another bridge's lingering session in the default
        # group would otherwise take a share of this test's messages.
        "CITYFIX_INGEST__SHARE_GROUP": f"web-{uid}",
        "CITYFIX_INGEST__METRICS_PORT": str(free_port()),
        "CITYFIX_STREAMS__DATA_DIR": str(data_dir),
        "CITYFIX_STREAMS__WEB_PORT": str(free_port()),
        # A consumer group of its own, started at the end of every topic, so the test's
        # worker neither shares partitions with another worker nor replays old records.
        "CITYFIX_STREAMS__APP_ID": f"cityfix-streams-web-{uid}",
    }
    with _admin(settings) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    pg = settings.pg.model_copy(update={"database": database})
    s = Stack(settings.model_copy(update={"pg": pg}), env, f"http://127.0.0.1:{port}")
    try:
        subprocess.run(
            [str(CITYFIX), "db", "migrate"], cwd=REPO, env=env, check=True, capture_output=True
        )
        s.add_user(DISPATCHER[0], "dispatcher", DISPATCHER[1])
        s.add_user(VIEWER[0], "viewer", VIEWER[1])
        tilejson = _serve(s, "api", port)
        s.bounds = tuple(tilejson["bounds"])
        yield s
    finally:
        s.stop()
        ingest = settings.ingest.model_copy(update={"client_id": env["CITYFIX_INGEST__CLIENT_ID"]})
        end_session(settings.model_copy(update={"ingest": ingest}))
        shutil.rmtree(data_dir, ignore_errors=True)
        with _admin(settings) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


def _serve(s: Stack, name: str, port: int) -> dict:
    """Start ``cityfix api`` for ``s``; its road tiles' TileJSON once it serves them."""
    api = s.start(name, "api", "--port", str(port))

    def roads_ready() -> dict | None:
        assert api.alive(), f"cityfix api exited:\n{api.log()}"
        with s.http() as h:
            r = h.get("/tiles/roads.json")
            return r.json() if r.status_code == 200 else None

    tilejson: dict = wait_until(roads_ready, 90, f"{name} and its road tiles")
    return tilejson


@pytest.fixture(scope="session")
def demo(stack: Stack) -> Iterator[Stack]:
    """The stack's database behind a second ``cityfix api`` on ``cityfix demo``'s clock.

    Sixty times the wall clock from noon (UTC) tomorrow, given as ``CITYFIX_CLOCK__*``
    the way the demo gives it to every part.
    """
    wall_s = time.time()
    sim_s = (wall_s // 86400 + 1) * 86400 + 12 * 3600
    port = free_port()
    env = {
        **stack.env,
        "CITYFIX_API__PORT": str(port),
        "CITYFIX_CLOCK__FACTOR": "60",
        "CITYFIX_CLOCK__WALL_EPOCH_S": repr(wall_s),
        "CITYFIX_CLOCK__SIM_EPOCH_S": repr(sim_s),
    }
    s = Stack(
        stack.settings,
        env,
        f"http://127.0.0.1:{port}",
        stack.bounds,
        clock=Clock(60.0, wall_epoch_s=wall_s, sim_epoch_s=sim_s),
    )
    try:
        _serve(s, "api-demo", port)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def commands() -> set[str]:
    """The subcommands of this checkout's ``cityfix``."""
    return cityfix_commands()


def _require(commands: set[str], *names: str) -> None:
    missing = [n for n in names if n not in commands]
    if missing:
        pytest.skip(f"pipeline part not in this checkout yet: cityfix {', cityfix '.join(missing)}")


@pytest.fixture(scope="session")
def streams(stack: Stack, commands: set[str]) -> Stack:
    """The stack plus ``cityfix ingest`` and ``cityfix streams worker``."""
    _require(commands, "ingest", "streams worker")
    if not any(p.name == "ingest" for p in stack.procs):
        fast_forward(stack.settings, stack.env["CITYFIX_STREAMS__APP_ID"])
        # Wait for the bridge's subscription: a shared subscription with no member yet
        # drops what the test publishes.
        stack.start("ingest", "ingest", "--session-expiry-s", "120").wait_log("subscribed", 60)
        stack.start("streams", "streams", "worker", "--loglevel", "warning")
    return stack


@pytest.fixture(scope="session")
def pipeline(streams: Stack, commands: set[str]) -> Stack:
    """The stack plus ingest, the stream worker and ``cityfix dispatch run``."""
    _require(commands, "dispatch run")
    if not any(p.name == "dispatch" for p in streams.procs):
        # Ready once its world is rebuilt and the first plan is out.
        streams.start("dispatch", "dispatch", "run").wait_log("re-planned", 120)
    return streams


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def _new_page(browser, name: str, **context_args: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, **context_args)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        finally:
            context.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page (own storage); a screenshot of it is kept after the test."""
    with _new_page(browser, request.node.name) as pg:
        yield pg


@pytest.fixture
def city_page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page whose browser keeps the city's time (Aguascalientes: UTC-6, no DST)."""
    with _new_page(browser, request.node.name, timezone_id=CITY_TIME_ZONE) as pg:
        yield pg


def login(page, stack: Stack, user: tuple[str, str] = DISPATCHER, query: str = "") -> None:
    """Open the dispatcher map, sign in through the form, wait until it is ready."""
    page.goto(f"{stack.base_url}/{query}")
    page.get_by_label("Username").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function("window.cityfix && window.cityfix.ready === true", timeout=30_000)
