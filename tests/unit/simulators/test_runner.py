from __future__ import annotations

import threading

import pytest

from core.errors import ServiceUnavailable
from simulators.runner import run_jobs


def test_a_failed_simulator_fails_the_run_even_when_another_does_not_stop() -> None:
    stop, release = threading.Event(), threading.Event()

    def crews() -> dict[str, object]:
        raise ServiceUnavailable("MQTT login as roads-01 not accepted")

    def sensors() -> dict[str, object]:
        release.wait(10.0)  # stuck flushing to a slow broker
        return {}

    try:
        with pytest.raises(RuntimeError, match="crews simulator failed"):
            run_jobs({"sensors": sensors, "crews": crews}, stop, {}, grace_s=0.2)
    finally:
        release.set()
    assert stop.is_set(), "the others were told to stop"


def test_a_stopped_run_returns_what_has_finished() -> None:
    stop, release = threading.Event(), threading.Event()
    stop.set()

    def sensors() -> dict[str, object]:
        release.wait(10.0)
        return {}

    try:
        results = run_jobs(
            {"citizens": lambda: {"sent": 3}, "sensors": sensors}, stop, {}, grace_s=0.2
        )
    finally:
        release.set()
    assert results == {"citizens": {"sent": 3}}
