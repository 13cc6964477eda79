"""Citizens: apps that report street problems and follow what happens to them.

A pool of app identities shares the planned reports (``faults.plan_city``). Each report is
published on ``cityfix/v1/reports/{app_id}`` when it is due (simulated time); the app then
subscribes to ``cityfix/v1/requests/{report_id}/status`` and records the first time it
sees each status, in particular when its report was resolved or closed.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from uuid import UUID

from core.errors import InvalidMessage
from core.schemas import CitizenReport, IncidentStatus, RequestStatus, dumps, parse
from core.topics import report_topic, request_status_topic
from simulators.faults import PlannedReport, Submission
from simulators.mqtt import Broker, Credentials, MqttAgent, close_all
from simulators.simtime import SimTime

log = logging.getLogger(__name__)

CLOSED_STATUSES = frozenset({IncidentStatus.RESOLVED, IncidentStatus.CLOSED})


def report_payload(report: PlannedReport, reported_at: datetime) -> bytes:
    """The bytes an app sends for a planned report (malformed ones on purpose)."""
    if report.kind is Submission.MALFORMED:
        return _malformed(report, reported_at)
    msg = CitizenReport(
        report_id=UUID(report.report_id),
        category=report.category,
        lat=report.lat,
        lon=report.lon,
        reported_at=reported_at,
        description=report.description,
        asset_id=report.asset_id,
    )
    return dumps(msg)


def _malformed(report: PlannedReport, reported_at: datetime) -> bytes:
    doc: dict[str, object] = {
        "v": 1,
        "report_id": report.report_id,
        "category": report.category.value,
        "lat": report.lat,
        "lon": report.lon,
        "reported_at": reported_at.isoformat(),
    }
    variant = report.variant % 4
    if variant == 0:  # the app crashed mid-write
        return json.dumps(doc).encode()[:40]
    if variant == 1:
        doc["category"] = "alien_landing"
    elif variant == 2:
        doc["lat"] = 123.4
    else:
        del doc["report_id"]
    return json.dumps(doc).encode()


@dataclass
class Tracked:
    """What one app saw of one of its reports."""

    report_id: str
    fault_id: str
    app_id: str
    sent_at: str
    seen: dict[str, str] = field(default_factory=dict)
    incident_id: str | None = None

    @property
    def closed_at(self) -> str | None:
        """When the citizen first saw the report resolved or closed."""
        times = [self.seen[s] for s in ("resolved", "closed") if s in self.seen]
        return min(times) if times else None


class CitizenSim:
    """Publishes the planned reports from a pool of apps and follows their statuses."""

    def __init__(
        self,
        reports: list[PlannedReport],
        apps: list[Credentials],
        broker: Broker,
        time: SimTime,
        duration_s: float,
        results_path: Path | None = None,
    ) -> None:
        if not apps:
            raise ValueError("citizens need at least one app identity")
        self.reports = reports
        self.apps = apps
        self.broker = broker
        self.time = time
        self.duration_s = duration_s
        self.results_path = results_path
        self.agents: list[MqttAgent] = []
        self.tracked: dict[str, Tracked] = {}
        self.sent: dict[str, int] = {k.value: 0 for k in Submission}
        self._lock = threading.Lock()

    def _on_status(self, topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            status = parse(RequestStatus, payload)
        except InvalidMessage as exc:
            log.warning("bad request status topic=%s reason=%s", topic, exc)
            return
        with self._lock:
            tracked = self.tracked.get(status.request_id)
            if tracked is None:
                return
            tracked.incident_id = status.incident_id
            first = status.status.value not in tracked.seen
            tracked.seen.setdefault(status.status.value, self.time.now().isoformat())
        if first and status.status in CLOSED_STATUSES:
            log.info(
                "citizen saw report closed report=%s incident=%s status=%s",
                status.request_id,
                status.incident_id,
                status.status,
            )

    def run(self) -> dict[str, object]:
        """Publish every report when due; return (and write) what the citizens saw."""
        for creds in self.apps:
            if self.time.stop.is_set():
                break
            agent = MqttAgent(self.broker, creds, on_message=self._on_status)
            agent.start()
            self.agents.append(agent)
        log.info(
            "citizen apps online count=%d reports_planned=%d", len(self.agents), len(self.reports)
        )
        last_write = self.time.clock.time()
        try:
            for report in self.reports:
                if report.at_s >= self.duration_s or not self.time.sleep_until(report.at_s):
                    break
                self._send(report)
                if self.time.clock.time() - last_write > self.time.clock.sim_seconds(5.0):
                    self.write_results()
                    last_write = self.time.clock.time()
            # Keep following statuses until the scenario ends.
            while self.time.sleep_until(min(self.time.elapsed_s() + 60.0, self.duration_s)):
                if self.time.elapsed_s() >= self.duration_s:
                    break
                self.write_results()
        finally:
            close_all(self.agents)
            self.write_results()
        return self.results()

    def _send(self, report: PlannedReport) -> None:
        agent = self.agents[report.app % len(self.agents)]
        app_id = agent.creds.username
        now = self.time.now()
        if report.kind is Submission.VALID:
            with self._lock:
                self.tracked[report.report_id] = Tracked(
                    report.report_id, report.fault_id, app_id, now.isoformat()
                )
            agent.subscribe(request_status_topic(report.report_id))
        # The planned time, not the sending time: a restarted simulator sends its past
        # reports again, and only an identical (report_id, reported_at) is a replay.
        payload = report_payload(report, self.time.at(report.at_s))
        if agent.publish(report_topic(app_id), payload, stop=self.time.stop):
            self.sent[report.kind.value] += 1
            log.info(
                "report sent app=%s report=%s category=%s kind=%s fault=%s",
                app_id,
                report.report_id,
                report.category,
                report.kind,
                report.fault_id,
            )

    def results(self) -> dict[str, object]:
        """Counts and, per tracked report, the statuses its citizen saw."""
        with self._lock:
            tracked = list(self.tracked.values())
        return {
            "sent": dict(self.sent),
            "tracked": len(tracked),
            "seen_closed": sum(1 for t in tracked if t.closed_at),
            "reports": {
                t.report_id: {
                    "fault_id": t.fault_id,
                    "app_id": t.app_id,
                    "sent_at": t.sent_at,
                    "incident_id": t.incident_id,
                    "seen": dict(t.seen),
                    "closed_at": t.closed_at,
                }
                for t in tracked
            },
        }

    def write_results(self) -> None:
        """Write the results JSON (atomically) when a path was given."""
        if self.results_path is None:
            return
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results(), indent=1))
        tmp.replace(self.results_path)
