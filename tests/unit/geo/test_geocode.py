"""The offline geocoder on the aguascalientes extract.

Expected places are read from the extract itself with pyosmium (way nodes, address
nodes), independently of the index under test.
"""

from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import osmium
import pytest

from core.settings import GeoSettings
from geo import geocode as gc
from geo.geocode import Geocoder, Placed, Refused

DATA = Path(__file__).resolve().parents[3] / "data" / "osm"
PBF = DATA / "aguascalientes.osm.pbf"


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), for checking answers."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


NAME_TAGS = ("name", "alt_name", "official_name", "old_name", "short_name")


def way_nodes(name: str) -> dict[int, tuple[float, float]]:
    """Node id -> (lat, lon) of every highway way with ``name`` among its names."""
    out: dict[int, tuple[float, float]] = {}
    for way in osmium.FileProcessor(str(PBF), osmium.osm.NODE | osmium.osm.WAY).with_locations():
        if not isinstance(way, osmium.osm.Way) or "highway" not in way.tags:
            continue
        names = {v for k in NAME_TAGS for v in (way.tags.get(k) or "").split(";")}
        if name in names:
            out.update({n.ref: (n.lat, n.lon) for n in way.nodes})
    return out


def address_node(street: str, number: str) -> tuple[float, float]:
    for node in osmium.FileProcessor(str(PBF), osmium.osm.NODE):
        tags = node.tags
        if tags.get("addr:street") == street and tags.get("addr:housenumber") == number:
            return node.location.lat, node.location.lon
    raise AssertionError(f"no address {street} {number} in the extract")


@pytest.fixture(scope="module")
def ags(geo_settings: GeoSettings) -> Geocoder:
    return gc.load_geocoder(geo_settings)


def placed(result: gc.GeocodeResult) -> Placed:
    assert isinstance(result, Placed), result
    return result


def refused(result: gc.GeocodeResult, reason: str) -> Refused:
    assert isinstance(result, Refused), result
    assert result.reason == reason, result
    return result


# --- normalisation ---------------------------------------------------------------------------


def test_fold_strips_case_and_accents():
    assert gc.fold("Ávila Camacho ÑANDÚ") == "avila camacho nandu"
    assert gc.tokens("Rua D'Ouro, n.º 12") == ["rua", "d", "ouro", "n", "o", "12"]


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("pt", "R. Dr. António Sousa Oliveira", "rua doutor antonio sousa oliveira"),
        ("pt", "Av. da Boavista", "avenida da boavista"),
        ("pt", "Pç. da Liberdade", "praca da liberdade"),
        ("pt", "Tv. de Cedofeita", "travessa de cedofeita"),
        ("pt", "Trav. do Carregal", "travessa do carregal"),
        ("pt", "Lg. dos Lóios", "largo dos loios"),
        ("pt", "Rua S. João", "rua sao joao"),
        ("es", "C. Cisne", "calle cisne"),
        ("es", "Av. Convención de 1914 Sur", "avenida convencion de 1914 sur"),
        ("es", "Avda. Ferrocarril", "avenida ferrocarril"),
        ("es", "Blvd. José Ma. Chávez", "boulevard jose maria chavez"),
        ("es", "Priv. Guaymas", "privada guaymas"),
        ("es", "Prol. Olivos", "prolongacion olivos"),
        ("es", "Av. Convención Pte.", "avenida convencion poniente"),
        ("en", "St Mary St", "saint mary street"),
        ("en", "120 Main Ave", "120 main avenue"),
        ("en", "Dr Smith Dr", "doctor smith drive"),
        ("en", "Ocean Blvd", "ocean boulevard"),
        ("en", "Mill Rd", "mill road"),
    ],
)
def test_normalise_expands_the_languages_abbreviations(lang, text, expected):
    assert gc.normalise(text, lang) == expected


def test_an_abbreviation_is_expanded_only_where_it_is_one():
    # "C." is Calle only as the first word; "S." is São only after it.
    assert gc.normalise("Calle C", "es") == "calle c"
    assert gc.normalise("S Bento", "pt") == "s bento"


def test_key_drops_the_street_type_and_particles():
    assert gc.key_of(["rua", "de", "santa", "catarina"]) == "santa catarina"
    assert gc.key_of(["calle", "cisne"]) == "cisne"
    assert gc.key_of(["main", "street"]) == "main"
    assert gc.key_of(["avenida", "de", "las", "palmas"]) == "palmas"
    assert gc.key_of(["calle"]) == "calle"  # nothing else left: the name itself


