"""The city's road graph, built offline from an OpenStreetMap extract.

``load_city(settings.geo)`` gives a ``RoadGraph``: nearest node/edge snapping, travel-time
matrices, road distances, routes, districts and points of interest.
``load_geocoder(settings.geo)`` gives a ``Geocoder`` placing street addresses,
intersections and short streets from the same extract. Road data
© OpenStreetMap contributors, ODbL 1.0.
"""

from geo.build import build_graph, load_city
from geo.context import Poi
from geo.geocode import Geocoder, Placed, Refused, load_geocoder
from geo.graph import RoadGraph, RoadLines
from geo.routing import Route
from geo.snapping import Snapped, SnapPoint
from geo.speeds import SpeedTable, parse_maxspeed

__all__ = [
    "Geocoder",
    "Placed",
    "Poi",
    "Refused",
    "RoadGraph",
    "RoadLines",
    "Route",
    "SnapPoint",
    "Snapped",
    "SpeedTable",
    "build_graph",
    "load_city",
    "load_geocoder",
    "parse_maxspeed",
]
