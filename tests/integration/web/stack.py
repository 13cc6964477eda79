"""The running stack for the browser tests: ``cityfix`` subprocesses and real clients.

Every process gets the test's environment (its own database ``cityfix_web_<uid>``, the
small Aguascalientes map, free ports) and writes its log under ``tests/artifacts/web/``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import httpx
import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from paho.mqtt.enums import CallbackAPIVersion

from core import topics
from core.clock import WALL_CLOCK, Clock
from core.kafka import skip_to_end
from core.schemas import Evidence, Incident, dumps
from core.settings import Settings
from tests.integration.procs import CITYFIX, REPO, CityfixProcess

ARTIFACTS = REPO / "tests" / "artifacts" / "web"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cityfix_commands() -> set[str]:
    """The subcommands this checkout's ``cityfix`` has (``dispatch run`` as ``dispatch run``)."""
    out: set[str] = set()
    for args in ([], ["dispatch"], ["streams"]):
        text = subprocess.run(
            [str(CITYFIX), *args, "--help"], capture_output=True, text=True, cwd=REPO, check=False
        ).stdout
        for line in text.splitlines():
            parts = line.strip("│ ").split()
            if parts and parts[0].isidentifier():
                out.add(" ".join([*args, parts[0]]))
    return out


def run_async(make: Callable[[], Any], timeout_s: float = 60) -> Any:
    """Run ``make()`` (a coroutine) to completion on a thread of its own.

    Playwright's sync API keeps an event loop running in the test's thread.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result(timeout_s)


def fast_forward(settings: Settings, group: str) -> None:
    """Commit the end of every topic for consumer ``group``: it sees only new records."""
    run_async(lambda: skip_to_end(settings.kafka.bootstrap, group))


class Proc(CityfixProcess):
    """One ``cityfix ...`` subprocess of the stack, logging to ``ARTIFACTS/{name}.log``.

    The log is kept across test sessions; each start adds a header line before its run.
    """

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        super().__init__(args, env, ARTIFACTS / f"{name}.log")
        self.name = name

    def start(self, **popen: Any) -> Self:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {datetime.now(UTC).isoformat()} {' '.join(self.args)}\n".encode())
        return super().start(start_new_session=True, **popen)

    def wait_log(self, text: str, timeout_s: float) -> None:
        """Wait until this run of the process has logged ``text`` (a readiness line)."""

        def seen() -> bool:
            assert self.alive(), f"cityfix {' '.join(self.args)} exited:\n{self.log()}"
            return text in self.output().rsplit("\n=== ", 1)[-1]

        wait_until(seen, timeout_s, f"{self.name} to log {text!r}")


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Stack:
    """The API (and whichever pipeline parts a test started) for one test session."""

    settings: Settings
    env: dict[str, str]
    base_url: str
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    procs: list[Proc] = field(default_factory=list)
    # The clock the API runs on (``CITYFIX_CLOCK__*`` in ``env``).
    clock: Clock = WALL_CLOCK

    def start(self, name: str, *args: str) -> Proc:
        """Start ``cityfix <args>`` with the stack's environment."""
        p = Proc(name, list(args), self.env).start()
        self.procs.append(p)
        return p

    def stop(self) -> None:
        """Stop every process, newest first."""
        for p in reversed(self.procs):
            p.stop()

    def http(self) -> httpx.Client:
        """A client for the API."""
        return httpx.Client(base_url=self.base_url, timeout=10)

    def add_user(self, username: str, role: str, password: str) -> None:
        """``cityfix users add`` against the test database."""
        subprocess.run(
            [
                str(CITYFIX),
                "users",
                "add",
                "--username",
                username,
                "--role",
                role,
                "--password",
                password,
            ],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def token(self, username: str, password: str) -> str:
        """A bearer token from ``POST /api/token``."""
        with self.http() as h:
            r = h.post("/api/token", data={"username": username, "password": password})
            r.raise_for_status()
            return str(r.json()["access_token"])

    # --- the pipeline's inputs, through the real servers ------------------------------

    def produce_incident(self, incident: Incident) -> float:
        """Produce an incident record to Kafka ``incidents``; the time it was acknowledged."""

        async def go() -> float:
            producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(
                    topics.INCIDENTS, dumps(incident), key=incident.incident_id.encode()
                )
                return time.monotonic()
            finally:
                await producer.stop()

        return run_async(go)

    def mqtt_publish(
        self, messages: list[tuple[str, dict[str, Any]]], retain: bool = False
    ) -> None:
        """Publish JSON messages at QoS 1 as the service identity and wait for the PUBACKs."""
        m = self.settings.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"web-test-{uuid.uuid4().hex[:8]}"
        )
        client.username_pw_set(m.service_username, m.service_password.get_secret_value())
        client.connect(m.host, m.port, keepalive=30)
        client.loop_start()
        try:
            infos = [
                client.publish(topic, json.dumps(doc), qos=1, retain=retain)
                for topic, doc in messages
            ]
            for info in infos:
                info.wait_for_publish(10)
                assert info.is_published(), "MQTT publish not acknowledged"
        finally:
            client.loop_stop()
            client.disconnect()


def incident(
    lat: float,
    lon: float,
    *,
    priority: str = "P2",
    category: str = "pothole",
    now: datetime | None = None,
    **extra: Any,
) -> Incident:
    """A valid open incident at ``lat, lon`` with a unique id, as the streams stage makes.

    Opened at ``now`` (the wall clock's by default), due four hours later.
    """
    now = now or datetime.now(UTC)
    report_id = str(uuid.uuid4())
    doc: dict[str, Any] = {
        "incident_id": f"inc-webtest-{uuid.uuid4().hex[:12]}",
        "version": 1,
        "status": "open",
        "category": category,
        "family": "road_surface",
        "priority": priority,
        "score": 52.5,
        "score_breakdown": {"category_severity": 30.0, "reporters": 12.5, "road_class": 10.0},
        "lat": lat,
        "lon": lon,
        "evidence": [
            Evidence(
                kind="report",
                id=report_id,
                source="web-test",
                at=now,
                lat=lat,
                lon=lon,
                category=category,
                description="Deep pothole in the right lane",
                media_url="https://example.org/photo.jpg",
            ).model_dump(mode="json")
        ],
        "reporters": 1,
        "opened_at": now.isoformat(),
        "updated_at": now.isoformat(),
        "expected_at": (now + timedelta(hours=4)).isoformat(),
        "history": [{"status": "open", "at": now.isoformat(), "reason": "first report"}],
        "district": "grid-0-0",
    }
    doc.update(extra)
    return Incident.model_validate(doc)
