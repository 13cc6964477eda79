"""The bridge moves real MQTT traffic into Kafka: valid records routed, bad ones dead-lettered,
nothing lost when it is killed or stopped in the middle of a burst."""

from __future__ import annotations

import base64
import json
import re
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from cli.mosquitto import IdentityKind
from core import topics
from core.topics import crew_topic, report_topic, sensor_topic
from tests import factories
from tests.integration.ingest.helpers import KafkaTap, Publisher

BASE = datetime(2025, 1, 1, tzinfo=UTC)
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RAW = (topics.RAW_REPORTS, topics.RAW_SENSOR_ALERTS, topics.RAW_TELEMETRY, topics.CREW_EVENTS)


def _at(i: int) -> str:
    return (BASE + timedelta(seconds=i)).isoformat()


def _seconds(at: str) -> int:
    return round((datetime.fromisoformat(at) - BASE).total_seconds())


def _token(kind: str, doc: dict) -> str:
    """What identifies one valid message once it is in Kafka."""
    if kind == "report":
        return doc["report_id"]
    if kind == "alert":
        return doc["alert_id"]
    if kind == "telemetry":
        return f"telemetry:{int(doc['metrics']['seq'])}"
    return f"{kind}:{_seconds(doc['at'])}"


def _missing_report(missing, valid, dead, elapsed, bridge) -> str:
    """What a failure needs to be diagnosed: which kinds went missing, and the bridge's view."""
    by_kind: dict[str, int] = {}
    for token in missing:
        kind = token.split(":")[0] if ":" in token else valid[token][0]
        by_kind[kind] = by_kind.get(kind, 0) + 1
    dead_valid = sorted(t for t in missing if t in dead)[:3]
    wanted = ("received", "forwarded", "kafka_retries", "inflight", "connected", "dropped")
    counters = {
        k: v
        for k, v in bridge.metrics().items()
        if k.startswith(tuple(f"cityfix_ingest_{w}" for w in wanted))
    }
    return (
        f"{len(missing)} of {len(valid)} valid messages missing after {elapsed:.0f} s, "
        f"by kind {by_kind}, e.g. {sorted(missing)[:3]}; dead-lettered instead: {dead_valid}; "
        f"bridge alive: {bridge.alive()}, counters: {counters}; "
        f"bridge log tail:\n{bridge.log(3000)}"
    )


