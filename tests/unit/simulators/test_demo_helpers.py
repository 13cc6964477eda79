from __future__ import annotations

from cli.cmd_demo import next_sim_epoch, resolve_command

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