@pytest.mark.parametrize(
    ("raw", "numbers"),
    [
        ("102", ["102"]),
        ("12A", ["12a"]),
        ("12-a", ["12a"]),
        ("120-122", ["120", "122"]),
        ("1335 Y CIRCUNVALACION SUR", ["1335"]),
        ("422,COL VILLAS", ["422"]),
        ("S/N", []),
        ("SN", []),
    ],
)
def test_house_numbers(raw, numbers):
    assert gc.house_numbers(raw) == numbers


def test_language_is_detected_from_street_types():
    assert gc.detect_language(["Rua das Flores", "Travessa X", "Avenida Y"]) == "pt"
    assert gc.detect_language(["Calle Cisne", "Privada Z", "Avenida Y"]) == "es"
    assert gc.detect_language(["Main Street", "Mill Road"]) == "en"
    assert gc.detect_language([]) == "en"


# --- the index -------------------------------------------------------------------------------


def test_index_is_built_once_and_loads_from_cache(geo_settings: GeoSettings, ags: Geocoder):
    path = gc.cache_path(PBF, geo_settings.cache_dir)
    assert path.is_file() and path.parent.name == gc.sha256_of(PBF)
    before = path.stat().st_mtime_ns, path.read_bytes()
    assert gc.build_index(PBF, geo_settings.cache_dir) == path
    assert path.stat().st_mtime_ns == before[0]  # a hit does not rebuild
    gc.build_index(PBF, geo_settings.cache_dir, force=True)
    assert path.read_bytes() == before[1]  # the same extract gives the same bytes
    assert gc.load_geocoder(geo_settings) is ags  # memoised per process
    assert ags.lang == "es" and ags.street_count > 300 and ags.address_count > 400
    assert ags.meta["attribution"] == gc.ATTRIBUTION


def test_one_name_in_distant_places_is_several_streets(ags: Geocoder):
    streets = ags.streets_named("Calle Nayarit")
    assert len(streets) == 2
    nodes = way_nodes("Calle Nayarit")
    a = {int(i) for i in ags.street_nodes(streets[0])[0]}
    b = {int(i) for i in ags.street_nodes(streets[1])[0]}
    assert a | b == set(nodes) and not a & b
    gap = min(metres(*nodes[i], *nodes[j]) for i in a for j in b)
    assert gap > gc.SAME_STREET_GAP_M


# --- house addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "Calle Cisne 102",
        "Cisne 102",
        "102 Calle Cisne",
        "Calle Cisne #102",
        "C. Cisne #102 Col. Centro",
        "Calle Cisne No. 102",
        "calle cisne, 102",
        "Calle Cisne 102, 20250 Aguascalientes",
        "CALLE CISNE 102 AGUASCALIENTES",
    ],
)
def test_a_house_address_is_the_address_point(ags: Geocoder, query: str):
    lat, lon = address_node("Cisne", "102")
    got = placed(ags.geocode(query))
    assert got.precision == "address" and got.matched == "Calle Cisne 102"
    assert metres(got.lat, got.lon, lat, lon) < 0.5


def test_an_abbreviated_street_finds_its_address(ags: Geocoder):
    lat, lon = address_node("Avenida Mariano Escobedo", "1302")
    got = placed(ags.geocode("Av. Mariano Escobedo 1302"))
    assert got.precision == "address" and metres(got.lat, got.lon, lat, lon) < 0.5


def test_a_house_number_picks_one_of_several_streets_of_a_name(ags: Geocoder):
    refused(ags.geocode("Calle Nayarit"), "ambiguous")
    lat, lon = address_node("Nayarit", "308")
    got = placed(ags.geocode("Calle Nayarit 308"))
    assert got.precision == "address" and metres(got.lat, got.lon, lat, lon) < 0.5


