from __future__ import annotations

import numpy as np
import pytest

import geo
from core.settings import GeoSettings

from .conftest import DATA


def test_grid_districts_without_admin_boundaries(ags: geo.RoadGraph) -> None:
    assert ags.district_names == []  # this extract carries no admin relations
    lat, lon = float(ags.node_lat[0]), float(ags.node_lon[0])
    district = ags.district_of(lat, lon)
    assert district.startswith("grid-")
    # a point 100 m away is (almost surely) in the same 2 km cell; 5 km away is not
    assert ags.district_of(lat + 0.01, lon + 0.01) != ags.district_of(lat + 0.06, lon + 0.06)
    assert ags.districts_of([lat], [lon]) == [district]


def test_pois_near_a_school(ags: geo.RoadGraph) -> None:
    frame = ags.pois_frame()
    assert ags.poi_count == len(frame) > 10
    assert {"school", "kindergarten"} <= set(frame["kind"])
    school = frame[frame["kind"] == "school"].iloc[0]
    near = ags.pois_near(school.geometry.y + 50 / 111_320, school.geometry.x, radius_m=300)
    assert near[0].kind == "school"
    assert 40 < near[0].distance_m < 60
    assert [p.distance_m for p in near] == sorted(p.distance_m for p in near)
    assert all(p.distance_m <= 300 for p in near)
    assert ags.pois_near(0.0, 0.0, radius_m=300) == []


@pytest.mark.slow
def test_admin_districts_from_the_extract(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = GeoSettings(city="monaco", osm_dir=DATA, cache_dir=tmp_path_factory.mktemp("monaco"))
    monaco = geo.load_city(settings)
    assert "Monte-Carlo" in monaco.district_names
    assert monaco.district_of(43.7396, 7.4269) == "Monte-Carlo"  # the casino
    assert monaco.district_of(43.7764, 7.4975) == "Menton" or monaco.district_of(
        43.7764, 7.4975
    ).startswith("grid-")
    frame = monaco.districts_frame()
    assert len(frame) == len(monaco.district_names)
    assert np.isfinite(frame.total_bounds).all()
    assert {p.kind for p in monaco.pois_near(43.7300, 7.4200, radius_m=2000)} & {
        "school",
        "hospital",
    }
