// Map icons drawn on a canvas, so the style needs no sprite sheet or glyph server.
// Priorities use the Okabe–Ito palette and, for readers who cannot tell the colours
// apart, a shape and the digit of the priority as well.
import type maplibregl from "maplibre-gl";

export const PRIORITY_COLOUR: Record<string, string> = {
  P1: "#D55E00", // vermillion
  P2: "#E69F00", // orange
  P3: "#0072B2", // blue
  P4: "#009E73", // bluish green
};
export const CREW_COLOUR = "#000000";
export const ROUTE_COLOUR = "#CC79A7"; // reddish purple
export const PRIORITY_SHAPE: Record<string, string> = {
  P1: "diamond",
  P2: "triangle",
  P3: "square",
  P4: "circle",
};

/** How an incident's status is drawn: filled (waiting), ring (a crew has it), faded. */
export function statusLook(status: string): "open" | "taken" | "done" {
  if (status === "open" || status === "reopened") return "open";
  if (status === "assigned" || status === "en_route" || status === "on_site") return "taken";
  return "done";
}

const RATIO = 2;

function canvas(size: number): [HTMLCanvasElement, CanvasRenderingContext2D] {
  const c = document.createElement("canvas");
  c.width = c.height = size * RATIO;
  const ctx = c.getContext("2d")!;
  ctx.scale(RATIO, RATIO);
  return [c, ctx];
}

function shapePath(ctx: CanvasRenderingContext2D, shape: string, cx: number, cy: number, r: number) {
  ctx.beginPath();
  if (shape === "diamond") {
    ctx.moveTo(cx, cy - r);
    ctx.lineTo(cx + r, cy);
    ctx.lineTo(cx, cy + r);
    ctx.lineTo(cx - r, cy);
  } else if (shape === "triangle") {
    ctx.moveTo(cx, cy - r);
    ctx.lineTo(cx + r * 0.95, cy + r * 0.75);
    ctx.lineTo(cx - r * 0.95, cy + r * 0.75);
  } else if (shape === "square") {
    const h = r * 0.8;
    ctx.rect(cx - h, cy - h, 2 * h, 2 * h);
  } else {
    ctx.arc(cx, cy, r * 0.85, 0, Math.PI * 2);
  }
  ctx.closePath();
}

function toImage(c: HTMLCanvasElement): ImageData {
  return c.getContext("2d")!.getImageData(0, 0, c.width, c.height);
}

/** One incident icon: shape and digit of the priority, filled/ring/faded by status. */
export function incidentIcon(priority: string, look: "open" | "taken" | "done"): ImageData {
  const size = priority === "P1" ? 30 : 26;
  const [c, ctx] = canvas(size);
  const colour = PRIORITY_COLOUR[priority] ?? "#555";
  const r = size / 2 - 2;
  const cy = PRIORITY_SHAPE[priority] === "triangle" ? size / 2 + 2 : size / 2;
  shapePath(ctx, PRIORITY_SHAPE[priority] ?? "circle", size / 2, cy, r);
  ctx.globalAlpha = look === "done" ? 0.45 : 1;
  ctx.lineJoin = "round";
  ctx.fillStyle = look === "open" ? colour : "#ffffff";
  ctx.fill();
  ctx.lineWidth = look === "taken" ? 3.5 : 1.5;
  ctx.strokeStyle = look === "taken" ? colour : "#ffffff";
  ctx.stroke();
  if (look !== "taken") {
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#222";
    shapePath(ctx, PRIORITY_SHAPE[priority] ?? "circle", size / 2, cy, r + 1.2);
    ctx.stroke();
  }
  ctx.fillStyle = look === "open" ? (priority === "P2" ? "#000" : "#fff") : colour;
  ctx.font = `bold ${size * 0.42}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(priority.slice(1), size / 2, cy + (PRIORITY_SHAPE[priority] === "triangle" ? 1 : 0.5));
  return toImage(c);
}

/** A crew: an arrow pointing north, rotated by the map to the crew's heading. */
export function crewIcon(selected: boolean): ImageData {
  const size = 30;
  const [c, ctx] = canvas(size);
  ctx.beginPath();
  ctx.moveTo(15, 2);
  ctx.lineTo(26, 27);
  ctx.lineTo(15, 21);
  ctx.lineTo(4, 27);
  ctx.closePath();
  ctx.lineJoin = "round";
  ctx.fillStyle = selected ? ROUTE_COLOUR : CREW_COLOUR;
  ctx.fill();
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = "#fff";
  ctx.stroke();
  return toImage(c);
}

/** A round badge with text (cluster counts, stop numbers). */
export function badgeIcon(text: string, fill: string, ink: string, size: number): ImageData {
  const [c, ctx] = canvas(size);
  ctx.beginPath();
  ctx.arc(size / 2, size / 2, size / 2 - 1.5, 0, Math.PI * 2);
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#fff";
  ctx.stroke();
  ctx.fillStyle = ink;
  ctx.font = `bold ${Math.round(size * (text.length > 2 ? 0.3 : 0.42))}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, size / 2, size / 2 + 0.5);
  return toImage(c);
}

/** Register the fixed icons, and draw count/stop badges when the map first asks for one. */
export function installIcons(map: maplibregl.Map): void {
  for (const p of Object.keys(PRIORITY_COLOUR)) {
    for (const look of ["open", "taken", "done"] as const) {
      map.addImage(`inc-${p}-${look}`, incidentIcon(p, look), { pixelRatio: RATIO });
    }
  }
  map.addImage("crew", crewIcon(false), { pixelRatio: RATIO });
  map.addImage("crew-selected", crewIcon(true), { pixelRatio: RATIO });
  map.on("styleimagemissing", (e: { id: string }) => {
    const id = e.id;
    if (map.hasImage(id)) return;
    let m = /^count-(P\d)-(.+)$/.exec(id);
    if (m) {
      const ink = m[1] === "P2" ? "#000" : "#fff";
      map.addImage(id, badgeIcon(m[2], PRIORITY_COLOUR[m[1]] ?? "#555", ink, 36), { pixelRatio: RATIO });
      return;
    }
    m = /^stop-(\d+)$/.exec(id);
    if (m) map.addImage(id, badgeIcon(m[1], ROUTE_COLOUR, "#000", 20), { pixelRatio: RATIO });
  });
}
