"""Reading OSM extracts with pyosmium: drivable ways, points of interest, admin boundaries.

Everything here reads a local file (``.osm``, ``.osm.bz2`` or ``.osm.pbf``); nothing is fetched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import osmium
import osmium.geom
import shapely
from shapely.geometry.base import BaseGeometry

_log = logging.getLogger(__name__)

#: Highway values that are never driven by a crew van (osmnx's "drive" network filter).
_NOT_DRIVABLE = frozenset(
    {
        "abandoned", "bridleway", "bus_guideway", "construction", "corridor", "cycleway",
        "elevator", "escalator", "footway", "no", "path", "pedestrian", "planned", "platform",
        "proposed", "raceway", "razed", "rest_area", "service", "services", "steps", "track",
    }
)  # fmt: skip
_NO_SERVICE = frozenset(
    {"alley", "driveway", "emergency_access", "parking", "parking_aisle", "private"}
)

#: Tags that make a place raise the priority of problems near it, as ``(key, value) -> kind``.
POI_TAGS: dict[tuple[str, str], str] = {
    ("amenity", "school"): "school",
    ("amenity", "hospital"): "hospital",
    ("amenity", "clinic"): "clinic",
    ("amenity", "kindergarten"): "kindergarten",
    ("amenity", "university"): "university",
    ("amenity", "nursing_home"): "nursing_home",
    ("social_facility", "nursing_home"): "nursing_home",
}

#: OSM ``admin_level`` values taken as city districts (municipal and sub-municipal).
DISTRICT_ADMIN_LEVELS = frozenset({7, 8, 9, 10})


def is_drivable(tags: osmium.osm.TagList) -> bool:
    """Whether a way with these tags belongs to the drive network (osmnx "drive" filter)."""
    highway = tags.get("highway")
    if highway is None or highway in _NOT_DRIVABLE:
        return False
    if tags.get("area") == "yes" or tags.get("access") == "private":
        return False
    if tags.get("motor_vehicle") == "no" or tags.get("motorcar") == "no":
        return False
    return tags.get("service") not in _NO_SERVICE


def write_drivable_xml(src: Path, dst: Path) -> tuple[int, int]:
    """Write the drivable ways of ``src`` and their nodes to the OSM XML file ``dst``.

    Returns ``(nodes, ways)`` written. Two passes: ways first (to learn which nodes they
    use), then nodes; the ways are written after the nodes, as OSM XML expects.
    """
    ways: list[osmium.osm.mutable.Way] = []
    node_ids: set[int] = set()
    for way in osmium.FileProcessor(str(src), osmium.osm.WAY).with_filter(
        osmium.filter.KeyFilter("highway")
    ):
        if isinstance(way, osmium.osm.Way) and is_drivable(way.tags):
            refs = [n.ref for n in way.nodes]
            node_ids.update(refs)
            ways.append(
                osmium.osm.mutable.Way(id=way.id, nodes=refs, tags={t.k: t.v for t in way.tags})
            )
    ways.sort(key=lambda w: w.id or 0)
    nodes = 0
    if dst.exists():
        dst.unlink()
    with osmium.SimpleWriter(str(dst)) as writer:
        id_filter = osmium.filter.IdFilter(node_ids)
        for node in osmium.FileProcessor(str(src), osmium.osm.NODE).with_filter(id_filter):
            if not isinstance(node, osmium.osm.Node):
                continue
            writer.add_node(
                osmium.osm.mutable.Node(
                    id=node.id, location=(node.location.lon, node.location.lat), tags={}
                )
            )
            nodes += 1
        for mutable_way in ways:
            writer.add_way(mutable_way)
    return nodes, len(ways)


@dataclass(frozen=True)
class RawPoi:
    """A point of interest read from the extract (WGS84)."""

    kind: str
    name: str
    lon: float
    lat: float
    osm_type: str
    osm_id: int


@dataclass(frozen=True)
class RawDistrict:
    """An administrative area read from the extract (WGS84 geometry)."""

    name: str
    admin_level: int
    osm_id: int
    geometry: BaseGeometry


def _poi_kind(tags: osmium.osm.TagList) -> str | None:
    for (key, value), kind in POI_TAGS.items():
        if tags.get(key) == value:
            return kind
    return None


def read_context(src: Path) -> tuple[list[RawPoi], list[RawDistrict]]:
    """Points of interest (nodes, way centroids) and admin areas of ``src``, in file order."""
    pois: list[RawPoi] = []
    districts: list[RawDistrict] = []
    wkb = osmium.geom.WKBFactory()
    processor = (
        osmium.FileProcessor(str(src))
        .with_locations()
        .with_areas(osmium.filter.TagFilter(("boundary", "administrative")))
    )
    for obj in processor:
        if isinstance(obj, osmium.osm.Area):
            district = _district(obj, wkb)
            if district is not None:
                districts.append(district)
            continue
        if not isinstance(obj, (osmium.osm.Node, osmium.osm.Way)):
            continue
        kind = _poi_kind(obj.tags)
        if kind is None:
            continue
        name = obj.tags.get("name") or ""
        if isinstance(obj, osmium.osm.Node):
            pois.append(RawPoi(kind, name, obj.location.lon, obj.location.lat, "n", obj.id))
            continue
        try:
            coords = [(n.lon, n.lat) for n in obj.nodes]
        except osmium.InvalidLocationError:
            continue
        if not coords:
            continue
        shape: BaseGeometry
        if len(coords) >= 4 and coords[0] == coords[-1]:
            shape = shapely.Polygon(coords)
        else:
            shape = shapely.MultiPoint(coords)
        centre = shape.centroid if shape.is_valid else shapely.MultiPoint(coords).centroid
        pois.append(RawPoi(kind, name, float(centre.x), float(centre.y), "w", obj.id))
    return pois, districts


def _district(area: osmium.osm.Area, wkb: osmium.geom.WKBFactory) -> RawDistrict | None:
    if area.from_way() or area.tags.get("boundary") != "administrative":
        return None
    level = area.tags.get("admin_level") or ""
    if not level.isdigit() or int(level) not in DISTRICT_ADMIN_LEVELS:
        return None
    try:
        geom = shapely.from_wkb(bytes.fromhex(wkb.create_multipolygon(area)))
    except (RuntimeError, osmium.InvalidLocationError):
        _log.warning("skipping broken admin area", extra={"osm_id": area.orig_id()})
        return None
    name = area.tags.get("name") or f"relation {area.orig_id()}"
    return RawDistrict(name, int(level), area.orig_id(), geom)
