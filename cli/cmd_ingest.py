"""``cityfix ingest``: run one MQTT -> Kafka bridge process."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command."""
    from cli.main import settings_of

    @app.command("ingest")
    def ingest(
        ctx: typer.Context,
        instance: Annotated[
            int,
            typer.Option(
                "--instance",
                min=0,
                help="Stable instance number; the MQTT client id (and so the persistent "
                "session) is the configured client id plus this suffix. Run several "
                "instances with distinct numbers to split the load.",
            ),
        ] = 0,
        metrics_port: Annotated[
            int | None,
            typer.Option(
                "--metrics-port",
                min=0,
                max=65535,
                help="Prometheus /metrics port (default: settings ingest.metrics_port; 0 = off).",
            ),
        ] = None,
        metrics_addr: Annotated[
            str, typer.Option("--metrics-addr", help="Address the metrics server binds.")
        ] = "127.0.0.1",
        receive_maximum: Annotated[
            int | None,
            typer.Option(
                "--receive-maximum",
                min=1,
                max=65535,
                help="Messages the broker may have in flight to this bridge "
                "(default: settings mqtt.max_inflight).",
            ),
        ] = None,
        session_expiry_s: Annotated[
            int,
            typer.Option(
                "--session-expiry-s",
                min=1,
                help="How long the broker keeps this instance's session (and queues its "
                "share of messages) while it is away.",
            ),
        ] = 24 * 3600,
        linger_ms: Annotated[
            int, typer.Option("--linger-ms", min=0, help="Kafka producer batching delay.")
        ] = 5,
    ) -> None:
        """Bridge MQTT to Kafka: validate, route, dead-letter; ack only what Kafka has."""
        from ingest.bridge import BridgeOptions, run_bridge

        settings = settings_of(ctx)
        port = settings.ingest.metrics_port if metrics_port is None else metrics_port
        options = BridgeOptions(
            instance=instance,
            metrics_port=port or None,
            metrics_addr=metrics_addr,
            receive_maximum=receive_maximum or settings.mqtt.max_inflight,
            session_expiry_s=session_expiry_s,
            linger_ms=linger_ms,
        )
        run_bridge(settings, options)
