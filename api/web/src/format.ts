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

/** An SLA countdown: time left until ``due``, or how late it is. */
export function slaText(due: string | null | undefined, now = Date.now()): { text: string; late: boolean } {
  if (!due) return { text: "no SLA", late: false };
  const left = (Date.parse(due) - now) / 1000;
  return left >= 0 ? { text: `due in ${duration(left)}`, late: false } : { text: `overdue ${duration(-left)}`, late: true };
}

export function clock(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** "14:32 (in 12 min)". */
export function eta(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const left = (Date.parse(iso) - now) / 1000;
  return `${clock(iso)} (${left >= 0 ? "in " + duration(left) : duration(-left) + " ago"})`;
}

export const SHAPE_CHAR: Record<string, string> = { P1: "◆", P2: "▲", P3: "■", P4: "●" };
