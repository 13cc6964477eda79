"""Only known devices get in, each only on its own topics, and changes apply without a restart."""

from __future__ import annotations

import json
import subprocess

import orjson

from cli import mosquitto
from cli.mosquitto import IdentityKind
from core import topics
from core.topics import sensor_topic
from tests import factories
from tests.integration.ingest.helpers import KafkaTap, Publisher, connect_outcome
from tests.integration.procs import CITYFIX, REPO

# MQTT 5 CONNACK: 134 bad user name or password, 135 not authorized.
REFUSED = {134, 135}


def _broker_pid(settings) -> int:
    return int((settings.services_dir / "mosquitto" / "mosquitto.pid").read_text().split()[0])


def test_wrong_password_and_revoked_device_are_refused(settings, identity):
    dev, pw = identity(IdentityKind.SENSOR, "gate")
    pid = _broker_pid(settings)
    assert connect_outcome(settings, dev, pw, want_refused=False) is None

    wrong = connect_outcome(settings, dev, pw + "x", want_refused=True)
    assert wrong is not None and wrong.value in REFUSED

    mosquitto.revoke_identity(settings, dev)
    revoked = connect_outcome(settings, dev, pw, want_refused=True)
    assert revoked is not None and revoked.value in REFUSED
    assert _broker_pid(settings) == pid, "the broker was restarted instead of reloaded"


def test_a_device_cannot_publish_on_another_devices_topic(settings, bridges, identity):
    dev, pw = identity(IdentityKind.SENSOR, "honest")
    victim, _ = identity(IdentityKind.SENSOR, "victim")
    bridges.start()
    tap = KafkaTap(settings, [topics.RAW_SENSOR_ALERTS, topics.INGEST_DLQ])
    pub = Publisher(settings, dev, pw)

    forged = factories.alert(victim)
    forged_mid = pub.publish(sensor_topic(victim, "alert"), json.dumps(forged).encode())
    control = factories.alert(dev)
    pub.publish(sensor_topic(dev, "alert"), json.dumps(control).encode())
    pub.drain()
    pub.close()

    assert forged_mid in pub.refused, "the broker accepted a publish on another device's topic"
    assert pub.refused[forged_mid].value == 135  # not authorized
    assert len(pub.refused) == 1

    alert_ids: set[str] = set()

    def keep(rec) -> bool:
        if victim.encode() in (rec.key or b"") or victim.encode() in rec.value:
            alert_ids.add("victim:" + rec.value.decode(errors="replace")[:80])
            return True
        if rec.topic == topics.RAW_SENSOR_ALERTS and rec.key == dev.encode():
            alert_ids.add(orjson.loads(rec.value)["alert_id"])
            return True
        return False

    tap.collect(keep, lambda _: control["alert_id"] in alert_ids, timeout_s=60)
    assert control["alert_id"] in alert_ids
    assert not any(a.startswith("victim:") for a in alert_ids), "the forged alert reached Kafka"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CITYFIX), *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_devices_cli_adds_lists_and_revokes_without_restarting_the_broker(settings, uid):
    ident = f"cli-sensor-{uid}"
    pid = _broker_pid(settings)
    try:
        added = _cli("devices", "add", "--kind", "sensor", "--id", ident)
        assert added.returncode == 0, added.stderr
        password = added.stdout.strip().splitlines()[-1]
        assert connect_outcome(settings, ident, password, want_refused=False) is None

        listed = _cli("devices", "list")
        assert ident in listed.stdout and "sensor" in listed.stdout

        given = _cli("devices", "add", "--kind", "sensor", "--id", ident, "--password", "s3cret-x")
        assert given.returncode == 0 and "s3cret-x" not in given.stdout
        assert connect_outcome(settings, ident, "s3cret-x", want_refused=False) is None

        revoked = _cli("devices", "revoke", ident)
        assert revoked.returncode == 0, revoked.stderr
        refused = connect_outcome(settings, ident, "s3cret-x", want_refused=True)
        assert refused is not None and refused.value in REFUSED
        assert ident not in _cli("devices", "list").stdout
        assert _cli("devices", "revoke", ident).returncode == 1
        assert _broker_pid(settings) == pid
    finally:
        if any(i.id == ident for i in mosquitto.list_identities(settings)):
            mosquitto.revoke_identity(settings, ident)
