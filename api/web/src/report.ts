// The citizen page: pick a category, place a pin, describe, send through Open311 (the
// server adds the page's API key), then follow the report's status.
import maplibregl from "maplibre-gl";
import { problem, publicJson } from "./api";
import { openMap } from "./basemap";
import { clock, esc, label, withZone } from "./format";
import "./style.css";

interface Service {
  service_code: string;
  service_name: string;
  description?: string | null;
  metadata?: boolean;
  group?: string | null;
}
interface Attribute {
  code: string;
  datatype: string;
  required: boolean;
  variable: boolean;
  description: string;
  datatype_description?: string | null;
  values?: { key: string; name: string }[] | null;
}
interface RequestDoc {
  service_request_id: string;
  status: string;
  extended_status?: string;
  status_notes?: string | null;
  service_name?: string;
  requested_datetime?: string;
  updated_datetime?: string | null;
  expected_datetime?: string | null;
  incident_id?: string | null;
}

const MINE = "cityfix.my-reports";
const POLL_MS = 3000;
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>("report-form");
let map: maplibregl.Map;
let pin: maplibregl.Marker | null = null;
let where: { lat: number; lon: number } | null = null;

declare global {
  interface Window {
    cityfix: Record<string, unknown>;
  }
}
window.cityfix = { ready: false };

function setPin(lat: number, lon: number): void {
  where = { lat, lon };
  if (!pin) {
    const el = document.createElement("div");
    el.className = "pin";
    el.setAttribute("aria-hidden", "true");
    pin = new maplibregl.Marker({ element: el, anchor: "bottom", draggable: true }).setLngLat([lon, lat]).addTo(map);
    pin.on("dragend", () => {
      const p = pin!.getLngLat();
      setPin(p.lat, p.lng);
    });
  } else {
    pin.setLngLat([lon, lat]);
  }
  $("where").textContent = `Pin at ${lat.toFixed(5)}, ${lon.toFixed(5)}.`;
}

async function loadServices(): Promise<void> {
  const services = await publicJson<Service[]>("/open311/v2/services.json");
  const sel = $<HTMLSelectElement>("service");
  for (const s of services) sel.add(new Option(s.service_name, s.service_code));
  const byCode = new Map(services.map((s) => [s.service_code, s]));
  sel.addEventListener("change", async () => {
    const s = byCode.get(sel.value);
    $("service-help").textContent = s?.description ?? "";
    $("attributes").innerHTML = "";
    if (!s?.metadata) return;
    const def = await publicJson<{ attributes: Attribute[] }>(`/open311/v2/services/${encodeURIComponent(s.service_code)}.json`);
    $("attributes").innerHTML = def.attributes
      .filter((a) => a.variable)
      .map(attributeField)
      .join("");
  });
}

function attributeField(a: Attribute): string {
  const name = `attribute[${a.code}]`;
  const req = a.required ? " required" : "";
  const title = `${esc(a.description)}${a.required ? "" : ' <span class="muted">(optional)</span>'}`;
  if (a.datatype === "singlevaluelist") {
    return `<label>${title}<select name="${esc(name)}"${req}><option value=""></option>${(a.values ?? []).map((v) => `<option value="${esc(v.key)}">${esc(v.name)}</option>`).join("")}</select></label>`;
  }
  if (a.datatype === "multivaluelist") {
    return `<fieldset><legend>${title}</legend>${(a.values ?? []).map((v) => `<label class="check"><input type="checkbox" name="${esc(name)}[]" value="${esc(v.key)}" /> ${esc(v.name)}</label>`).join("")}</fieldset>`;
  }
  if (a.datatype === "text") return `<label>${title}<textarea name="${esc(name)}" rows="2"${req}></textarea></label>`;
  const type = a.datatype === "number" ? "number" : a.datatype === "datetime" ? "datetime-local" : "text";
  return `<label>${title}<input type="${type}" name="${esc(name)}"${req} ${type === "number" ? 'step="any"' : ""} /></label>`;
}

// --- my reports ------------------------------------------------------------------------

function myReports(): string[] {
  try {
    return JSON.parse(localStorage.getItem(MINE) ?? "[]") as string[];
  } catch {
    return [];
  }
}

async function refreshMine(): Promise<void> {
  const ids = myReports();
  const docs = await Promise.all(
    ids.map(async (id) => {
      try {
        const list = await publicJson<RequestDoc[]>(`/open311/v2/requests/${encodeURIComponent(id)}.json`);
        return list[0] ?? { service_request_id: id, status: "open", status_notes: "Received." };
      } catch {
        return { service_request_id: id, status: "open", status_notes: "Received; not visible yet." } as RequestDoc;
      }
    }),
  );
  const html = docs.length
    ? docs
        .map(
          (d) => `<li data-request="${esc(d.service_request_id)}" data-status="${esc(d.status)}" data-extended="${esc(d.extended_status ?? "")}" data-incident="${esc(d.incident_id ?? "")}">
            <strong>${esc(d.service_name ?? "Report")}</strong> <span class="st st-${esc(d.status)}">${esc(label(d.extended_status ?? d.status))}</span>
            <div>${esc(d.status_notes ?? "")}</div>
            <div class="muted mono">${esc(d.service_request_id)}${d.requested_datetime ? ` · sent ${esc(clock(d.requested_datetime))}` : ""}${d.expected_datetime ? ` · expected by ${esc(clock(d.expected_datetime))}` : ""}</div>
          </li>`,
        )
        .join("")
    : `<li class="muted">Nothing sent from this browser yet.</li>`;
  // Re-render only on a change, so focus and screen readers are not disturbed every poll.
  if (html !== lastMine) $("mine").innerHTML = lastMine = html;
}
let lastMine = "";

