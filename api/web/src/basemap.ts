// The base map: the city's own road network as vector tiles from the cityfix server,
// on a plain background. No glyphs, no sprites, nothing fetched from the internet; every
// icon is drawn on a canvas at start-up (see icons.ts).
import maplibregl, { type StyleSpecification } from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";

export interface RoadTileJSON {
  tiles: string[];
  minzoom: number;
  maxzoom: number;
  bounds: [number, number, number, number];
  center: [number, number, number];
  attribution: string;
  name: string;
}

export const ROAD_LAYERS = [
  "roads-minor",
  "roads-link",
  "roads-tertiary",
  "roads-secondary",
  "roads-primary",
  "roads-motorway",
];

// Widths by zoom for each class: [z10, z14, z18].
const WIDTHS: Record<string, [number, number, number]> = {
  minor: [0.3, 1.2, 9],
  link: [0.4, 1.4, 9],
  tertiary: [0.6, 2, 12],
  secondary: [0.8, 2.6, 14],
  primary: [1, 3.2, 16],
  motorway: [1.2, 3.6, 18],
};
// Neutral greys, so the base map never competes with the priority colours on top.
const COLOURS: Record<string, string> = {
  minor: "#ffffff",
  link: "#ffffff",
  tertiary: "#ffffff",
  secondary: "#fdfcf8",
  primary: "#faf8f0",
  motorway: "#f4f1e6",
};
const CASING: Record<string, string> = {
  minor: "#b4b0a7",
  link: "#9d998f",
  tertiary: "#9d998f",
  secondary: "#8f8b82",
  primary: "#827e75",
  motorway: "#6f6b63",
};

function roadLayers(): StyleSpecification["layers"] {
  const layers: StyleSpecification["layers"] = [];
  for (const id of ROAD_LAYERS) {
    const cls = id.slice("roads-".length);
    const [a, b, c] = WIDTHS[cls];
    layers.push({
      id: `${id}-casing`,
      type: "line",
      source: "roads",
      "source-layer": "roads",
      filter: ["==", ["get", "class"], cls],
      layout: { "line-cap": "round", "line-join": "round" },
      paint: {
        "line-color": CASING[cls],
        "line-width": ["interpolate", ["exponential", 1.6], ["zoom"], 10, a + 0.6, 14, b + 1.2, 18, c + 2],
      },
    });
  }
  for (const id of ROAD_LAYERS) {
    const cls = id.slice("roads-".length);
    const [a, b, c] = WIDTHS[cls];
    layers.push({
      id,
      type: "line",
      source: "roads",
      "source-layer": "roads",
      filter: ["==", ["get", "class"], cls],
      layout: { "line-cap": "round", "line-join": "round" },
      paint: {
        // Thin lines at low zoom read better as solid grey than as white with a casing.
        "line-color": ["interpolate", ["linear"], ["zoom"], 11, CASING[cls], 13, COLOURS[cls]],
        "line-width": ["interpolate", ["exponential", 1.6], ["zoom"], 10, a, 14, b, 18, c],
      },
    });
  }
  return layers;
}

/** Fetch the road TileJSON and open a MapLibre map on it. */
export async function openMap(container: string): Promise<{ map: maplibregl.Map; roads: RoadTileJSON }> {
  const res = await fetch("/tiles/roads.json");
  if (!res.ok) throw new Error(`road tiles unavailable (${res.status})`);
  const roads = (await res.json()) as RoadTileJSON;
  const [w, s, e, n] = roads.bounds;
  const padX = (e - w) * 0.5;
  const padY = (n - s) * 0.5;
  const style: StyleSpecification = {
    version: 8,
    name: "cityfix roads",
    sources: {
      roads: {
        type: "vector",
        tiles: roads.tiles.map((t) => (/^https?:/.test(t) ? t : location.origin + t)),
        minzoom: roads.minzoom,
        maxzoom: roads.maxzoom,
        bounds: roads.bounds,
        attribution: roads.attribution,
      },
    },
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#e6e3dc" } },
      ...roadLayers(),
    ],
  };
  const map = new maplibregl.Map({
    container,
    style,
    bounds: [w, s, e, n],
    fitBoundsOptions: { padding: 20 },
    maxBounds: [w - padX, s - padY, e + padX, n + padY],
    minZoom: roads.minzoom,
    maxZoom: 19,
    attributionControl: { compact: true },
    dragRotate: false,
    pitchWithRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  await new Promise<void>((ok) => map.once("load", () => ok()));
  return { map, roads };
}
