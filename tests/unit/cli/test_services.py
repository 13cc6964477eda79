"""The local service runner: topic creation waits for a starting broker, PostgreSQL follows
its port setting, and failures end in one clear error."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
from aiokafka.errors import InvalidReplicationFactorError, KafkaConnectionError
from typer.testing import CliRunner

from cli import services
from cli.main import app
from core.errors import ServiceUnavailable
from core.settings import KafkaSettings, PostgresSettings, Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(tmp_path: Path, **sections: object) -> Settings:
    return Settings(services_dir=tmp_path / "services", **sections)


# --- Kafka topics ----------------------------------------------------------------------


def test_topics_wait_for_a_broker_that_is_still_starting():
    calls: list[float] = []

    async def attempt() -> list[str]:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise KafkaConnectionError("Unable to bootstrap from [('kafka', 19092)]")
        return ["incidents", "assignments"]

    created = asyncio.run(
        services._retry_while_starting(attempt, "kafka", timeout_s=5, pause_s=0.01)
    )
    assert created == ["incidents", "assignments"]
    assert len(calls) == 3


def test_a_broker_error_that_is_not_about_starting_is_not_retried():
    calls: list[int] = []

    async def attempt() -> None:
        calls.append(1)
        raise InvalidReplicationFactorError("replication factor 3 > 1 broker")

    with pytest.raises(InvalidReplicationFactorError):
        asyncio.run(services._retry_while_starting(attempt, "kafka", timeout_s=5, pause_s=0.01))
    assert calls == [1]


def test_topics_give_up_with_a_clear_error_when_no_broker_answers(tmp_path):
    port = _closed_port()
    kafka = services.Kafka(_settings(tmp_path, kafka=KafkaSettings(port=port)))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=rf"kafka at 127\.0\.0\.1:{port} did not answer"):
        asyncio.run(kafka.create_topics(timeout_s=2.5))
    # Retried until the deadline, not given up at the first refusal.
    assert 1.5 <= time.monotonic() - started < 10


def test_topics_command_exits_1_with_the_reason(tmp_path):
    port = _closed_port()
    env = {"CITYFIX_KAFKA__PORT": str(port), "CITYFIX_SERVICES_DIR": str(tmp_path)}
    result = CliRunner().invoke(app, ["services", "topics", "--wait", "0"], env=env)
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} did not answer" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- PostgreSQL ------------------------------------------------------------------------

INITDB_CONF = "# written by initdb\nport = 5432\nmax_connections = 100\n"


def _effective(conf: str, key: str) -> str:
    # PostgreSQL takes the last setting of a key.
    values = [
        line.split("=", 1)[1].strip()
        for line in conf.splitlines()
        if line.split("=", 1)[0].strip() == key
    ]
    return values[-1]


def test_a_changed_port_setting_reaches_an_existing_cluster(tmp_path):
    old = services.Postgres(_settings(tmp_path, pg=PostgresSettings(port=5432)))
    old.data.mkdir(parents=True)
    conf = old.data / "postgresql.conf"
    conf.write_text(INITDB_CONF)
    old._configure()
    assert _effective(conf.read_text(), "port") == "5432"

    new = services.Postgres(_settings(tmp_path, pg=PostgresSettings(port=5433)))
    new._configure()
    text = conf.read_text()
    assert _effective(text, "port") == "5433"
    assert text.startswith(INITDB_CONF), "what initdb wrote is kept"
    assert text.count("# --- cityfix ---") == 1

    new._configure()
    assert conf.read_text() == text, "a second start with the same settings changes nothing"


def test_the_cityfix_block_replaces_only_itself():
    first = services.with_cityfix_block(INITDB_CONF, "port = 5432\n")
    second = services.with_cityfix_block(first, "port = 6543\n")
    assert second == INITDB_CONF + "\n# --- cityfix ---\nport = 6543\n"


def test_a_cluster_running_on_another_port_is_reported_not_crashed(tmp_path):
    pg = services.Postgres(_settings(tmp_path, pg=PostgresSettings(port=5433)))
    pg.data.mkdir(parents=True)
    # postmaster.pid of a live process (this one) listening on the old port.
    (pg.data / "postmaster.pid").write_text(f"{os.getpid()}\n{pg.data}\n1700000000\n5432\n")
    with pytest.raises(ServiceUnavailable, match=r"runs on port 5432.*CITYFIX_PG__PORT is 5433"):
        pg.up()
