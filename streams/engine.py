"""The stream processing core: dedup, fusion, scoring and lifecycle over keyed state.

The engine is pure in the sense that matters: it does no I/O. It is given three mappings
(the dedup index ``cells``, the ``incidents`` by id, the ``seen`` evidence ids) and a
road graph, handles one message of the cell topic at a time and returns ``Outputs``:
incident records to publish, messages to route to other cells, and request statuses for
the citizens' apps. The Faust agents (``streams.agents``) back the mappings with
changelogged tables and send the outputs; ``Inline`` runs the same engine in-process,
routing messages through a local queue (unit tests, benchmark).

Messages on the cell topic (key = cell key, see ``streams.dedup``), as JSON objects with
a type ``t``:

=========  =================================================================================
``obs``    a snapped report or alert, at its home cell: match or open an incident
``join``   an observation that matched ``incident_id``, at the incident's cell
``index``  put or delete an index entry in a neighbouring cell (may trigger a merge)
``merge``  ``loser`` is the same fault as ``winner`` (at the loser's cell)
``absorb`` evidence of a merged incident, at the winner's cell
``assign`` / ``unassign``  the incident entered / left a crew's plan
``crew``   a crew status (en_route, on_site, completed) for the incident
``cmd``    a dispatcher command (reprioritise, mark_duplicate, close)
``tick``   re-score with the clock (aging) and close resolved incidents that are due
=========  =================================================================================

Idempotency: ``seen`` maps every evidence id to its incident; a redelivered observation
only re-sends its ``join``, and a ``join`` whose evidence the incident already has changes
nothing. Incident ids are derived from the first evidence, so a replay after a crash
re-creates the same incident instead of a second one. A restart can also bring some table
keys back older than others (the changelog is replayed over a local store that was ahead
of it); the replay of the observation that opened an incident puts back its lost index
entry and never opens the incident again over a later state, and a cell checks every
index put for an overlap, so a border merge lost with the crash is made again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from core import schemas
from core.clock import Clock
from core.errors import InvalidMessage
from core.schemas import (
    CitizenReport,
    Command,
    CommandKind,
    CrewState,
    CrewStatus,
    Evidence,
    EvidenceKind,
    Incident,
    IncidentStatus,
    Priority,
    RequestStatus,
    SensorAlert,
    Transition,
)
from core.settings import StreamsSettings
from streams import dedup, lifecycle, scoring
from streams.dedup import Entry, Grid, Observation
from streams.families import BY_NAME, Family, family_of_category, family_of_kind, magnitude
from streams.roads import Roads

_log = logging.getLogger(__name__)

Msg = dict[str, Any]
_PARSED_CACHE = 4096
S = IncidentStatus


@dataclass
class Outputs:
    """What handling one message produced."""

    incidents: list[Incident] = field(default_factory=list)
    routes: list[tuple[str, Msg]] = field(default_factory=list)
    statuses: list[RequestStatus] = field(default_factory=list)

    def extend(self, other: Outputs) -> None:
        """Add another message's outputs to these."""
        self.incidents.extend(other.incidents)
        self.routes.extend(other.routes)
        self.statuses.extend(other.statuses)


@dataclass(frozen=True)
class Rejected:
    """Raw input that cannot become an observation, and why."""

    reason: str
    field: str | None = None


def _ts(at_s: float) -> datetime:
    return datetime.fromtimestamp(at_s, tz=UTC)


def dumps(doc: Any) -> bytes:
    """Serialise a cell-topic message or table value."""
    return orjson.dumps(doc)


def loads(data: bytes | str) -> Any:
    """Parse a cell-topic message or table value."""
    return orjson.loads(data)


