"""Prometheus metrics of the web service, in a registry of its own (one per app)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """The service's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cityfix_api_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cityfix_api_request_seconds",
            "HTTP request latency by route",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.open311_created = Counter(
            "cityfix_api_open311_requests_created_total",
            "Open311 requests created by service",
            ["service_code"],
            registry=self.registry,
        )
        self.commands = Counter(
            "cityfix_api_commands_total",
            "Dispatcher actions sent, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "cityfix_api_rate_limited_total",
            "Requests refused by the rate limiter",
            registry=self.registry,
        )
        self.live_clients = Gauge(
            "cityfix_api_live_clients", "Connected live-push clients", registry=self.registry
        )

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting and timing every HTTP request by its route template."""

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            t0 = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                route = scope.get("route")
                name = getattr(route, "path", None) or "unmatched"
                method = scope.get("method", "")
                self.requests.labels(name, method, str(status)).inc()
                self.latency.labels(name, method).observe(time.perf_counter() - t0)

        return wrapped
