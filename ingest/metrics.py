"""Prometheus metrics of the bridge, on their own registry so several bridges can coexist."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ingest.validate import REASONS


class IngestMetrics:
    """The bridge's counters, histogram and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "cityfix_ingest_received",
            "MQTT messages received, by topic kind.",
            ["kind"],
            registry=r,
        )
        self.forwarded = Counter(
            "cityfix_ingest_forwarded",
            "Records Kafka acknowledged, by Kafka topic.",
            ["topic"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "cityfix_ingest_dead_lettered",
            "Messages written to ingest.dlq, by reason class.",
            ["reason"],
            registry=r,
        )
        self.produce_seconds = Histogram(
            "cityfix_ingest_kafka_produce_seconds",
            "From handing a record to the producer to Kafka's acknowledgement.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.inflight = Gauge(
            "cityfix_ingest_inflight",
            "Messages received from MQTT and not yet acknowledged to the broker.",
            registry=r,
        )
        self.connected = Gauge(
            "cityfix_ingest_connected",
            "1 while connected to the broker with the subscriptions granted.",
            registry=r,
        )
        self.dropped = Counter(
            "cityfix_ingest_dropped",
            "QoS 0 messages dropped while too many were waiting for Kafka.",
            registry=r,
        )
        self.produce_retries = Counter(
            "cityfix_ingest_kafka_retries",
            "Records sent again after a failed produce.",
            registry=r,
        )
        for reason in REASONS:
            self.dead_lettered.labels(reason)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` over HTTP on ``addr:port`` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)