class Engine:
    """Dedup, fusion, scoring and lifecycle over injected state (see the module docstring)."""

    def __init__(
        self,
        settings: StreamsSettings,
        roads: Roads,
        clock: Clock,
        *,
        cells: MutableMapping[Any, Any],
        incidents: MutableMapping[Any, Any],
        seen: MutableMapping[Any, Any],
    ) -> None:
        self.settings = settings
        self.roads = roads
        self.clock = clock
        self.grid = Grid(settings.cell_size_m, roads.ref_lat)
        self.thresholds = scoring.Thresholds(
            settings.p1_min_score, settings.p2_min_score, settings.p3_min_score
        )
        self.cells = cells
        self.incidents = incidents
        self.seen = seen
        self._parsed: dict[str, tuple[bytes, Incident]] = {}
        self._cells_parsed: dict[str, tuple[bytes, list[Entry]]] = {}

    # -- raw input -> observations ---------------------------------------------------
    def locate(self, raws: list[tuple[str, bytes]]) -> list[tuple[str, Msg] | Rejected]:
        """Parse and snap raw ``("report"|"alert", payload)`` records, many at once.

        Each becomes ``(home cell key, obs message)`` or a ``Rejected`` with the reason.
        """
        parsed: list[CitizenReport | SensorAlert | Rejected] = []
        for kind, payload in raws:
            try:
                model = CitizenReport if kind == "report" else SensorAlert
                parsed.append(schemas.parse(model, payload))
            except InvalidMessage as exc:
                parsed.append(Rejected(exc.reason, exc.field))
        todo = [i for i, p in enumerate(parsed) if not isinstance(p, Rejected)]
        snaps = self.roads.snap_many(
            [parsed[i].lat for i in todo],  # type: ignore[union-attr]
            [parsed[i].lon for i in todo],  # type: ignore[union-attr]
        )
        out: list[tuple[str, Msg] | Rejected] = []
        snap_of = dict(zip(todo, snaps, strict=True))
        for i, p in enumerate(parsed):
            if isinstance(p, Rejected):
                out.append(p)
                continue
            snap = snap_of[i]
            if not snap.ok:
                out.append(Rejected(snap.reason or "outside the service area", "lat"))
                continue
            if snap.offset_m > self.settings.max_road_offset_m:
                out.append(Rejected(f"{snap.offset_m:.0f} m from the nearest road", "lat"))
                continue
            obs = _observation(p, snap)
            out.append((obs.home_key(self.grid), {"t": "obs", **obs.to_dict()}))
        return out

    def route_crew_event(self, payload: bytes) -> tuple[str, Msg] | None:
        """A ``crew.events`` record -> a ``crew`` message for its incident's cell (or None)."""
        try:
            doc = schemas.loads_json(payload)
        except ValueError:
            return None
        if not isinstance(doc, dict) or "status" not in doc or not doc.get("incident_id"):
            return None  # positions and statuses about no incident
        try:
            st = schemas.parse(CrewStatus, doc)
            key = dedup.cell_of_incident(str(st.incident_id))
        except (InvalidMessage, ValueError) as exc:
            _log.warning("crew event ignored: %s", exc)
            return None
        if st.status not in (CrewState.EN_ROUTE, CrewState.ON_SITE, CrewState.COMPLETED):
            return None
        msg = {
            "t": "crew",
            "incident_id": st.incident_id,
            "crew_id": st.crew_id,
            "status": st.status.value,
            "at": st.at.timestamp(),
        }
        return key, msg

    def route_command(self, payload: bytes) -> tuple[str, Msg] | None:
        """A ``commands`` record for an incident -> a ``cmd`` message (or None)."""
        try:
            cmd = schemas.parse(Command, payload)
        except InvalidMessage as exc:
            _log.warning("command ignored: %s", exc)
            return None
        if cmd.kind not in (
            CommandKind.REPRIORITISE,
            CommandKind.MARK_DUPLICATE,
            CommandKind.CLOSE,
        ):
            return None
        if not cmd.incident_id:
            return None
        try:
            key = dedup.cell_of_incident(cmd.incident_id)
        except ValueError as exc:
            _log.debug("command ignored: %s", exc)
            return None
        return key, {"t": "cmd", **cmd.model_dump(mode="json")}

    @staticmethod
    def plan_changes(
        crew_id: str, before: Iterable[str], after: Iterable[str], at_s: float
    ) -> list[tuple[str, Msg]]:
        """``assign``/``unassign`` messages for the incidents that entered/left a crew's plan."""
        old, new = set(before), set(after)
        out: list[tuple[str, Msg]] = []
        for t, ids in (("unassign", sorted(old - new)), ("assign", sorted(new - old))):
            for inc_id in ids:
                try:
                    key = dedup.cell_of_incident(inc_id)
                except ValueError:
                    continue
                out.append((key, {"t": t, "incident_id": inc_id, "crew_id": crew_id, "at": at_s}))
        return out

    # -- the cell topic ----------------------------------------------------------------
    def handle(self, key: str, msg: Msg) -> Outputs:
        """Handle one cell-topic message addressed to cell ``key``."""
        out = Outputs()
        t = msg.get("t")
        try:
            handler = getattr(self, f"_on_{t}")
        except AttributeError:
            _log.warning("unknown cell message type %r", t)
            return out
        handler(key, msg, out)
        return out

    def _on_obs(self, key: str, msg: Msg, out: Outputs) -> None:
        obs = Observation.from_dict({k: v for k, v in msg.items() if k != "t"})
        family = BY_NAME[obs.family]
        known = self.seen.get(obs.evidence_id)
        if known is not None:
            # Replayed (a crash between the table write and the offset commit): re-send
            # what may not have left, all of it idempotent downstream.
            inc_id = _str(known)
            if inc_id == dedup.incident_id_for(key, obs.evidence_id):
                mine = next((e for e in self._entries(key) if e.incident_id == inc_id), None)
                if mine is not None:
                    for cell in dedup.entry_cells(mine, self.grid, family)[1:]:
                        out.routes.append(
                            (cell, {"t": "index", "op": "put", "entry": mine.to_dict()})
                        )
                elif (inc := self._load(inc_id)) is not None and lifecycle.is_active(inc):
                    # The cell's entries came back older than the incident: a restart
                    # replays the changelog from the last offset it had confirmed over a
                    # local store that was ahead. Without its entry the incident would
                    # take no more reports; put it back as its opening put it.
                    self._index_put(key, dedup.entry_for(inc_id, obs), family, out)
            self._send_join(key, inc_id, obs, out)
            return
        entries = self._entries(key)
        match = dedup.find_match(
            obs, entries, family, self.roads.distance_m, self.settings.reopen_window_s
        )
        if match is not None:
            self.seen[obs.evidence_id] = match.incident_id
            entries = [
                e.seen_at(obs.at_s) if e.incident_id == match.incident_id else e for e in entries
            ]
            self._save_entries(key, entries, family)
            self._send_join(key, match.incident_id, obs, out)
            return
        inc_id = dedup.incident_id_for(key, obs.evidence_id)
        self.seen[obs.evidence_id] = inc_id
        if self._load(inc_id) is not None:
            # This observation opened the incident before a crash, and the tables came back
            # from changelog topics that were only partly written (its ``seen`` record and
            # index entry lost, the incident kept, perhaps merged since): join it rather
            # than open it again over its later state.
            self._send_join(key, inc_id, obs, out)
            return
        self._open(key, inc_id, obs, out)

    def _on_join(self, key: str, msg: Msg, out: Outputs) -> None:
        inc_id = msg["incident_id"]
        obs = Observation.from_dict(msg["obs"])
        inc = self._load(inc_id)
        if inc is None:
            self._open(key, inc_id, obs, out)
            return
        if inc.status in (S.DUPLICATE, S.MERGED) and inc.merged_into:
            self._send_join(key, inc.merged_into, obs, out)
            return
        if any(e.id == obs.evidence_id for e in inc.evidence):
            # A replay: publish the current state again (same version) in case the first
            # record was lost with the crash; consumers keep the latest per id. Every
            # report's status too: the first time may have changed the incident's status
            # (a reopen), which tells all of them.
            out.incidents.append(inc)
            out.statuses.extend(self._statuses(inc, None))
            return
        new = self._add_evidence(inc, [_evidence(obs)])
        new = lifecycle.on_evidence(new, _ts(obs.at_s), self.settings.reopen_window_s)
        new = self._rescore(new)
        self._commit(key, inc, new, out, statuses_for=None if new.status != inc.status else [obs])

    def _on_index(self, key: str, msg: Msg, out: Outputs) -> None:
        entries = self._entries(key)
        if msg["op"] == "del":
            self._save_entries(key, dedup.remove(entries, msg["incident_id"]), None)
            return
        entry = Entry.from_dict(msg["entry"])
        family = BY_NAME[entry.family]
        # Checked on every put, not only the first: a replay after a crash can re-send a
        # put this cell already holds while the merge it caused was lost with the crash.
        for other in entries:
            if dedup.overlaps(entry, other, family, self.roads.distance_m):
                kept, merged = dedup.survivor(entry, other)
                _log.info(
                    "border race: %s merges into %s", merged.incident_id, kept.incident_id
                )
                self._route(
                    key,
                    dedup.cell_of_incident(merged.incident_id),
                    {
                        "t": "merge",
                        "loser": merged.incident_id,
                        "winner": kept.incident_id,
                        "reason": "same fault seen across a cell border",
                    },
                    out,
                )
        self._save_entries(key, dedup.upsert(entries, entry), family)

    def _on_merge(self, key: str, msg: Msg, out: Outputs) -> None:
        self._duplicate(
            key, msg["loser"], msg["winner"], self.clock.now(), msg.get("reason") or "merged", out
        )

    def _on_absorb(self, key: str, msg: Msg, out: Outputs) -> None:
        inc = self._load(msg["incident_id"])
        if inc is None:
            _log.warning("absorb into unknown incident %s", msg["incident_id"])
            return
        if inc.status in (S.DUPLICATE, S.MERGED) and inc.merged_into:
            # Passed on along the chain of merges; ``via`` names the incidents passed
            # through. Two incidents marked duplicates of each other form a cycle: the
            # evidence then stays here instead of circling for ever.
            via = [*msg.get("via", ()), inc.incident_id]
            if inc.merged_into not in (msg["from"], *via):
                fwd = {**msg, "incident_id": inc.merged_into, "via": via}
                self._route(key, dedup.cell_of_incident(inc.merged_into), fwd, out)
                return
            _log.error(
                "incidents merged into each other; the evidence stays with %s",
                inc.incident_id,
                extra={"cycle": via},
            )
        have = {e.id for e in inc.evidence}
        evidence = [Evidence.model_validate(e) for e in msg["evidence"] if e["id"] not in have]
        if not evidence:
            # A replay, as in _duplicate: the state again, and the merged reports' statuses,
            # which may have been lost with the crash.
            out.incidents.append(inc)
            absorbed = [Evidence.model_validate(e) for e in msg["evidence"]]
            out.statuses.extend(self._merged_statuses(inc, msg["from"], absorbed, inc.updated_at))
            return
        now = self.clock.now()
        new = self._add_evidence(inc, evidence)
        new = new.model_copy(
            update={
                "history": [
                    *new.history,
                    Transition(
                        status=new.status,
                        at=now,
                        reason=f"absorbed {len(evidence)} evidence of {msg['from']}",
                    ),
                ]
            }
        )
        new = self._rescore(new)
        self._commit(key, inc, new, out, statuses_for=[])
        out.statuses.extend(self._merged_statuses(new, msg["from"], evidence, now))

    def _merged_statuses(
        self, winner: Incident, loser_id: str, evidence: list[Evidence], at: datetime
    ) -> list[RequestStatus]:
        """The statuses of reports ``winner`` took over from ``loser_id``."""
        if not self.settings.publish_request_status:
            return []
        return [
            RequestStatus(
                request_id=e.id,
                status=winner.status,
                incident_id=loser_id,
                merged_into=winner.incident_id,
                at=at,
            )
            for e in evidence
            if e.kind == EvidenceKind.REPORT
        ]

    def _on_assign(self, key: str, msg: Msg, out: Outputs) -> None:
        self._lifecycle(
            key,
            msg["incident_id"],
            out,
            lambda inc: lifecycle.on_assigned(inc, msg["crew_id"], _ts(msg["at"])),
        )

    def _on_unassign(self, key: str, msg: Msg, out: Outputs) -> None:
        self._lifecycle(
            key,
            msg["incident_id"],
            out,
            lambda inc: lifecycle.on_unassigned(inc, msg["crew_id"], _ts(msg["at"])),
        )

    def _on_crew(self, key: str, msg: Msg, out: Outputs) -> None:
        state = CrewState(msg["status"])
        self._lifecycle(
            key,
            msg["incident_id"],
            out,
            lambda inc: lifecycle.on_crew_status(inc, msg["crew_id"], state, _ts(msg["at"])),
        )

    def _on_cmd(self, key: str, msg: Msg, out: Outputs) -> None:
        cmd = Command.model_validate({k: v for k, v in msg.items() if k != "t"})
        inc_id = str(cmd.incident_id)
        if cmd.kind == CommandKind.MARK_DUPLICATE:
            target = cmd.duplicate_of
            if not target or target == inc_id:
                _log.warning(
                    "mark_duplicate without a valid duplicate_of", extra={"incident": inc_id}
                )
                return
            self._duplicate(
                key, inc_id, target, cmd.at, f"marked duplicate by {cmd.issued_by}", out
            )
        elif cmd.kind == CommandKind.CLOSE:
            self._lifecycle(
                key,
                inc_id,
                out,
                lambda inc: lifecycle.on_close(inc, cmd.at, f"closed by {cmd.issued_by}"),
            )
        elif cmd.kind == CommandKind.REPRIORITISE:

            def reprioritise(inc: Incident) -> Incident:
                new = lifecycle.on_reprioritise(inc, cmd.priority, cmd.at, cmd.issued_by)
                if new is inc:
                    return inc
                # The class sets the SLA deadline (what the dispatcher plans against); a
                # cleared manual priority gives the class of the score back.
                cls = new.manual_priority or self.thresholds.classify(new.score)
                deadline = scoring.sla_deadline(BY_NAME[new.family], cls, new.opened_at)
                return new.model_copy(update={"priority": cls, "expected_at": deadline})

            self._lifecycle(key, inc_id, out, reprioritise)

    def _on_tick(self, key: str, msg: Msg, out: Outputs) -> None:
        now = self.clock.now()

        def step(inc: Incident) -> Incident:
            if lifecycle.close_due(inc, now, self.settings.close_after_s):
                return lifecycle.on_close(
                    inc, now, f"closed {self.settings.close_after_s:.0f} s after the fix"
                )
            if not lifecycle.is_active(inc):
                return inc
            new = self._rescore(inc, now)
            eps = self.settings.rescore_epsilon_points
            if scoring.changed(inc.score, inc.priority, new.score, new.priority, eps):
                return new
            return inc

        self._lifecycle(key, msg["incident_id"], out, step)

    # -- timers --------------------------------------------------------------------------
    def due_ticks(self, items: Iterable[tuple[Any, Any]]) -> list[tuple[str, Msg]]:
        """``tick`` messages for the incidents (id, stored value) whose state is due to change.

        Called by the aging timer over the open incidents it holds (``streams.agents``
        keeps their ids, so the finished ones the table keeps for good are never read);
        the ticks go through the cell topic so every change is made by the partition that
        owns the incident. An incident that finished since its id was picked is skipped.
        """
        now = self.clock.now()
        eps = self.settings.rescore_epsilon_points
        out: list[tuple[str, Msg]] = []
        for inc_id, raw in items:
            # The engine has most open incidents parsed already (it wrote them last): reuse
            # that copy while the table still holds the same bytes.
            inc = self._known(_str(inc_id), raw)
            if inc is None:
                inc = Incident.model_validate_json(raw)
            if inc.status in lifecycle.TERMINAL:
                continue
            due = lifecycle.close_due(inc, now, self.settings.close_after_s)
            if not due and lifecycle.is_active(inc):
                new = self._rescore(inc, now)
                due = scoring.changed(inc.score, inc.priority, new.score, new.priority, eps)
            if due:
                out.append(
                    (
                        dedup.cell_of_incident(inc.incident_id),
                        {"t": "tick", "incident_id": inc.incident_id},
                    )
                )
        return out

    def finished(self, inc_id: str, raw: bytes | str) -> bool:
        """Whether the stored incident ``raw`` is finished (``lifecycle.TERMINAL``).

        Asked for every incident record written to the table, so it must be cheap: the
        record is almost always the one the engine has just built, whose parsed copy it
        keeps with these very bytes; any other record is read for its status alone.
        """
        inc = self._known(inc_id, raw)
        if inc is not None:
            return inc.status in lifecycle.TERMINAL
        return orjson.loads(raw).get("status") in lifecycle.TERMINAL

    # -- internals -----------------------------------------------------------------------
    def _route(self, here: str, key: str, msg: Msg, out: Outputs) -> None:
        if key == here:
            # Same cell, same partition: apply at once so the cell's state stays sequential.
            out.extend(self.handle(key, msg))
        else:
            out.routes.append((key, msg))

    def _send_join(self, here: str, inc_id: str, obs: Observation, out: Outputs) -> None:
        msg = {"t": "join", "incident_id": inc_id, "obs": obs.to_dict()}
        self._route(here, dedup.cell_of_incident(inc_id), msg, out)

    def _entries(self, key: str) -> list[Entry]:
        raw = self.cells.get(key)
        if not raw:
            return []
        raw = raw.encode() if isinstance(raw, str) else bytes(raw)
        cached = self._cells_parsed.get(key)
        if cached is not None and cached[0] == raw:
            return list(cached[1])
        entries = [Entry.from_dict(d) for d in loads(raw)]
        self._remember_cell(key, raw, entries)
        return list(entries)

    def _remember_cell(self, key: str, raw: bytes, entries: list[Entry]) -> None:
        if len(self._cells_parsed) >= _PARSED_CACHE:
            self._cells_parsed.pop(next(iter(self._cells_parsed)))
        self._cells_parsed[key] = (raw, entries)

    def _save_entries(self, key: str, entries: list[Entry], family: Family | None) -> None:
        now_s = self.clock.time()
        live = [e for e in entries if not dedup.expired(e, now_s, self.settings.reopen_window_s)]
        raw = dumps(live)  # orjson writes the dataclasses as their field dicts
        self.cells[key] = raw
        self._remember_cell(key, raw, live)

    def _load(self, inc_id: str) -> Incident | None:
        raw = self.incidents.get(inc_id)
        if not raw:
            return None
        inc = self._known(inc_id, raw)
        if inc is not None:
            return inc
        inc = Incident.model_validate_json(raw)
        self._remember(inc_id, raw, inc)
        return inc

    def _known(self, inc_id: str, raw: bytes | str) -> Incident | None:
        """The parsed copy of ``inc_id`` kept with exactly these stored bytes, if any."""
        cached = self._parsed.get(inc_id)
        if cached is not None and cached[0] == (raw.encode() if isinstance(raw, str) else raw):
            return cached[1]
        return None

    def encoded(self, inc: Incident) -> bytes:
        """``inc`` as its wire record, reusing the bytes just written to the table."""
        cached = self._parsed.get(inc.incident_id)
        if cached is not None and cached[1] is inc:
            return cached[0]
        return schemas.dumps(inc)

    def _store(self, inc: Incident) -> None:
        raw = schemas.dumps(inc)
        self.incidents[inc.incident_id] = raw
        self._remember(inc.incident_id, raw, inc)

    def _remember(self, inc_id: str, raw: str | bytes, inc: Incident) -> None:
        # Parsing a large incident costs more than comparing its bytes: keep the parsed
        # copy of recently used ones, checked against what the table holds.
        if len(self._parsed) >= _PARSED_CACHE:
            self._parsed.pop(next(iter(self._parsed)))
        self._parsed[inc_id] = (raw.encode() if isinstance(raw, str) else bytes(raw), inc)

    def _open(self, key: str, inc_id: str, obs: Observation, out: Outputs) -> None:
        family = BY_NAME[obs.family]
        at = _ts(obs.at_s)
        category = obs.category if obs.kind == "report" else family.primary_category.value
        base = Incident(
            incident_id=inc_id,
            version=1,
            status=S.OPEN,
            category=category,
            family=family.name,
            priority=Priority.P4,
            score=0.0,
            score_breakdown={},
            lat=obs.snap_lat,
            lon=obs.snap_lon,
            evidence=[],
            reporters=0,
            opened_at=at,
            updated_at=at,
            expected_at=at,
            history=[
                Transition(status=S.OPEN, at=at, reason=f"first {obs.kind} {obs.evidence_id}")
            ],
            asset_id=obs.asset_id,
            edge=self.roads.edge_nodes(obs.edge),
            road_class=self.roads.road_class(obs.edge),
            district=self.roads.district(obs.snap_lat, obs.snap_lon),
        )
        inc = self._rescore(self._add_evidence(base, [_evidence(obs)]))
        self._store(inc)
        out.incidents.append(inc)
        out.statuses.extend(self._statuses(inc, None))
        entry = dedup.entry_for(inc_id, obs)
        self._index_put(key, entry, family, out)

    def _index_put(self, here: str, entry: Entry, family: Family, out: Outputs) -> None:
        """Write the entry to its home cell directly and to its other cells by message."""
        for cell in dedup.entry_cells(entry, self.grid, family):
            if cell == here:
                self._save_entries(cell, dedup.upsert(self._entries(cell), entry), family)
            else:
                out.routes.append((cell, {"t": "index", "op": "put", "entry": entry.to_dict()}))

    def _index_update(self, key: str, inc: Incident, out: Outputs) -> None:
        """Keep the incident's entries in step with its state (reopen, resolve, close).

        The home cell's entry is updated at once; the other cells get a message when the
        state changed or the evidence span moved into a new ``index_refresh_s`` slot, so
        their copy lags by less than that.
        """
        entries = self._entries(key)
        mine = next((e for e in entries if e.incident_id == inc.incident_id), None)
        if mine is None:
            return
        state, fixed = dedup.ACTIVE, None
        if inc.status in (S.RESOLVED, S.CLOSED):
            fixed_at = lifecycle.fixed_at(inc)
            state = dedup.RESOLVED if inc.status == S.RESOLVED else dedup.CLOSED
            fixed = fixed_at.timestamp()
        # evidence is kept in time order, so the last one is the latest
        latest = inc.evidence[-1].at if inc.evidence else None
        last_at_s = max(mine.last_at_s, latest.timestamp() if latest else 0.0)
        new = replace(mine, state=state, resolved_at_s=fixed, last_at_s=last_at_s)
        if new == mine:
            return
        family = BY_NAME[inc.family]
        self._save_entries(key, dedup.upsert(entries, new), family)
        slot = self.settings.index_refresh_s
        if new.state == mine.state and new.last_at_s // slot == mine.last_at_s // slot:
            return
        for cell in dedup.entry_cells(new, self.grid, family):
            if cell != key:
                out.routes.append((cell, {"t": "index", "op": "put", "entry": new.to_dict()}))

    def _lifecycle(self, key: str, inc_id: str, out: Outputs, step: Any) -> None:
        inc = self._load(inc_id)
        if inc is None:
            _log.debug("event for unknown incident %s", inc_id)
            return
        new = step(inc)
        if new is inc:
            # Nothing to change, or a replay after a crash: the local table kept the change
            # while its records (incident, statuses) may never have left. Publish the state
            # again (same version); consumers keep the latest per id.
            out.incidents.append(inc)
            out.statuses.extend(self._statuses(inc, None))
            return
        self._commit(key, inc, new, out)

    def _duplicate(
        self, key: str, loser_id: str, winner_id: str, at: datetime, reason: str, out: Outputs
    ) -> None:
        inc = self._load(loser_id)
        if inc is None:
            _log.warning("duplicate of unknown incident %s", loser_id)
            return
        new = lifecycle.on_duplicate(inc, winner_id, at, reason)
        if new is inc:
            # Already done: the other cell of a border race, or a replay after a crash that
            # may have lost the records and messages of the first time. Publish the state
            # and send the evidence again (both idempotent).
            out.incidents.append(inc)
            if inc.merged_into != winner_id:
                return
        else:
            self._commit(key, inc, new, out)
        evidence = [e.model_dump(mode="json") for e in inc.evidence]
        self._route(
            key,
            dedup.cell_of_incident(winner_id),
            {"t": "absorb", "incident_id": winner_id, "from": loser_id, "evidence": evidence},
            out,
        )
        anchor = self._entries(key)
        mine = next((e for e in anchor if e.incident_id == loser_id), None)
        if mine is not None:
            for cell in dedup.entry_cells(mine, self.grid, BY_NAME[mine.family]):
                if cell == key:
                    self._save_entries(cell, dedup.remove(anchor, loser_id), None)
                else:
                    out.routes.append((cell, {"t": "index", "op": "del", "incident_id": loser_id}))

    def _commit(
        self,
        key: str,
        old: Incident,
        new: Incident,
        out: Outputs,
        statuses_for: list[Observation] | None = None,
    ) -> None:
        """Store and publish ``new`` when it differs from ``old`` (version + 1)."""
        if new is old:
            return
        new = new.model_copy(
            update={"version": old.version + 1, "updated_at": max(new.updated_at, self.clock.now())}
        )
        self._store(new)
        out.incidents.append(new)
        if statuses_for is None:
            out.statuses.extend(self._statuses(new, None))
        else:
            out.statuses.extend(self._statuses(new, {o.evidence_id for o in statuses_for}))
        self._index_update(key, new, out)

    def _statuses(self, inc: Incident, only: set[str] | None) -> list[RequestStatus]:
        if not self.settings.publish_request_status:
            return []
        at = inc.updated_at
        # Every field comes from a validated incident: construct without re-validating.
        return [
            RequestStatus.model_construct(
                v=1,
                request_id=e.id,
                status=inc.status,
                incident_id=inc.incident_id,
                merged_into=inc.merged_into,
                at=at,
            )
            for e in inc.evidence
            if e.kind == EvidenceKind.REPORT and (only is None or e.id in only)
        ]

    def _add_evidence(self, inc: Incident, evidence: list[Evidence]) -> Incident:
        merged = sorted([*inc.evidence, *evidence], key=lambda e: (e.at or inc.opened_at, e.id))
        reports = [e for e in merged if e.kind == EvidenceKind.REPORT]
        alerts = [e for e in merged if e.kind == EvidenceKind.ALERT]
        reporters = len({e.source or e.id for e in reports})
        return inc.model_copy(
            update={
                "evidence": merged,
                "reporters": reporters,
                "sensor_corroborated": bool(reports and alerts),
                "opened_at": min([inc.opened_at, *(e.at for e in evidence if e.at is not None)]),
            }
        )

    def _rescore(self, inc: Incident, now: datetime | None = None) -> Incident:
        family = BY_NAME[inc.family]
        mags = [
            magnitude(e.category or "", e.value)
            for e in inc.evidence
            if e.kind == EvidenceKind.ALERT and e.value is not None
        ]
        reports = any(e.kind == EvidenceKind.REPORT for e in inc.evidence)
        end = now or max([inc.opened_at, *(e.at for e in inc.evidence if e.at is not None)])
        factors = scoring.Factors(
            family=family,
            magnitude=max(mags, default=0.0),
            reporters=inc.reporters,
            corroborated=bool(mags) and reports,
            road_class=inc.road_class,
            poi_kinds=self.roads.poi_kinds(inc.lat, inc.lon),
            open_s=(end - inc.opened_at).total_seconds(),
            time_open_floor=inc.score_breakdown.get(scoring.TIME_OPEN, 0.0),
        )
        s = scoring.score(factors, self.thresholds)
        return inc.model_copy(
            update={
                "score": s.total,
                "score_breakdown": s.breakdown,
                "priority": inc.manual_priority or s.priority,
                "expected_at": scoring.sla_deadline(
                    family, inc.manual_priority or s.priority, inc.opened_at
                ),
            }
        )


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def _observation(p: CitizenReport | SensorAlert, snap: Any) -> Observation:
    where = {
        "lat": p.lat,
        "lon": p.lon,
        "edge": snap.edge,
        "along_m": snap.along_m,
        "snap_lat": snap.snap_lat,
        "snap_lon": snap.snap_lon,
        "asset_id": p.asset_id,
    }
    if isinstance(p, CitizenReport):
        return Observation(
            evidence_id=str(p.report_id),
            kind="report",
            family=family_of_category(p.category).name,
            category=p.category.value,
            at_s=p.reported_at.timestamp(),
            source=p.client_id,
            description=p.description,
            media_url=p.media_url,
            **where,
        )
    return Observation(
        evidence_id=str(p.alert_id),
        kind="alert",
        family=family_of_kind(p.kind).name,
        category=p.kind.value,
        at_s=p.observed_at.timestamp(),
        source=p.device_id,
        value=p.value,
        **where,
    )


