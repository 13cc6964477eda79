"""The city's road graph, built offline from an OpenStreetMap extract.

``load_city(settings.geo)`` gives a ``RoadGraph``: nearest node/edge snapping, travel-time
matrices, road distances, routes, districts and points of interest. Road data
© OpenStreetMap contributors, ODbL 1.0.
"""

from geo.build import build_graph, load_city
from geo.context import Poi
from geo.graph import RoadGraph, RoadLines
from geo.routing import Route
from geo.snapping import Snapped, SnapPoint
from geo.speeds import SpeedTable, parse_maxspeed

__all__ = [
    "Poi",
    "RoadGraph",
    "RoadLines",
    "Route",
    "SnapPoint",
    "Snapped",
    "SpeedTable",
    "build_graph",
    "load_city",
    "parse_maxspeed",
]
