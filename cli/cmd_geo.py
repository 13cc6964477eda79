"""``cityfix geo``: build the road graph from an OSM extract, inspect it, route on it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from core.errors import CityfixError


def _latlon(text: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = text.split(",")
        return float(lat_s), float(lon_s)
    except ValueError:
        raise typer.BadParameter(f"expected LAT,LON (e.g. 41.1496,-8.6109), got {text!r}") from None


def _fail(exc: CityfixError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``geo`` command group."""
    from cli.main import settings_of

    group = typer.Typer(help="Road graph of the city (OpenStreetMap extract, offline).")
    app.add_typer(group, name="geo")

    @group.command("build")
    def build(
        ctx: typer.Context,
        osm: Annotated[
            Path,
            typer.Option("--osm", help="OSM extract (.osm, .osm.bz2 or .osm.pbf).", exists=True),
        ],
        name: Annotated[
            str | None, typer.Option("--name", help="Name of the graph (default: file name).")
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
    ) -> None:
        """Build (or load from the cache) the road graph of an extract and print its summary."""
        import geo

        settings = settings_of(ctx).geo
        t0 = time.perf_counter()
        try:
            graph = geo.build_graph(osm, settings.cache_dir, settings, name=name, force=force)
        except CityfixError as exc:
            raise _fail(exc) from exc
        summary = _info(graph)
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))

    @group.command("info")
    def info(
        ctx: typer.Context,
        city: Annotated[
            str | None, typer.Option("--city", help="City name (default: settings geo.city).")
        ] = None,
    ) -> None:
        """Print the city's graph: nodes, edges, bounds, cache file."""
        import geo

        try:
            graph = geo.load_city(settings_of(ctx).geo, city)
        except CityfixError as exc:
            raise _fail(exc) from exc
        typer.echo(json.dumps(_info(graph), indent=2, ensure_ascii=False))

    @group.command("route")
    def route(
        ctx: typer.Context,
        origin: Annotated[str, typer.Option("--from", help="Start as LAT,LON.")],
        destination: Annotated[str, typer.Option("--to", help="End as LAT,LON.")],
        city: Annotated[
            str | None, typer.Option("--city", help="City name (default: settings geo.city).")
        ] = None,
    ) -> None:
        """Print the fastest drive between two points as JSON (time, distance, geometry)."""
        import geo

        (lat1, lon1), (lat2, lon2) = _latlon(origin), _latlon(destination)
        try:
            graph = geo.load_city(settings_of(ctx).geo, city)
            start, end = graph.snap_one(lat1, lon1), graph.snap_one(lat2, lon2)
            path = graph.route([start.node, end.node])
        except CityfixError as exc:
            raise _fail(exc) from exc
        typer.echo(
            json.dumps(
                {
                    "travel_time_s": round(path.travel_time_s, 1),
                    "distance_m": round(path.distance_m, 1),
                    "geometry": path.geojson(),
                    "from_node_osmid": int(graph.node_osmid[start.node]),
                    "to_node_osmid": int(graph.node_osmid[end.node]),
                }
            )
        )


def _info(graph: Any) -> dict[str, Any]:
    return {
        "name": graph.name,
        "nodes": graph.node_count,
        "edges": graph.edge_count,
        "bounds": dict(
            zip(("min_lon", "min_lat", "max_lon", "max_lat"), graph.bounds, strict=True)
        ),
        "crs": f"EPSG:{graph.meta['crs_epsg']}",
        "points_of_interest": graph.poi_count,
        "admin_districts": len(graph.district_names),
        "sha256": graph.sha256,
        "cache": str(graph.cache_path),
        "attribution": graph.meta["attribution"],
    }
