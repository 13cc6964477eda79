"""Kafka topic names and configuration, and the MQTT topic tree.

The MQTT tree is versioned (``cityfix/v1/...``); the identity in a topic (client, device
or crew id) is what the broker's ACL checks against the authenticated username.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import InvalidMessage

# --- Kafka -----------------------------------------------------------------------------

RAW_REPORTS = "raw.reports"
RAW_SENSOR_ALERTS = "raw.sensor-alerts"
RAW_TELEMETRY = "raw.telemetry"
CREW_EVENTS = "crew.events"
INGEST_DLQ = "ingest.dlq"
INCIDENTS = "incidents"
ASSIGNMENTS = "assignments"
DISPATCH_RUNS = "dispatch.runs"
COMMANDS = "commands"
# The Kafka header a stream worker puts on each incident record: the Faust app id that
# wrote it, so readers sharing one Kafka (a demo, a test, a benchmark) can tell them apart.
APP_HEADER = "cityfix-app"


def from_another_app(headers: Iterable[tuple[str, bytes]] | None, app_id: str) -> bool:
    """Whether a record's ``APP_HEADER`` names another app than ``app_id``.

    Several deployments (a demo, a test, a benchmark) may share one Kafka; a record
    without the header (published by hand, by an older worker) is taken as anybody's.
    """
    writer = dict(headers or ()).get(APP_HEADER)
    return writer is not None and writer != app_id.encode()

_WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class KafkaTopic:
    """A topic with its explicit partition count and retention."""

    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int = _WEEK_MS
    extra: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        """Topic-level configuration for the admin client."""
        cfg = {"retention.ms": str(-1 if self.compacted else self.retention_ms)}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
            cfg["min.compaction.lag.ms"] = "60000"
        cfg.update(self.extra)
        return cfg


KAFKA_TOPICS: tuple[KafkaTopic, ...] = (
    KafkaTopic(RAW_REPORTS, 6, retention_ms=30 * 24 * 3600 * 1000),
    KafkaTopic(RAW_SENSOR_ALERTS, 6, retention_ms=30 * 24 * 3600 * 1000),
    KafkaTopic(RAW_TELEMETRY, 6, retention_ms=3 * 24 * 3600 * 1000),
    KafkaTopic(CREW_EVENTS, 3),
    KafkaTopic(INGEST_DLQ, 1, retention_ms=30 * 24 * 3600 * 1000),
    KafkaTopic(INCIDENTS, 6, compacted=True),
    KafkaTopic(ASSIGNMENTS, 3, compacted=True),
    KafkaTopic(DISPATCH_RUNS, 1),
    KafkaTopic(COMMANDS, 1),
)

# --- MQTT ------------------------------------------------------------------------------

MQTT_PREFIX = "cityfix/v1"
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
_ID_RE = re.compile(rf"^{ID_PATTERN}$")


class MqttKind(StrEnum):
    """What an inbound MQTT topic carries."""

    REPORT = "report"
    ALERT = "alert"
    TELEMETRY = "telemetry"
    DEVICE_STATUS = "device_status"
    CREW_POSITION = "crew_position"
    CREW_STATUS = "crew_status"


_INBOUND = re.compile(
    rf"^{MQTT_PREFIX}/(?:"
    rf"reports/(?P<client>{ID_PATTERN})"
    rf"|sensors/(?P<device>{ID_PATTERN})/(?P<skind>alert|telemetry|status)"
    rf"|crews/(?P<crew>{ID_PATTERN})/(?P<ckind>position|status)"
    rf")$"
)


@dataclass(frozen=True)
class InboundTopic:
    """A parsed inbound MQTT topic: what it carries and whose it is."""

    kind: MqttKind
    identity: str


def parse_inbound(topic: str) -> InboundTopic:
    """Parse an inbound MQTT topic, or raise ``InvalidMessage`` naming ``topic``."""
    m = _INBOUND.match(topic)
    if not m:
        raise InvalidMessage(f"not a cityfix v1 inbound topic: {topic!r}", field="topic")
    if m["client"]:
        return InboundTopic(MqttKind.REPORT, m["client"])
    if m["device"]:
        kind = {
            "alert": MqttKind.ALERT,
            "telemetry": MqttKind.TELEMETRY,
            "status": MqttKind.DEVICE_STATUS,
        }[m["skind"]]
        return InboundTopic(kind, m["device"])
    kind = MqttKind.CREW_POSITION if m["ckind"] == "position" else MqttKind.CREW_STATUS
    return InboundTopic(kind, m["crew"])


def valid_id(value: str) -> bool:
    """Whether ``value`` is usable as an identity inside a topic."""
    return bool(_ID_RE.match(value))


def report_topic(client_id: str) -> str:
    """Where an app publishes a citizen report."""
    return f"{MQTT_PREFIX}/reports/{client_id}"


def sensor_topic(device_id: str, what: str) -> str:
    """Where a sensor publishes ``alert``, ``telemetry`` or ``status``."""
    return f"{MQTT_PREFIX}/sensors/{device_id}/{what}"


def crew_topic(crew_id: str, what: str) -> str:
    """A crew's ``position``, ``status`` or ``assignment`` topic."""
    return f"{MQTT_PREFIX}/crews/{crew_id}/{what}"


def request_status_topic(request_id: str) -> str:
    """Where a citizen report's status is published (retained)."""
    return f"{MQTT_PREFIX}/requests/{request_id}/status"


INBOUND_SUBSCRIPTIONS: tuple[str, ...] = (
    f"{MQTT_PREFIX}/reports/+",
    f"{MQTT_PREFIX}/sensors/+/alert",
    f"{MQTT_PREFIX}/sensors/+/telemetry",
    f"{MQTT_PREFIX}/sensors/+/status",
    f"{MQTT_PREFIX}/crews/+/position",
    f"{MQTT_PREFIX}/crews/+/status",
)