def _evidence(obs: Observation) -> Evidence:
    return Evidence(
        kind=EvidenceKind(obs.kind),
        id=obs.evidence_id,
        source=obs.source,
        at=_ts(obs.at_s),
        lat=obs.lat,
        lon=obs.lon,
        category=obs.category,
        value=obs.value,
        description=obs.description,
        media_url=obs.media_url,
    )


class Inline:
    """The engine run in-process over dicts, routing cell messages through a local queue.

    Handy for tests and the benchmark: ``feed`` raw records and read ``incidents`` (the
    latest record per id), ``published`` (every incident record, in order) and
    ``statuses``.
    """

    def __init__(self, settings: StreamsSettings, roads: Roads, clock: Clock) -> None:
        self.engine = Engine(settings, roads, clock, cells={}, incidents={}, seen={})
        self.queue: deque[tuple[str, Msg]] = deque()
        self.published: list[Incident] = []
        self.statuses: list[RequestStatus] = []
        self.rejected: list[Rejected] = []
        self.crew_plans: dict[str, list[str]] = {}

    @property
    def incidents(self) -> dict[str, Incident]:
        """Latest state per incident id."""
        return {i.incident_id: i for i in self.published}

    def active(self) -> list[Incident]:
        """Incidents that are not duplicates."""
        return [i for i in self.incidents.values() if i.status not in (S.DUPLICATE, S.MERGED)]

    def feed(self, raws: list[tuple[str, bytes]]) -> None:
        """Locate raw ``("report"|"alert", payload)`` records and process them fully."""
        for r in self.engine.locate(raws):
            if isinstance(r, Rejected):
                self.rejected.append(r)
            else:
                self.queue.append(r)
        self.drain()

    def send(self, key: str, msg: Msg) -> None:
        """Put one cell message on the queue and process until quiet."""
        self.queue.append((key, msg))
        self.drain()

    def assignment(self, crew_id: str, incident_ids: list[str], at_s: float) -> None:
        """A crew's new plan."""
        before = self.crew_plans.get(crew_id, [])
        self.crew_plans[crew_id] = list(incident_ids)
        self.queue.extend(self.engine.plan_changes(crew_id, before, incident_ids, at_s))
        self.drain()

    def drain(self) -> None:
        """Process queued cell messages (and what they route) until none is left."""
        while self.queue:
            key, msg = self.queue.popleft()
            # Round-trip through JSON as the topic would.
            out = self.engine.handle(key, loads(dumps(msg)))
            self.published.extend(out.incidents)
            self.statuses.extend(out.statuses)
            self.queue.extend(out.routes)
