"""docker-compose.yml runs the same stack the settings describe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from core.settings import ApiSettings, KafkaSettings, MqttSettings, PostgresSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _published_port(service: str) -> int:
    (mapping,) = SERVICES[service]["ports"]
    return int(mapping.rsplit(":", 1)[-1])


def test_servers_publish_the_default_ports_of_the_settings():
    # The defaults, not this shell's overrides: compose publishes the usual ports.
    assert _published_port("mosquitto") == MqttSettings().port
    assert _published_port("kafka") == KafkaSettings().port
    assert _published_port("timescaledb") == PostgresSettings().port
    assert _published_port("api") == ApiSettings().port


def test_every_cityfix_variable_is_a_real_setting(monkeypatch):
    env = COMPOSE["x-cityfix-env"]
    for key, value in env.items():
        assert key.startswith("CITYFIX_")
        monkeypatch.setenv(key, str(value))
    s = Settings()
    for key, value in env.items():
        node: object = s
        for part in key.removeprefix("CITYFIX_").lower().split("__"):
            assert hasattr(node, part), f"{key} is not a setting"
            node = getattr(node, part)
        raw = node.get_secret_value() if hasattr(node, "get_secret_value") else node
        assert str(raw) == str(value), key
    assert s.mqtt.host == "mosquitto" and s.kafka.host == "kafka" and s.pg.host == "timescaledb"


def test_database_credentials_match_the_timescaledb_image():
    env = COMPOSE["x-cityfix-env"]
    pg = SERVICES["timescaledb"]["environment"]
    assert pg["POSTGRES_USER"] == env["CITYFIX_PG__USER"]
    assert pg["POSTGRES_PASSWORD"] == env["CITYFIX_PG__PASSWORD"]
    assert pg["POSTGRES_DB"] == env["CITYFIX_PG__DATABASE"]
    assert SERVICES["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:3.9")
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto")


@pytest.mark.parametrize("name", [n for n, svc in SERVICES.items() if "command" in svc])
def test_each_service_command_exists_in_the_cli(name):
    command = SERVICES[name]["command"]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"`cityfix {' '.join(command)}`: {result.output}"


def test_database_users_start_once_the_schema_is_migrated():
    # Started only after `db migrate` exited 0, which starts once the server answers: the
    # web service and the store read tables the migrations create.
    assert SERVICES["migrate"]["depends_on"]["timescaledb"] == {"condition": "service_healthy"}
    assert "healthcheck" in SERVICES["timescaledb"]
    for name in ("api", "streams", "store"):
        deps = SERVICES[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