# --- intersections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "Calle Acuario / Calle Piscis",
        "Calle Acuario & Calle Piscis",
        "Calle Acuario y Calle Piscis",
        "Acuario x Piscis",
        "esquina Calle Acuario y Calle Piscis",
        "Calle Acuario esq. con Calle Piscis",
        "corner of Calle Acuario and Calle Piscis",
        "Calle Piscis / Acuario, Aguascalientes",
    ],
)
def test_an_intersection_is_a_node_both_streets_share(ags: Geocoder, query: str):
    a, b = way_nodes("Calle Acuario"), way_nodes("Calle Piscis")
    shared = set(a) & set(b)
    assert shared
    got = placed(ags.geocode(query))
    assert got.precision == "intersection"
    assert set(got.matched.split(" / ")) == {"Calle Acuario", "Calle Piscis"}
    assert min(metres(got.lat, got.lon, *a[n]) for n in shared) < 1.0


def closest_pair(a: str, b: str) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """The closest nodes of two streets that share none, and their distance (m)."""
    nodes_a, nodes_b = way_nodes(a), way_nodes(b)
    assert nodes_a and nodes_b and not set(nodes_a) & set(nodes_b)
    return min((metres(*p, *q), p, q) for p in nodes_a.values() for q in nodes_b.values())


def test_streets_ending_a_few_metres_apart_meet_between_their_closest_nodes(ags: Geocoder):
    gap, p, q = closest_pair("Calle Casiopea", "Calle Halley")
    assert gap < 30.0
    got = placed(ags.geocode("Calle Casiopea / Calle Halley"))
    assert got.precision == "intersection"
    assert metres(got.lat, got.lon, *p) <= gap / 2 + 0.5
    assert metres(got.lat, got.lon, *q) <= gap / 2 + 0.5


def test_streets_more_than_30_m_apart_do_not_meet(ags: Geocoder):
    gap, _, _ = closest_pair("Calle Casiopea", "Avenida Arqueros")
    assert 30.0 < gap < 40.0
    refused(ags.geocode("Calle Casiopea / Avenida Arqueros"), "no_crossing")


def test_streets_that_do_not_meet_are_refused(ags: Geocoder):
    a, b = way_nodes("Calle Cisne"), way_nodes("Calle Sol")
    assert not set(a) & set(b)
    assert min(metres(*p, *q) for p in a.values() for q in b.values()) > gc.NEAR_CROSSING_M
    got = refused(ags.geocode("Calle Cisne / Calle Sol"), "no_crossing")
    assert "do not meet" in got.description


def test_a_crossing_with_an_unknown_street_names_it(ags: Geocoder):
    got = refused(ags.geocode("Calle Cisne / Calle Inexistente"), "unknown_street")
    assert "calle inexistente" in got.description


def test_a_corner_word_inside_a_known_name_is_part_of_it(ags: Geocoder):
    # A mapper's addr:street "Avenida Mariano Escobedo Esquina Issste" is a name here...
    lat, lon = address_node("Avenida Mariano Escobedo Esquina Issste, 101", "101")
    got = placed(ags.geocode("Avenida Mariano Escobedo Esquina Issste 101"))
    assert got.precision == "address" and metres(got.lat, got.lon, lat, lon) < 0.5
    # ...while the same words not naming anything are a corner.
    got = placed(ags.geocode("Avenida Mariano Escobedo esquina Calle ISSSTE"))
    assert got.precision == "intersection"
    assert got.matched == "Avenida Mariano Escobedo / Calle ISSSTE"


def test_a_name_with_y_in_it_is_one_street_not_a_crossing(ags: Geocoder):
    got = placed(ags.geocode("Pasaje Agustín Loera y Chávez"))
    assert got.precision == "street" and got.matched == "Pasaje Agustín Loera y Chávez"


# --- streets alone ---------------------------------------------------------------------------


def test_a_short_street_alone_is_placed_at_its_middle(ags: Geocoder):
    nodes = way_nodes("Privada Guaymas")
    got = placed(ags.geocode("Privada Guaymas"))
    assert got.precision == "street" and got.matched == "Privada Guaymas"
    assert max(metres(got.lat, got.lon, *p) for p in nodes.values()) <= 150.0
    assert placed(ags.geocode("Priv. Guaymas")) == got


def test_a_long_street_alone_is_too_vague(ags: Geocoder):
    nodes = list(way_nodes("Avenida Mariano Escobedo").values())
    # No point of the street can have every node within 150 m of it.
    assert max(metres(*p, *q) for p, q in combinations(nodes, 2)) > 2 * 150.0
    got = refused(ags.geocode("Avenida Mariano Escobedo"), "too_vague")
    assert "give a house number on the map or a cross street" in got.description


