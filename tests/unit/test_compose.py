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


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` as {name: host:port}."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_answers_containers_and_the_host_each_on_an_address_they_reach():
    kafka = SERVICES["kafka"]["environment"]
    env = COMPOSE["x-cityfix-env"]
    bound = _listeners(kafka["KAFKA_LISTENERS"])
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        pair.split(":", 1) for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(advertised) <= set(bound) and set(bound) <= set(protocols)
    # The cityfix containers bootstrap from, and are sent back to, kafka:PORT.
    in_network = f"{env['CITYFIX_KAFKA__HOST']}:{env['CITYFIX_KAFKA__PORT']}"
    (inner,) = [name for name, addr in advertised.items() if addr == in_network]
    assert bound[inner].endswith(f":{env['CITYFIX_KAFKA__PORT']}")
    # Clients on the host reach the published port and are sent back to it, not to kafka:...
    (mapping,) = SERVICES["kafka"]["ports"]
    host_ip, host_port, container_port = mapping.split(":")
    (outer,) = [name for name, addr in advertised.items() if addr == f"{host_ip}:{host_port}"]
    assert bound[outer].endswith(f":{container_port}")
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] == inner


def test_kafka_clients_start_once_the_topics_exist():
    # A client first would have the broker auto-create `incidents` without compaction.
    assert "healthcheck" in SERVICES["kafka"]
    assert SERVICES["topics"]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    for name in ("ingest", "streams", "store", "dispatch", "api"):
        deps = SERVICES[name]["depends_on"]
        assert deps["topics"] == {"condition": "service_completed_successfully"}, name
        assert "kafka" not in deps or deps["kafka"]["condition"] != "service_started", name


def test_the_kafka_healthcheck_uses_the_listener_the_containers_use():
    env = COMPOSE["x-cityfix-env"]
    check = " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert f"--bootstrap-server {env['CITYFIX_KAFKA__HOST']}:{env['CITYFIX_KAFKA__PORT']}" in check
