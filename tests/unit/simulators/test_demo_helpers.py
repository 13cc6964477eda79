from __future__ import annotations

import pytest

from cli.cmd_demo import anchored_clock, clock_env, next_sim_epoch, resolve_command
from core.settings import Settings

DAY = 86400.0


def test_each_demo_run_starts_a_fresh_simulated_day() -> None:
    now = 20_000 * DAY + 10 * 3600  # 10:00
    first = next_sim_epoch(now, None, start_hour=7)
    assert first == 20_001 * DAY + 7 * 3600  # 07:00 tomorrow: 07:00 today is past
    assert next_sim_epoch(now - 4 * 3600, None, start_hour=7) == 20_000 * DAY + 7 * 3600
    # A later run starts after the previous run's simulated end, never inside it.
    second = next_sim_epoch(now + 60, first + 5 * 3600, start_hour=7)
    assert second == first + DAY


def test_the_demo_finds_the_subcommands_that_exist() -> None:
    assert resolve_command([["nope"], ["services", "up"]]) == ["services", "up"]
    assert resolve_command([["services"]]) is None  # a group is not runnable
    assert resolve_command([["no", "such"]]) is None


def test_the_scenario_starts_when_the_simulators_do(monkeypatch: pytest.MonkeyPatch) -> None:
    sim_epoch = 20_001 * DAY + 7 * 3600
    clock = anchored_clock(60.0, sim_epoch, starts_in_s=8.0)
    # During the 8 s warm-up the city has not reached the scenario's first second yet.
    assert clock.time() == pytest.approx(sim_epoch - 8.0 * 60, abs=1.0)
    # Every child process reads the same anchor from its environment.
    for name, value in clock_env(clock).items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None).make_clock() == clock  # type: ignore[call-arg]
