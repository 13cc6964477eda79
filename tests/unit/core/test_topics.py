from __future__ import annotations

import pytest

from core.errors import InvalidMessage
from core.topics import KAFKA_TOPICS, MqttKind, parse_inbound


@pytest.mark.parametrize(
    ("topic", "kind", "identity"),
    [
        ("cityfix/v1/reports/app-42", MqttKind.REPORT, "app-42"),
        ("cityfix/v1/sensors/lamp.7/alert", MqttKind.ALERT, "lamp.7"),
        ("cityfix/v1/sensors/bus-1/telemetry", MqttKind.TELEMETRY, "bus-1"),
        ("cityfix/v1/sensors/bus-1/status", MqttKind.DEVICE_STATUS, "bus-1"),
        ("cityfix/v1/crews/c1/position", MqttKind.CREW_POSITION, "c1"),
        ("cityfix/v1/crews/c1/status", MqttKind.CREW_STATUS, "c1"),
    ],
)
def test_inbound_topics_name_kind_and_identity(topic, kind, identity):
    parsed = parse_inbound(topic)
    assert (parsed.kind, parsed.identity) == (kind, identity)


@pytest.mark.parametrize(
    "topic",
    ["cityfix/v2/reports/a", "cityfix/v1/reports/a/b", "cityfix/v1/crews/c1/assignment", "x"],
)
def test_other_topics_are_refused(topic):
    with pytest.raises(InvalidMessage):
        parse_inbound(topic)


def test_state_topics_are_compacted_and_others_expire():
    by_name = {t.name: t for t in KAFKA_TOPICS}
    assert by_name["incidents"].config()["cleanup.policy"] == "compact"
    assert by_name["assignments"].config()["cleanup.policy"] == "compact"
    assert by_name["raw.reports"].config().get("cleanup.policy") is None
    assert int(by_name["raw.telemetry"].config()["retention.ms"]) > 0
