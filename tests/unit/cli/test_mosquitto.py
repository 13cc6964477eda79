"""MQTT identities: an unchanged set-up is left alone, and a broker that cannot be told
about a change is named, with what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from cli import mosquitto
from cli.main import app
from cli.services import Mosquitto
from core.settings import MqttSettings, Settings

needs_passwd = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd (Debian mosquitto) missing"
)

# Written by mosquitto_passwd 2.0: alice / s3cret (PBKDF2, the default), bob / pw2 (-H sha512).
PASSWD = (
    "alice:$7$101$gE4+oT3nVviEZ4IG$/3IldE0tpUiutGKFpd9Hl0QxSydqWWr/58otm1z75M45y3T+VEGYkB2V8F4aI7"
    "CtLvD5jqAVS9bj9UYQeLyL6Q==\n"
    "bob:$6$54K+moahpy0mXoir$iFYrcB9rJgUiOI1A9pvaJ9jHY6aWBuMi9uuJ1CbSaX2rsrl4zfxtfrxRqIibc4KRT+V9"
    "lPQOvoR3UsE4kbnjqQ==\n"
)


def _settings(tmp_path: Path, password: str = "dev-service-secret") -> Settings:
    return Settings(
        services_dir=tmp_path / "services",
        mqtt=MqttSettings(service_password=SecretStr(password)),
    )


def _files(settings: Settings) -> dict[str, bytes]:
    d = mosquitto.passwd_path(settings).parent
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_stored_passwords_are_recognised_in_both_mosquitto_hash_formats(tmp_path):
    s = _settings(tmp_path)
    mosquitto.passwd_path(s).write_text(PASSWD)
    assert mosquitto._password_matches(s, "alice", "s3cret")
    assert mosquitto._password_matches(s, "bob", "pw2")
    assert not mosquitto._password_matches(s, "alice", "pw2")
    assert not mosquitto._password_matches(s, "carol", "s3cret")


@needs_passwd
def test_a_second_set_up_with_the_same_settings_changes_no_file(tmp_path):
    s = _settings(tmp_path)
    assert mosquitto.ensure_service_identity(s) is True
    before = _files(s)
    assert mosquitto.ensure_service_identity(s) is False
    assert _files(s) == before


@needs_passwd
def test_a_new_service_password_is_a_change_the_broker_must_reload(tmp_path):
    mosquitto.ensure_service_identity(_settings(tmp_path, "old-secret"))
    s = _settings(tmp_path, "new-secret")
    assert mosquitto.ensure_service_identity(s) is True
    assert mosquitto._password_matches(s, s.mqtt.service_username, "new-secret")


@needs_passwd
def test_services_up_reconfigures_a_running_broker_only_on_a_change(tmp_path):
    broker = Mosquitto(_settings(tmp_path))
    assert broker._configure() is True
    assert broker._configure() is False
    mosquitto.add_identity(broker.s, mosquitto.IdentityKind.SENSOR, "s-1", "pw", reload=False)
    assert broker._configure() is False, "a device's rights are not the service's change"


def test_no_local_broker_means_no_reload(tmp_path):
    s = _settings(tmp_path)
    assert mosquitto.reload_broker(s) is False
    # A pid file left by a broker that has exited.
    dead = subprocess.Popen(["true"])
    dead.wait()
    mosquitto.broker_pid_path(s).write_text(f"{dead.pid}\n")
    assert mosquitto.reload_broker(s) is False


@needs_passwd
def test_devices_add_and_revoke_say_when_the_broker_was_not_reloaded(tmp_path):
    env = {"CITYFIX_SERVICES_DIR": str(tmp_path / "services")}
    runner = CliRunner()
    added = runner.invoke(app, ["devices", "add", "--kind", "sensor", "--id", "s-1"], env=env)
    assert added.exit_code == 0, added.output
    warning = " ".join(added.stderr.split())
    assert "NOT reloaded" in warning and "docker compose kill -s HUP mosquitto" in warning
    password = added.stdout.strip().splitlines()[-1]
    assert mosquitto._password_matches(_settings(tmp_path), "s-1", password)

    revoked = runner.invoke(app, ["devices", "revoke", "s-1"], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert "NOT reloaded" in revoked.stderr
    assert "s-1" not in mosquitto.acl_path(_settings(tmp_path)).read_text()


@needs_passwd
def test_devices_add_reports_the_reload_of_the_local_broker(tmp_path):
    env = {"CITYFIX_SERVICES_DIR": str(tmp_path / "services")}
    # A stand-in for the local broker: a process of ours that takes SIGHUP.
    stand_in = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal,time; signal.signal(signal.SIGHUP, lambda *a: None); "
            "print(flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert stand_in.stdout is not None and stand_in.stdout.readline()  # handler installed
        mosquitto.broker_pid_path(_settings(tmp_path)).write_text(f"{stand_in.pid}\n")
        added = CliRunner().invoke(
            app, ["devices", "add", "--kind", "crew", "--id", "c-1", "--password", "x"], env=env
        )
        assert added.exit_code == 0, added.output
        assert "broker reloaded" in added.stdout and added.stderr == ""
        assert stand_in.poll() is None, "SIGHUP reached the broker, which kept running"
    finally:
        stand_in.kill()
        stand_in.wait()
