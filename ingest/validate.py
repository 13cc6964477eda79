"""What the bridge does with one MQTT message, as a pure function.

``route(topic, payload, ...)`` turns an inbound MQTT topic and its payload bytes into either
a ``Record`` for its raw Kafka topic or a ``Rejected`` carrying the ``DeadLetter`` for
``ingest.dlq``. Checks, in order:

1. the topic is a cityfix v1 inbound topic (``unknown_topic``);
2. the payload is at most ``max_payload_bytes`` (``too_large``);
3. the payload is UTF-8 JSON (``malformed_json``);
4. it parses into the topic's wire schema (``schema``, naming the field);
5. the identity in the payload equals the one in the topic (``identity_mismatch``).
   For citizen reports the topic id becomes ``client_id``; a payload ``client_id`` that
   differs is a mismatch.

Records are keyed by the source (client, device or crew id) so each source's messages stay
in order within its partition.

A device's offline status is its MQTT last will: the device writes it when it connects,
and the broker sends it when the connection dies, so its ``at`` is the connect time. The
bridge stamps an offline status with the time it received it when that is later: the
moment the city learned the device was gone, instead of a time before it last said it
was online. The price: a will the bridge receives late (a stopped bridge instance's
queue, Kafka holding the broker back) after the device already reconnected sorts after
its new "online" until the device next says it is online.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from core import topics
from core.errors import IdentityMismatch, InvalidMessage, PayloadTooLarge
from core.schemas import (
    CitizenReport,
    CrewPosition,
    CrewStatus,
    DeadLetter,
    DeviceStatus,
    SensorAlert,
    Telemetry,
    dumps,
    parse,
    refuse_nul,
)
from core.topics import MqttKind

# Short reason classes: the ``reason`` label of the dead-letter metric and the first word
# of every ``DeadLetter.reason``.
UNKNOWN_TOPIC = "unknown_topic"
TOO_LARGE = "too_large"
MALFORMED_JSON = "malformed_json"
SCHEMA = "schema"
IDENTITY_MISMATCH = "identity_mismatch"
REASONS = (UNKNOWN_TOPIC, TOO_LARGE, MALFORMED_JSON, SCHEMA, IDENTITY_MISMATCH)

# A dead letter keeps at most this much of the payload (and never more than the limit), so
# the dead-letter topic does not become the place where 2 MiB blobs pile up and its records
# stay well under Kafka's record size limit.
DLQ_PAYLOAD_MAX_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Route:
    model: type[BaseModel]
    kafka_topic: str
    id_field: str


_ROUTES: dict[MqttKind, _Route] = {
    MqttKind.REPORT: _Route(CitizenReport, topics.RAW_REPORTS, "client_id"),
    MqttKind.ALERT: _Route(SensorAlert, topics.RAW_SENSOR_ALERTS, "device_id"),
    MqttKind.TELEMETRY: _Route(Telemetry, topics.RAW_TELEMETRY, "device_id"),
    MqttKind.DEVICE_STATUS: _Route(DeviceStatus, topics.RAW_TELEMETRY, "device_id"),
    MqttKind.CREW_POSITION: _Route(CrewPosition, topics.CREW_EVENTS, "crew_id"),
    MqttKind.CREW_STATUS: _Route(CrewStatus, topics.CREW_EVENTS, "crew_id"),
}


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record to produce: topic, key and value bytes, and what it carries."""

    topic: str
    key: bytes
    value: bytes
    kind: str

    def __repr__(self) -> str:
        return f"Record({self.topic}, key={self.key!r}, kind={self.kind}, {len(self.value)} B)"


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that goes to ``ingest.dlq``: the reason class and the dead-letter message."""

    reason_class: str
    letter: DeadLetter
    kind: str

    def record(self) -> Record:
        """The ``ingest.dlq`` record (keyed by the MQTT topic it arrived on)."""
        return Record(
            topics.INGEST_DLQ, self.letter.topic.encode(), dumps(self.letter), "dead_letter"
        )


def route(
    topic: str,
    payload: bytes,
    *,
    max_payload_bytes: int,
    received_at: datetime,
) -> Record | Rejected:
    """Validate one MQTT message and say where it goes in Kafka.

    Never raises for bad input: every refusal is a ``Rejected`` whose dead letter keeps
    the original topic, the payload (base64, cut at ``max_payload_bytes`` or
    ``DLQ_PAYLOAD_MAX_BYTES``, whichever is smaller; ``size_bytes`` keeps the real size),
    the reason (``"<class>: <field>: <what>"``), the field, the receive time and the size.
    """
    kind = "unknown"
    try:
        inbound = topics.parse_inbound(topic)
        kind = str(inbound.kind)
    except InvalidMessage as exc:
        return reject(UNKNOWN_TOPIC, exc, topic, payload, kind, max_payload_bytes, received_at)
    try:
        return _accept(inbound, payload, max_payload_bytes, received_at)
    except PayloadTooLarge as exc:
        cls = TOO_LARGE
        err: InvalidMessage = exc
    except IdentityMismatch as exc:
        cls, err = IDENTITY_MISMATCH, exc
    except _MalformedJson as exc:
        cls, err = MALFORMED_JSON, exc
    except InvalidMessage as exc:
        cls, err = SCHEMA, exc
    return reject(cls, err, topic, payload, kind, max_payload_bytes, received_at)


class _MalformedJson(InvalidMessage):
    pass


def _accept(
    inbound: topics.InboundTopic, payload: bytes, max_payload_bytes: int, received_at: datetime
) -> Record:
    size = len(payload)
    if size > max_payload_bytes:
        raise PayloadTooLarge(f"{size} bytes, over the limit of {max_payload_bytes}", "payload")
    refuse_nul(payload)
    try:
        doc: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _MalformedJson(f"malformed JSON: {exc}", "payload") from exc
    if not isinstance(doc, dict):
        raise InvalidMessage("payload must be a JSON object", "payload")
    r = _ROUTES[inbound.kind]
    if inbound.kind is MqttKind.REPORT:
        claimed = doc.get("client_id")
        if claimed is not None and claimed != inbound.identity:
            raise _mismatch(r.id_field, claimed, inbound.identity)
        doc["client_id"] = inbound.identity
    msg = parse(r.model, doc)
    claimed = getattr(msg, r.id_field)
    if claimed != inbound.identity:
        raise _mismatch(r.id_field, claimed, inbound.identity)
    if isinstance(msg, DeviceStatus) and not msg.online and msg.at < received_at:
        msg = msg.model_copy(update={"at": received_at})  # a last will (module docstring)
    return Record(r.kafka_topic, inbound.identity.encode(), dumps(msg), str(inbound.kind))


def _mismatch(field: str, claimed: object, topic_id: str) -> IdentityMismatch:
    return IdentityMismatch(f"payload says {claimed!r}, topic says {topic_id!r}", field)


def reject(
    reason_class: str,
    err: InvalidMessage,
    topic: str,
    payload: bytes,
    kind: str,
    max_payload_bytes: int,
    received_at: datetime,
) -> Rejected:
    """The dead letter for ``payload`` received on ``topic``, refused for ``err``."""
    keep = min(max_payload_bytes, DLQ_PAYLOAD_MAX_BYTES)
    letter = DeadLetter(
        topic=topic,
        payload_b64=base64.b64encode(payload[:keep]).decode("ascii"),
        reason=f"{reason_class}: {err}",
        field=err.field,
        received_at=received_at,
        size_bytes=len(payload),
    )
    return Rejected(reason_class, letter, kind)