// --- sending -------------------------------------------------------------------------------

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("report-error");
  err.textContent = "";
  if (!form.checkValidity()) {
    form.reportValidity();
    return;
  }
  if (!where) {
    err.textContent = "Place the problem on the map first.";
    $("centre").focus();
    return;
  }
  const body = new URLSearchParams();
  // A datetime-local value has no zone, and Open311 refuses a datetime without one.
  const local = new Set([...form.querySelectorAll<HTMLInputElement>("input[type=datetime-local]")].map((i) => i.name));
  for (const [k, v] of new FormData(form)) if (String(v) !== "") body.append(k, local.has(k) ? withZone(String(v)) : String(v));
  body.set("lat", where.lat.toFixed(6));
  body.set("long", where.lon.toFixed(6));
  const button = $<HTMLButtonElement>("submit");
  button.disabled = true;
  try {
    const res = await fetch("/report/submit", { method: "POST", body });
    if (!res.ok) throw new Error(await problem(res));
    const created = (await res.json()) as { service_request_id?: string; token?: string }[];
    const id = created[0]?.service_request_id ?? created[0]?.token;
    if (id) localStorage.setItem(MINE, JSON.stringify([id, ...myReports().filter((x) => x !== id)].slice(0, 20)));
    form.reset();
    $("find-status").textContent = "";
    $("attributes").innerHTML = "";
    $("where").textContent = "Thank you! Your report was sent. Place a new pin for another one.";
    pin?.remove();
    pin = null;
    where = null;
    await refreshMine();
    $("mine").querySelector<HTMLElement>("li")?.setAttribute("tabindex", "-1");
    $("mine").querySelector<HTMLElement>("li")?.focus();
  } catch (e) {
    err.textContent = `Could not send: ${(e as Error).message}`;
  } finally {
    button.disabled = false;
  }
});

// --- finding an address -----------------------------------------------------------------

interface Found {
  lat: number;
  lon: number;
  precision: string;
  matched: string;
}
let lookups = 0;

/** Place the pin at the typed address (``/report/geocode``), or say why it cannot be. */
async function findAddress(): Promise<void> {
  const text = $<HTMLInputElement>("address").value.trim();
  const status = $("find-status");
  status.classList.remove("bad");
  if (!text) {
    status.classList.add("bad");
    status.textContent = "Type an address or two cross streets first.";
    return;
  }
  if (!map) {
    status.textContent = "The map is still loading; try again in a moment.";
    return;
  }
  const asked = ++lookups;
  const button = $<HTMLButtonElement>("find");
  button.disabled = true;
  status.textContent = "Looking for the address…";
  try {
    const res = await fetch(`/report/geocode?q=${encodeURIComponent(text)}`);
    if (asked !== lookups) return; // a newer lookup answers instead
    if (!res.ok) {
      const reason = res.status === 400 ? await refusal(res) : await problem(res);
      status.classList.add("bad");
      status.textContent = `Not placed: ${reason}.`;
      return;
    }
    const found = (await res.json()) as Found;
    status.textContent = "";
    setPin(found.lat, found.lon);
    map.easeTo({ center: [found.lon, found.lat], zoom: 17 });
    $("where").textContent = `Pin at ${found.matched} (${found.precision}): ${found.lat.toFixed(5)}, ${found.lon.toFixed(5)}. Drag the pin if the problem is not right there.`;
  } catch (e) {
    if (asked !== lookups) return;
    status.classList.add("bad");
    status.textContent = `Could not look up the address: ${(e as Error).message}`;
  } finally {
    if (asked === lookups) button.disabled = false;
  }
}

/** Why the address was refused: the geocoder's ``description`` (a 400's body). */
async function refusal(res: Response): Promise<string> {
  const doc = (await res
    .clone()
    .json()
    .catch(() => null)) as { description?: unknown } | null;
  return typeof doc?.description === "string" ? doc.description : problem(res);
}

$("find").addEventListener("click", () => void findAddress());
$("address").addEventListener("keydown", (ev) => {
  // Enter looks the address up; it must not send the form.
  if (ev.key !== "Enter" || ev.isComposing) return;
  ev.preventDefault();
  void findAddress();
});

$("locate").addEventListener("click", () => {
  if (!navigator.geolocation) {
    $("where").textContent = "This browser cannot tell your location.";
    return;
  }
  $("where").textContent = "Finding your location…";
  navigator.geolocation.getCurrentPosition(
    (p) => {
      setPin(p.coords.latitude, p.coords.longitude);
      map.easeTo({ center: [p.coords.longitude, p.coords.latitude], zoom: 17 });
    },
    (e) => ($("where").textContent = `No location: ${e.message}`),
    { enableHighAccuracy: true, timeout: 10000 },
  );
});
$("centre").addEventListener("click", () => {
  const c = map.getCenter();
  setPin(c.lat, c.lng);
});

async function main(): Promise<void> {
  const opened = await openMap("map");
  map = opened.map;
  window.cityfix.map = map;
  map.on("click", (e) => setPin(e.lngLat.lat, e.lngLat.lng));
  await loadServices();
  await refreshMine();
  setInterval(() => void refreshMine(), POLL_MS);
  window.cityfix.ready = true;
}

main().catch((err) => {
  $("report-error").textContent = `Could not start: ${(err as Error).message}`;
});
