"""The one way the project's services open an MQTT connection to the city's broker."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from core.settings import MqttSettings


def service_client(
    cfg: MqttSettings,
    client_id: str,
    *,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    client_class: type[mqtt.Client] = mqtt.Client,
    **options: Any,
) -> mqtt.Client:
    """A paho client (callback API v2) that logs in with the service identity.

    ``options`` go to the client's constructor (``clean_session``, ``manual_ack``, ...);
    connecting, callbacks and flow control stay with the caller.
    """
    client = client_class(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **options
    )
    client.username_pw_set(cfg.service_username, cfg.service_password.get_secret_value())
    return client