def test_ten_thousand_mixed_messages_are_routed_or_dead_lettered(settings, bridges, identity):
    app, app_pw = identity(IdentityKind.APP, "app")
    dev, dev_pw = identity(IdentityKind.SENSOR, "sensor")
    crew, crew_pw = identity(IdentityKind.CREW, "crew")
    bridge = bridges.start()
    tap = KafkaTap(settings, (*RAW, topics.INGEST_DLQ))
    pubs = {
        "app": Publisher(settings, app, app_pw),
        "dev": Publisher(settings, dev, dev_pw),
        "crew": Publisher(settings, crew, crew_pw),
    }

    # (publisher, mqtt topic, payload); expected valid token -> (kafka topic, key);
    # expected invalid token -> (reason class, field).
    plan: list[tuple[str, str, bytes]] = []
    valid: dict[str, tuple[str, str]] = {}
    invalid: dict[str, tuple[str, str]] = {}

    def good(who: str, topic: str, doc: dict, kafka_topic: str, key: str, token: str) -> None:
        plan.append((who, topic, json.dumps(doc).encode()))
        valid[token] = (kafka_topic, key)

    def bad(who: str, topic: str, payload: bytes, reason: str, field: str) -> None:
        token = UUID_RE.search(payload).group().decode()
        plan.append((who, topic, payload))
        invalid[token] = (reason, field)

    n = 10_000
    for i in range(n):
        slot = i % 20
        rid = str(uuid.uuid4())
        if i in (1234, 5678, 9012):  # 1 MB, well over the 64 KiB limit
            doc = factories.report(report_id=rid, description="x" * 1_000_000)
            bad("app", report_topic(app), json.dumps(doc).encode(), "too_large", "payload")
        elif slot < 3:
            doc = factories.report(report_id=rid, reported_at=_at(i))
            good("app", report_topic(app), doc, topics.RAW_REPORTS, app, rid)
        elif slot < 6:
            doc = factories.alert(dev, alert_id=rid, observed_at=_at(i))
            good("dev", sensor_topic(dev, "alert"), doc, topics.RAW_SENSOR_ALERTS, dev, rid)
        elif slot < 8:
            doc = factories.telemetry(dev, metrics={"seq": i, "accel_g": 1.0})
            good(
                "dev",
                sensor_topic(dev, "telemetry"),
                doc,
                topics.RAW_TELEMETRY,
                dev,
                f"telemetry:{i}",
            )
        elif slot < 10:
            # online: an offline status older than its receipt is stamped with the time it
            # was received (a last will), and its token here is its time
            doc = factories.device_status(dev, at=_at(i), online=True)
            good(
                "dev",
                sensor_topic(dev, "status"),
                doc,
                topics.RAW_TELEMETRY,
                dev,
                f"device_status:{i}",
            )
        elif slot < 12:
            doc = factories.crew_position(crew, at=_at(i))
            good(
                "crew",
                crew_topic(crew, "position"),
                doc,
                topics.CREW_EVENTS,
                crew,
                f"crew_position:{i}",
            )
        elif slot < 14:
            doc = factories.crew_status(crew, at=_at(i), status="en_route")
            good(
                "crew",
                crew_topic(crew, "status"),
                doc,
                topics.CREW_EVENTS,
                crew,
                f"crew_status:{i}",
            )
        elif slot == 14:
            raw = json.dumps(factories.report(report_id=rid)).encode()
            bad("app", report_topic(app), raw[: len(raw) // 2], "malformed_json", "payload")
        elif slot == 15:
            doc = factories.alert(dev, alert_id=rid, value="very high")
            bad("dev", sensor_topic(dev, "alert"), json.dumps(doc).encode(), "schema", "value")
        elif slot == 16:
            doc = factories.report(report_id=rid, lat=123.4)
            bad("app", report_topic(app), json.dumps(doc).encode(), "schema", "lat")
        elif slot == 17:
            doc = factories.report(report_id=rid, category="unicorn_sighting")
            bad("app", report_topic(app), json.dumps(doc).encode(), "schema", "category")
        elif slot == 18:
            doc = factories.alert(f"other-{dev}", alert_id=rid)
            bad(
                "dev",
                sensor_topic(dev, "alert"),
                json.dumps(doc).encode(),
                "identity_mismatch",
                "device_id",
            )
        else:
            doc = factories.report(report_id=rid, client_id=f"other-{app}")
            bad(
                "app", report_topic(app), json.dumps(doc).encode(), "identity_mismatch", "client_id"
            )

    started = time.monotonic()
    for who, topic, payload in plan:
        pubs[who].publish(topic, payload)
    for p in pubs.values():
        p.drain()
        assert not p.refused
        p.close()

    ours = {app, dev, crew}
    seen_valid: dict[str, tuple[str, str]] = {}
    dead: dict[str, tuple[str, str | None, dict]] = {}

    def keep(rec) -> bool:
        if rec.topic == topics.INGEST_DLQ:
            letter = orjson.loads(rec.value)
            if not any(o in letter["topic"] for o in ours):
                return False
            payload = base64.b64decode(letter["payload_b64"])
            token = UUID_RE.search(payload).group().decode()
            dead[token] = (letter["reason"], letter["field"], letter)
            return True
        key = rec.key.decode()
        if key not in ours:
            return False
        kind = dict(rec.headers)["kind"].decode()
        doc = orjson.loads(rec.value)
        token = _token(kind, doc)
        if kind == "report":
            assert doc["client_id"] == app
        seen_valid[token] = (rec.topic, key)
        return True

    tap.collect(keep, lambda _: len(seen_valid) >= len(valid) and len(dead) >= len(invalid))
    elapsed = time.monotonic() - started

    missing = set(valid) - set(seen_valid)
    assert not missing, _missing_report(missing, valid, dead, elapsed, bridge)
    assert seen_valid == valid, "a valid message went to the wrong topic or key"
    assert not set(invalid) & set(seen_valid), "an invalid message reached a raw topic"
    missing_dead = set(invalid) - set(dead)
    assert not missing_dead, f"{len(missing_dead)} invalid messages not dead-lettered"
    for token, (reason, field) in invalid.items():
        got_reason, got_field, _ = dead[token]
        assert got_reason.startswith(f"{reason}: ") and got_field == field, (token, got_reason)
    big = [d for (_, _, d) in dead.values() if d["reason"].startswith("too_large")]
    assert len(big) == 3 and all(d["size_bytes"] > 1_000_000 for d in big)

    m = bridge.metrics()
    for reason in ("malformed_json", "schema", "identity_mismatch", "too_large"):
        expected = sum(1 for r, _ in invalid.values() if r == reason)
        assert m[f"cityfix_ingest_dead_lettered_total{{reason={reason}}}"] >= expected
    assert m[f"cityfix_ingest_forwarded_total{{topic={topics.RAW_REPORTS}}}"] >= sum(
        1 for t, _ in valid.values() if t == topics.RAW_REPORTS
    )
    assert m["cityfix_ingest_kafka_produce_seconds_count"] >= n
    print(f"\n{n} mixed messages through the bridge in {elapsed:.1f} s")


def _burst(settings, identity, n: int, rate_per_s: float = 3_000.0):
    """A sensor and a thread that publishes ``n`` telemetry messages (seq 0..n-1) at QoS 1,
    paced so that the bridge is stopped while the burst is still being published."""
    dev, pw = identity(IdentityKind.SENSOR, "burst")
    pub = Publisher(settings, dev, pw)
    topic = sensor_topic(dev, "telemetry")
    progress = {"published": 0}

    def run() -> None:
        t0 = time.monotonic()
        for i in range(n):
            if i % 100 == 0:
                time.sleep(max(0.0, t0 + i / rate_per_s - time.monotonic()))
            doc = factories.telemetry(dev, observed_at=_at(i), metrics={"seq": i})
            pub.publish(topic, json.dumps(doc).encode())
            progress["published"] = i + 1
        pub.drain()

    return dev, pub, threading.Thread(target=run, daemon=True), progress


def _seqs_in_kafka(
    tap: KafkaTap, dev: str, n: int, bridge_prefix: str, timeout_s: float = 120.0
) -> list[int]:
    """The seqs of ``dev``'s telemetry written by this test's bridges (any other bridge that
    happens to run on the same broker forwards the same messages too)."""
    seqs: list[int] = []
    distinct: set[int] = set()

    def keep(rec) -> bool:
        if rec.key != dev.encode():
            return False
        if not dict(rec.headers).get("bridge", b"").decode().startswith(bridge_prefix):
            return False
        seq = int(orjson.loads(rec.value)["metrics"]["seq"])
        seqs.append(seq)
        distinct.add(seq)
        return True

    tap.collect(keep, lambda _: len(distinct) >= n, timeout_s)
    return seqs


def _wait_forwarded(bridge, at_least: int, timeout_s: float = 60.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = bridge.total("cityfix_ingest_forwarded_total")
        if done >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError(f"bridge forwarded too little: {bridge.log()}")


def test_sigkill_in_the_middle_of_a_burst_loses_nothing(settings, bridges, identity):
    n = 10_000
    dev, pub, publisher, progress = _burst(settings, identity, n)
    tap = KafkaTap(settings, [topics.RAW_TELEMETRY])
    first = bridges.start(instance=0)
    publisher.start()

    forwarded_at_kill = _wait_forwarded(first, 2_000)
    first.signal(signal.SIGKILL)
    published_at_kill = progress["published"]
    assert first.wait() == -signal.SIGKILL
    assert published_at_kill < n, "the kill came after the burst"

    second = bridges.start(instance=0)  # same instance: same client id, same session
    publisher.join(120)
    pub.close()
    seqs = _seqs_in_kafka(tap, dev, n, bridges.client_prefix)

    assert set(seqs) == set(range(n)), f"{n - len(set(seqs))} messages lost"
    assert "session_present=True" in second.log()
    print(
        f"\nkilled after {forwarded_at_kill:.0f} forwarded ({published_at_kill} published); "
        f"{len(seqs) - n} duplicates after redelivery"
    )


def test_sigterm_drains_acks_and_restarts_without_loss_or_duplicates(settings, bridges, identity):
    n = 10_000
    dev, pub, publisher, _ = _burst(settings, identity, n)
    tap = KafkaTap(settings, [topics.RAW_TELEMETRY])
    first = bridges.start(instance=1)
    publisher.start()

    _wait_forwarded(first, 2_000)
    t0 = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    stop_s = time.monotonic() - t0
    assert "ingest bridge stopped" in first.log()

    bridges.start(instance=1)
    publisher.join(120)
    pub.close()
    seqs = _seqs_in_kafka(tap, dev, n, bridges.client_prefix)

    assert set(seqs) == set(range(n))
    assert len(seqs) == n, f"{len(seqs) - n} duplicates: something forwarded was not acked"
    assert stop_s < 10