def test_the_street_radius_is_a_setting(ags: Geocoder):
    refused(ags.geocode("Calle Cisne"), "too_vague")
    got = placed(ags.geocode("Calle Cisne", max_street_radius_m=250.0))
    nodes = way_nodes("Calle Cisne")
    assert max(metres(got.lat, got.lon, *p) for p in nodes.values()) <= 250.0


def test_a_house_number_the_map_lacks(ags: Geocoder):
    got = placed(ags.geocode("Privada Guaymas 999"))
    assert got.precision == "street" and "999 is not on the map" in got.note
    got_long = refused(ags.geocode("Avenida Mariano Escobedo 99999"), "too_vague")
    assert "99999 is not on the map" in got_long.description


# --- name matching ---------------------------------------------------------------------------


def test_accents_and_case_do_not_matter(ags: Geocoder):
    got = placed(ags.geocode("calle belisario dominguez"))
    assert got.matched == "Calle Belisario Domínguez" and got.score == 100.0


def test_a_typo_is_matched_fuzzily_above_the_threshold(ags: Geocoder):
    got = placed(ags.geocode("Calle Belisario Dominges"))
    assert got.matched == "Calle Belisario Domínguez"
    assert gc.MIN_FUZZY_SCORE <= got.score < 100.0


def test_nothing_below_the_fuzzy_threshold_is_returned(ags: Geocoder):
    refused(ags.geocode("Calle Blsro Dmngz"), "unknown_street")
    refused(ags.geocode("Calle Xochimilco 12"), "unknown_street")
    # A number in a name is not fuzzy: "Calle 8" is not "Calle 7".
    assert ags.match("Calle 8") is None


def test_unknown_street_is_refused_naming_it(ags: Geocoder):
    got = refused(ags.geocode("Calle Que No Existe 12"), "unknown_street")
    assert "calle que no existe" in got.description


def test_several_streets_of_one_name_are_ambiguous(ags: Geocoder):
    got = refused(ags.geocode("Calle Nayarit"), "ambiguous")
    assert "2 different streets" in got.description


def test_empty_and_oversized_queries(ags: Geocoder):
    refused(ags.geocode("   "), "empty")
    refused(ags.geocode("Calle Cisne " * 40), "too_long")


def test_every_indexed_address_finds_itself(ags: Geocoder):
    # Each (street, number) of the index, asked back, gives that point or an honest
    # ambiguity (the same number twice on a street in distant places).
    checked = 0
    for street, number, lat, lon in ags.addresses():
        got = ags.geocode(f"{street} {number}")
        if isinstance(got, Refused):
            assert got.reason == "ambiguous", (street, number, got)
            continue
        assert got.precision == "address", (street, number, got)
        near = [
            metres(got.lat, got.lon, a_lat, a_lon)
            for s, n, a_lat, a_lon in ags.addresses()
            if n == number and gc.key_of(gc.tokens(s)) == gc.key_of(gc.tokens(street))
        ]
        assert min(near) < 0.5
        checked += 1
    assert checked > 400


# --- reviewed cases ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def porto(tmp_path_factory: pytest.TempPathFactory) -> Geocoder:
    settings = GeoSettings(
        city="porto_portugal", osm_dir=DATA, cache_dir=tmp_path_factory.mktemp("geo-porto")
    )
    return gc.load_geocoder(settings)


def not_placed_at(result: gc.GeocodeResult, number: str) -> str:
    """The street answer (or refusal) for a house number the street lacks; its text."""
    if isinstance(result, Placed):
        assert result.precision == "street", result
        return result.note
    assert result.reason in ("too_vague", "ambiguous"), result
    return result.description


@pytest.mark.parametrize(
    ("query", "other"),
    [("Privada Arqueros 509", "Avenida Arqueros"), ("Calle Perseo 102", "Avenida Perseo")],
)
def test_an_address_of_another_street_sharing_the_key_is_not_taken(
    ags: Geocoder, query: str, other: str
):
    number = query.split()[-1]
    assert placed(ags.geocode(f"{other} {number}")).precision == "address"  # it exists...
    got = ags.geocode(query)  # ...on the other street only: the number is missing here
    assert f"house number {number} is not on the map" in not_placed_at(got, number)


