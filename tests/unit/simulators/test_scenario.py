from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from simulators.scenario import REPO, load_scenario


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "city.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("crews", "field"),
    [
        ("[{prefix: roads, materials: {asphalt_bags: -2}}]", "materials.asphalt_bags"),
        (f"[{{prefix: roads, skills: [{'r' * 33}]}}]", "skills.0"),
        (f"[{{prefix: roads, materials: {{{'m' * 33}: 1}}}}]", "materials"),
    ],
)
def test_a_crew_the_wire_would_refuse_is_refused_on_load(
    tmp_path: Path, crews: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=f"crews.groups.0.{field}"):
        load_scenario(scenario_file(tmp_path, f"crews: {crews}\n"))


def test_two_groups_with_one_prefix_are_refused(tmp_path: Path) -> None:
    text = "crews: [{prefix: roads, count: 2}, {prefix: roads}]\n"
    with pytest.raises(ConfigError, match="roads-01 is used twice"):
        load_scenario(scenario_file(tmp_path, text))


def test_a_crew_id_that_is_also_a_device_id_is_refused(tmp_path: Path) -> None:
    text = "sensors: {water_pressure: 120}\ncrews: [{prefix: water, count: 100}]\n"
    with pytest.raises(ConfigError, match="water-100 is used twice"):
        load_scenario(scenario_file(tmp_path, text))


def test_the_shipped_scenarios_load() -> None:
    for path in sorted((REPO / "scenarios").glob("*.yaml")):
        assert load_scenario(path).crew_ids()
