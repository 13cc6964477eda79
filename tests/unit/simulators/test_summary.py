from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulators.summary import Tally, percentiles, summarise

T0 = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def incident(
    iid: str,
    priority: str,
    *,
    assigned: float | None,
    resolved: float | None,
    sla_min: float = 240,
    evidence: int = 2,
    version: int = 3,
    **over,
) -> dict:
    history = [{"status": "open", "at": iso(0)}]
    if assigned is not None:
        history.append({"status": "assigned", "at": iso(assigned)})
        history.append({"status": "en_route", "at": iso(assigned + 1)})
    if resolved is not None:
        history.append({"status": "resolved", "at": iso(resolved)})
    doc = {
        "incident_id": iid,
        "version": version,
        "status": history[-1]["status"],
        "priority": priority,
        "opened_at": iso(0),
        "updated_at": iso(resolved or assigned or 0),
        "expected_at": iso(sla_min),
        "evidence": [{"kind": "report", "id": f"{iid}-{k}"} for k in range(evidence)],
        "history": history,
    }
    doc.update(over)
    return doc


def test_percentiles() -> None:
    assert percentiles([]) == {"n": 0, "p50": None, "p90": None}
    assert percentiles(range(1, 11)) == {"n": 10, "p50": 5.5, "p90": 9.1}


def test_summary_of_a_run() -> None:
    tally = Tally()
    for _ in range(7):
        tally.add("raw.reports", None, {"reported_at": iso(0)})
    tally.add("raw.sensor-alerts", None, {"observed_at": iso(0)})
    # An older version arriving after a newer one does not win.
    tally.add("incidents", "a", incident("a", "P1", assigned=10, resolved=60, evidence=3))
    tally.add("incidents", "a", incident("a", "P1", assigned=None, resolved=None, version=1))
    tally.add("incidents", "b", incident("b", "P1", assigned=20, resolved=300, sla_min=240))
    tally.add("incidents", "c", incident("c", "P3", assigned=5, resolved=None, evidence=1))
    tally.add("incidents", "d", incident("d", "P4", assigned=None, resolved=None, evidence=1))
    tally.add(
        "incidents",
        "e",
        incident("e", "P3", assigned=None, resolved=None, status="merged", evidence=4),
    )
    tally.add("assignments", "roads-01", {"crew_id": "roads-01", "stops": [{"incident_id": "c"}]})
    tally.add("assignments", "roads-02", {"crew_id": "roads-02", "stops": []})

    s = summarise(tally, {"tracked": 7, "seen_closed": 3})

    assert (s["reports"], s["alerts"], s["assignments"]) == (7, 1, 2)
    assert s["incidents"] == 4  # the merged one is not an incident of its own
    assert (s["incidents_resolved"], s["incidents_open"]) == (2, 2)
    assert s["dedup_ratio"] == pytest.approx((3 + 2 + 1 + 1) / 4, abs=0.01)
    assert s["crews_busy"] == 1
    assert s["time_to_assign_min"]["P1"] == {"n": 2, "p50": 15.0, "p90": 19.0}
    assert s["time_to_assign_min"]["P3"]["n"] == 1
    assert s["time_to_resolve_min"]["P1"] == {"n": 2, "p50": 180.0, "p90": 276.0}
    assert s["time_to_resolve_min"]["all"]["n"] == 2
    assert s["sla"] == {"resolved": 2, "met": 1, "met_pct": 50.0}
    assert s["citizens"] == {"reports_tracked": 7, "saw_closed": 3}


def test_transitions_from_another_clock_are_not_counted_as_instant() -> None:
    tally = Tally()
    inc = incident("a", "P2", assigned=10, resolved=None)
    inc["history"][1]["at"] = "2020-01-01T00:00:00+00:00"  # stamped by a wall clock
    inc["history"][2]["at"] = "2020-01-01T00:00:01+00:00"
    tally.add("incidents", "a", inc)
    s = summarise(tally)
    assert s["time_to_assign_min"]["P2"]["n"] == 0
    assert s["times_off_clock"] == 1


def test_an_empty_run_summarises_to_zeros() -> None:
    s = summarise(Tally())
    assert s["incidents"] == 0 and s["dedup_ratio"] is None
    assert s["sla"]["met_pct"] is None
