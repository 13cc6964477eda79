// Small formatting helpers shared by both pages.

export function esc(text: unknown): string {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function label(code: string | null | undefined): string {
  if (!code) return "";
  const s = code.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** "1 h 05 min", "12 min", "40 s". */
export function duration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.abs(Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// The city's clock. Under `cityfix demo` the city runs ahead of and faster than the wall
// clock, and the API stamps SLAs and ETAs with the city's time; the wall clock until
// `followCityClock` is told otherwise.
let cityAnchor = { wallMs: 0, cityMs: 0, factor: 1 };

/** Now on the city's clock, in milliseconds since the Unix epoch. */
export function cityNow(): number {
  return cityAnchor.cityMs + (Date.now() - cityAnchor.wallMs) * cityAnchor.factor;
}

/** Follow the API's clock: ``factor`` times the wall clock, at ``nowMs`` when read. */
export function followCityClock(factor: number, nowMs: number): void {
  // Anchored at the moment of reading rather than at the server's wall epoch: a browser
  // clock a second off would otherwise put the city `factor` seconds off.
  if (Number.isFinite(factor) && factor > 0 && Number.isFinite(nowMs)) cityAnchor = { wallMs: Date.now(), cityMs: nowMs, factor };
}

/** An SLA countdown: time left until ``due``, or how late it is. */
export function slaText(due: string | null | undefined, now = cityNow()): { text: string; late: boolean } {
  if (!due) return { text: "no SLA", late: false };
  const left = (Date.parse(due) - now) / 1000;
  return left >= 0 ? { text: `due in ${duration(left)}`, late: false } : { text: `overdue ${duration(-left)}`, late: true };
}

/** Whether work that ended at ``done`` met the SLA ``due`` (resolved at or before it). */
export function slaOutcome(due: string | null | undefined, done: string | null | undefined): { text: string; late: boolean } {
  if (!due) return { text: "no SLA", late: false };
  const late = (Date.parse(done ?? "") - Date.parse(due)) / 1000;
  if (!Number.isFinite(late)) return { text: "–", late: false };
  return late <= 0 ? { text: "SLA met", late: false } : { text: `SLA missed by ${duration(late)}`, late: true };
}

/** A ``datetime-local`` value ("2025-05-01T14:30") with the browser's offset for that date. */
export function withZone(local: string): string {
  const d = new Date(local);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(local) || Number.isNaN(d.getTime())) return local;
  const offset = -d.getTimezoneOffset();
  const hhmm = `${String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0")}:${String(Math.abs(offset) % 60).padStart(2, "0")}`;
  return `${local}${offset < 0 ? "-" : "+"}${hhmm}`;
}

export function clock(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  const today = new Date(cityNow()).toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** "14:32 (in 12 min)". */
export function eta(iso: string | null | undefined, now = cityNow()): string {
  if (!iso) return "–";
  const left = (Date.parse(iso) - now) / 1000;
  return `${clock(iso)} (${left >= 0 ? "in " + duration(left) : duration(-left) + " ago"})`;
}

export const SHAPE_CHAR: Record<string, string> = { P1: "◆", P2: "▲", P3: "■", P4: "●" };