def test_a_whole_mapped_name_is_not_read_as_a_name_and_a_number(
    ags: Geocoder, porto: Geocoder
):
    got = placed(ags.geocode("1a. Nayarit"))
    assert (got.precision, got.matched, got.note) == ("street", "1a. Nayarit", "")
    got = placed(porto.geocode("Estrada Municipal 513-3", max_street_radius_m=500.0))
    assert (got.precision, got.matched, got.note) == ("street", "Estrada Municipal 513-3", "")
    # "1º de Maio" is an ordinal date, not number 1º of "Rua de Maio".
    got = porto.geocode("1º de Maio")
    assert "Rua de Maio" not in str(got) and "1º de Maio" in str(got)


def test_a_portuguese_d_is_dom_and_still_an_elided_de(porto: Geocoder):
    got = placed(porto.geocode("Praça D. João I"))
    assert got.matched == "Praça Dom João I" and got.score == 100.0
    assert placed(porto.geocode("Praça João I")).matched == "Praça Dom João I"
    assert placed(porto.geocode("Rua de Algés")).matched == "Rua d'Algés"
    assert placed(porto.geocode("Rua D")).matched == "Rua D"


def test_roman_numerals_are_numbers_for_fuzzy_matching(porto: Geocoder):
    # "João XXII" is neither João XXI nor João XXIII, however close the letters.
    refused(porto.geocode("Praça João XXII"), "unknown_street")
    assert porto.match("Avenida de Joao XX") is None


def test_a_fuzzy_match_of_another_street_type_needs_a_higher_score(ags: Geocoder):
    assert placed(ags.geocode("Calle Belisario Dominges")).matched == "Calle Belisario Domínguez"
    refused(ags.geocode("Privada Belisario Dominges"), "unknown_street")


@pytest.mark.parametrize(
    ("query", "street", "number", "matched"),
    [
        ("Calle Nayarit 308, 20290, Aguascalientes, Ags.", "Nayarit", "308", "Calle Nayarit 308"),
        ("Calle Cisne 102, 20001", "Cisne", "102", "Calle Cisne 102"),
    ],
)
def test_a_postcode_part_does_not_replace_the_house_number(
    ags: Geocoder, query: str, street: str, number: str, matched: str
):
    lat, lon = address_node(street, number)
    got = placed(ags.geocode(query))
    assert (got.precision, got.matched) == ("address", matched)
    assert metres(got.lat, got.lon, lat, lon) < 0.5


def test_a_corner_word_after_a_comma_is_an_intersection(ags: Geocoder, porto: Geocoder):
    got = placed(ags.geocode("Calle Acuario, esq. Calle Piscis"))
    assert got.precision == "intersection"
    assert set(got.matched.split(" / ")) == {"Calle Acuario", "Calle Piscis"}
    got = placed(porto.geocode("Rua Formosa, esquina da Rua de Santa Catarina"))
    assert got.precision == "intersection"
    assert set(got.matched.split(" / ")) == {"Rua Formosa", "Rua de Santa Catarina"}


@pytest.mark.parametrize("query", ["Acuario // Piscis", "Acuario & & Piscis", "Acuario /&/ Piscis"])
def test_doubled_separators_are_one(ags: Geocoder, query: str):
    got = placed(ags.geocode(query))
    assert got.precision == "intersection"
    assert set(got.matched.split(" / ")) == {"Calle Acuario", "Calle Piscis"}


def _garbage(path: Path, good: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)


def _truncated(path: Path, good: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path, good: Path) -> None:
    path.write_bytes(b"")


def _missing_array(path: Path, good: Path) -> None:
    arrays = gc.read_npz(good)
    del arrays["addr_name"]
    gc.write_npz(path, arrays)


@pytest.mark.parametrize("damage", [_garbage, _truncated, _empty, _missing_array])
def test_an_unreadable_cached_index_is_rebuilt(
    geo_settings: GeoSettings, ags: Geocoder, tmp_path: Path, damage
):
    good = gc.cache_path(PBF, geo_settings.cache_dir)
    settings = GeoSettings(city="aguascalientes", osm_dir=DATA, cache_dir=tmp_path)
    path = gc.cache_path(PBF, tmp_path)
    path.parent.mkdir(parents=True)
    damage(path, good)
    got = gc.load_geocoder(settings)
    assert got.street_count == ags.street_count and got.address_count == ags.address_count
    assert path.read_bytes() == good.read_bytes()
