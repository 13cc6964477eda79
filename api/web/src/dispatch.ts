// The dispatcher's live map: incidents, crews and their plans, a list beside the map,
// an incident panel with actions, filters and KPIs. State arrives from the API's live
// feed (/api/live: a snapshot, then every change of the incidents and assignments
// topics); crews' positions and the KPIs are read every few seconds.
import maplibregl, { type GeoJSONSource } from "maplibre-gl";
import { api, ApiError, auth, publicJson } from "./api";
import { openMap, ROAD_LAYERS } from "./basemap";
import { cityNow, clock, duration, esc, eta, followCityClock, label, SHAPE_CHAR, slaOutcome, slaText } from "./format";
import { installIcons, PRIORITY_COLOUR, ROUTE_COLOUR, statusLook } from "./icons";
import "./style.css";

// --- types (the API's JSON, only the fields used here) --------------------------------

interface Evidence {
  kind: string;
  id: string;
  source?: string | null;
  at?: string | null;
  description?: string | null;
  media_url?: string | null;
  value?: number | null;
  category?: string | null;
}
interface Transition {
  status: string;
  at: string;
  reason?: string | null;
}
interface Incident {
  incident_id: string;
  status: string;
  category: string;
  priority: string;
  score: number;
  score_breakdown: Record<string, number>;
  lat: number;
  lon: number;
  evidence?: Evidence[];
  reporters?: number;
  opened_at: string;
  updated_at: string;
  expected_at?: string | null;
  resolved_at?: string | null;
  history?: Transition[];
  district?: string | null;
  crew_id?: string | null;
  merged_into?: string | null;
  manual_priority?: string | null;
  road_class?: string | null;
  version?: number;
  events?: { at?: string; kind?: string; summary?: string; [k: string]: unknown }[];
}
interface Stop {
  incident_id: string;
  eta: string;
  lat: number;
  lon: number;
  pinned?: boolean;
}
interface Assignment {
  crew_id: string;
  plan_id?: string | null;
  stops?: Stop[] | null;
  route?: { type: "LineString"; coordinates: [number, number][] } | null;
  created_at?: string;
}
interface Crew {
  crew_id: string;
  status?: string | null;
  lat?: number | null;
  lon?: number | null;
  heading_deg?: number | null;
  position_at?: string | null;
  skills?: string[] | null;
  shift_end?: string | null;
  [k: string]: unknown;
}
interface Kpis {
  open_by_priority: Record<string, number>;
  open_total: number;
  mean_time_to_assign_s: number | null;
  mean_time_to_resolve_s: number | null;
  sla_today: Record<string, unknown>;
}

const ACTIVE = new Set(["open", "assigned", "en_route", "on_site", "reopened"]);
const STATUSES = ["open", "assigned", "en_route", "on_site", "reopened", "resolved", "closed", "duplicate", "merged"];
const PRIORITIES = ["P1", "P2", "P3", "P4"];
const PRANK: Record<string, number> = { P1: 1, P2: 2, P3: 3, P4: 4 };
const CREW_POLL_MS = 3000;
const KPI_POLL_MS = 10000;

// --- state --------------------------------------------------------------------------

const state = {
  incidents: new Map<string, Incident>(),
  assignments: new Map<string, Assignment>(),
  crews: new Map<string, Crew>(),
  selected: null as string | null,
  selectedCrew: null as string | null,
  cursor: null as unknown,
  live: false,
  liveMessages: 0,
  filters: { category: "", priority: "", status: "active", district: "" },
  serviceNames: new Map<string, string>(),
};
let map: maplibregl.Map;
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

declare global {
  interface Window {
    cityfix: Record<string, unknown>;
  }
}
window.cityfix = { state, ready: false, ROAD_LAYERS };

// --- start ----------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
if (params.get("wall") === "1") document.documentElement.classList.add("wall");

function toast(text: string, bad = false): void {
  const el = $("toast");
  el.textContent = text;
  el.classList.toggle("bad", bad);
  el.hidden = false;
  clearTimeout((el as unknown as { _t?: number })._t);
  (el as unknown as { _t?: number })._t = window.setTimeout(() => (el.hidden = true), 4000);
}

async function ensureLogin(): Promise<void> {
  if (auth.token) return;
  const dialog = $<HTMLDialogElement>("login");
  const form = $<HTMLFormElement>("login-form");
  dialog.showModal();
  (form.elements.namedItem("username") as HTMLInputElement).focus();
  await new Promise<void>((done) => {
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      try {
        await auth.login(String(data.get("username")), String(data.get("password")));
        $("login-error").textContent = "";
        dialog.close();
        done();
      } catch (err) {
        $("login-error").textContent = err instanceof ApiError && err.status === 401 ? "Wrong username or password." : String((err as Error).message);
      }
    };
  });
}
// The dialog cannot be dismissed without signing in.
$<HTMLDialogElement>("login").addEventListener("cancel", (ev) => ev.preventDefault());

function showUser(): void {
  $("whoami").textContent = `${auth.username} (${auth.role})`;
  $("logout").hidden = false;
}
$("logout").addEventListener("click", () => {
  auth.logout();
  location.reload();
});
window.addEventListener("cityfix:unauthorized", () => location.reload());

async function main(): Promise<void> {
  await ensureLogin();
  showUser();
  setupFilters();
  setupTabs();
  const opened = await openMap("map");
  map = opened.map;
  window.cityfix.map = map;
  installIcons(map);
  addLayers();
  bindMap();
  await Promise.allSettled([loadClock(), loadServices(), loadIncidents(), loadAssignments(), loadCrews(), loadKpis()]);
  render();
  connectLive();
  setInterval(pollCrews, CREW_POLL_MS);
  setInterval(() => void loadKpis(), KPI_POLL_MS);
  setInterval(tick, 1000);
  window.cityfix.ready = true;
}

// --- loading --------------------------------------------------------------------------

async function loadClock(): Promise<void> {
  try {
    const c = await api<{ factor: number; now: string }>("/api/clock");
    followCityClock(c.factor, Date.parse(c.now));
  } catch (err) {
    // Without the API's clock the map counts with the wall clock, right outside a demo.
    console.warn("city clock unavailable, using the wall clock:", err);
  }
}

async function loadServices(): Promise<void> {
  const services = await publicJson<{ service_code: string; service_name: string }[]>("/open311/v2/services.json");
  for (const s of services) state.serviceNames.set(s.service_code, s.service_name);
  const sel = $("filters").querySelector<HTMLSelectElement>("select[name=category]")!;
  for (const s of services) sel.add(new Option(s.service_name, s.service_code));
}

async function loadIncidents(): Promise<void> {
  const fc = await api<{ features: { geometry: { coordinates: [number, number] }; properties: Incident }[] }>(
    "/api/incidents?limit=10000",
  );
  for (const f of fc.features) {
    const [lon, lat] = f.geometry.coordinates;
    upsertIncident({ ...f.properties, lon, lat });
  }
}

async function loadAssignments(): Promise<void> {
  const list = await api<Assignment[] | { assignments: Assignment[] }>("/api/assignments");
  for (const a of Array.isArray(list) ? list : list.assignments) state.assignments.set(a.crew_id, a);
}

async function loadCrews(): Promise<void> {
  const list = await api<Crew[] | { crews: Crew[] }>("/api/crews");
  const crews = Array.isArray(list) ? list : list.crews;
  state.crews = new Map(crews.map((c) => [c.crew_id, c]));
  for (const c of crews) {
    // A crew's row carries its current plan; keep whichever plan is newer (the live
    // feed usually is).
    const plan = c as unknown as Assignment & { plan_at?: string | null };
    const known = state.assignments.get(c.crew_id);
    const newer = !known || Date.parse(plan.plan_at ?? "") > Date.parse(known.created_at ?? "");
    if (plan.plan_id && plan.stops && newer) {
      state.assignments.set(c.crew_id, {
        crew_id: c.crew_id,
        plan_id: plan.plan_id,
        stops: plan.stops,
        route: plan.route,
        created_at: plan.plan_at ?? undefined,
      });
    }
  }
  updateCrewSource();
}

function pollCrews(): void {
  loadCrews()
    .then(renderCrews)
    .catch((err) => toast(`Could not load crews: ${(err as Error).message}`, true));
}

async function loadKpis(): Promise<void> {
  try {
    renderKpis(await api<Kpis>("/api/kpis"));
  } catch (err) {
    $("kpis").textContent = `KPIs unavailable: ${(err as Error).message}`;
  }
}

// What the map needs of an incident; a record without it is skipped, not drawn half.
function drawable(inc: unknown): inc is Incident {
  const i = inc as Partial<Incident> | null;
  return (
    typeof i?.incident_id === "string" &&
    typeof i.status === "string" &&
    typeof i.priority === "string" &&
    Number.isFinite(i.lat) &&
    Number.isFinite(i.lon)
  );
}

function upsertIncident(inc: unknown): void {
  if (!drawable(inc)) return;
  const known = state.incidents.get(inc.incident_id);
  if (known && (known.version ?? 0) > (inc.version ?? 0)) return;
  state.incidents.set(inc.incident_id, { ...known, ...inc });
}

// --- live feed --------------------------------------------------------------------------

let liveRetryMs = 500;
function connectLive(): void {
  const url = new URL("/api/live", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (state.cursor) url.searchParams.set("cursor", JSON.stringify(state.cursor));
  const ws = new WebSocket(url);
  const status = $("live-state");
  ws.onopen = () => {
    // The token goes in the first message, not the URL, so it stays out of access logs.
    ws.send(JSON.stringify({ token: auth.token ?? "" }));
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(String(ev.data)) as {
      type: string;
      key?: string;
      data?: unknown;
      incidents?: Incident[];
      assignments?: Assignment[];
      cursor?: unknown;
    };
    state.liveMessages += 1;
    if (msg.cursor) state.cursor = msg.cursor;
    if (msg.type === "snapshot") {
      for (const inc of msg.incidents ?? []) upsertIncident(inc);
      for (const a of msg.assignments ?? []) state.assignments.set(a.crew_id, a);
    } else if (msg.type === "incident") {
      if (msg.data) upsertIncident(msg.data);
      else if (msg.key) state.incidents.delete(msg.key);
    } else if (msg.type === "assignment") {
      if (msg.data) state.assignments.set((msg.data as Assignment).crew_id, msg.data as Assignment);
      else if (msg.key) state.assignments.delete(msg.key);
    } else if (msg.type !== "resumed") {
      return; // unknown; "resumed" (a resume is set up) only says the feed answers
    }
    if (!state.live) {
      // Live once the feed has sent something: the server may accept the socket and
      // close it at once (1011), which must keep backing off.
      liveRetryMs = 500;
      state.live = true;
      status.textContent = "live";
      status.classList.add("on");
    }
    window.cityfix.lastLiveAt = Date.now();
    scheduleRender();
  };
  ws.onclose = (ev) => {
    state.live = false;
    status.textContent = "reconnecting";
    status.classList.remove("on");
    if (ev.code === 4401) {
      auth.logout();
      location.reload();
      return;
    }
    setTimeout(connectLive, liveRetryMs);
    liveRetryMs = Math.min(liveRetryMs * 2, 10000);
  };
}

let renderQueued = false;
function scheduleRender(): void {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

// --- filters and lists -----------------------------------------------------------------

function setupFilters(): void {
  const form = $<HTMLFormElement>("filters");
  const prio = form.querySelector<HTMLSelectElement>("select[name=priority]")!;
  for (const p of PRIORITIES) prio.add(new Option(`${SHAPE_CHAR[p]} ${p}`, p));
  const st = form.querySelector<HTMLSelectElement>("select[name=status]")!;
  for (const s of STATUSES) st.add(new Option(label(s), s));
  for (const [k, v] of params) {
    const el = form.elements.namedItem(k);
    if (el instanceof HTMLSelectElement && k in state.filters) {
      if (![...el.options].some((o) => o.value === v)) el.add(new Option(v, v));
      el.value = v;
      (state.filters as Record<string, string>)[k] = v;
    }
  }
  form.addEventListener("change", () => {
    const data = new FormData(form);
    for (const k of Object.keys(state.filters)) (state.filters as Record<string, string>)[k] = String(data.get(k) ?? "");
    render();
  });
}

function visible(inc: Incident): boolean {
  const f = state.filters;
  if (f.category && inc.category !== f.category) return false;
  if (f.priority && inc.priority !== f.priority) return false;
  if (f.status === "active" && !ACTIVE.has(inc.status)) return false;
  if (f.status && f.status !== "active" && inc.status !== f.status) return false;
  if (f.district && inc.district !== f.district) return false;
  return true;
}

function sorted(incidents: Incident[]): Incident[] {
  return incidents.sort(
    (a, b) =>
      (PRANK[a.priority] ?? 9) - (PRANK[b.priority] ?? 9) ||
      Date.parse(a.expected_at ?? a.opened_at) - Date.parse(b.expected_at ?? b.opened_at) ||
      a.incident_id.localeCompare(b.incident_id),
  );
}

function setupTabs(): void {
  const tabs = [$("tab-incidents"), $("tab-crews")];
  const lists = [$("incident-list"), $("crew-list")];
  const pick = (i: number, focus: boolean) => {
    tabs.forEach((t, j) => {
      t.setAttribute("aria-selected", String(i === j));
      t.tabIndex = i === j ? 0 : -1;
      lists[j].hidden = i !== j;
    });
    if (focus) tabs[i].focus();
  };
  tabs.forEach((t, i) => {
    t.addEventListener("click", () => pick(i, false));
    t.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") pick(1 - i, true);
    });
  });
}

function categoryName(code: string): string {
  return state.serviceNames.get(code) ?? label(code);
}

function badge(priority: string, status: string): string {
  return `<span class="badge ${esc(priority.toLowerCase())} ${statusLook(status)}" aria-label="priority ${esc(priority)}">${SHAPE_CHAR[priority] ?? ""} ${esc(priority)}</span>`;
}

// When the work on an incident no longer active ended: its first resolution since it was
// last (re)opened, else when it was closed, merged or marked a duplicate (as
// streams.lifecycle.fixed_at).
function endedAt(inc: Incident): string | null {
  let resolved: string | null = null;
  let ended: string | null = null;
  for (const t of [...(inc.history ?? [])].reverse()) {
    if (t.status === "open" || t.status === "reopened") break;
    if (t.status === "resolved") resolved = t.at;
    else if (!ACTIVE.has(t.status)) ended = t.at;
  }
  return resolved ?? inc.resolved_at ?? ended ?? inc.updated_at ?? null;
}

/** The SLA cell: a countdown while the incident is worked on, then whether it was met. */
function slaCell(inc: Incident, tag: "span" | "dd"): string {
  if (ACTIVE.has(inc.status)) return `<${tag} class="sla" data-due="${esc(inc.expected_at ?? "")}"></${tag}>`;
  const s = slaOutcome(inc.expected_at, endedAt(inc));
  return `<${tag} class="sla${s.late ? " late" : ""}">${esc(s.text)}</${tag}>`;
}

const LIST_LIMIT = 400;

interface Row {
  id: string;
  html: string;
  cls: string;
  attrs: Record<string, string>;
}

// Update a list in place, keyed by id: rows keep their element (and so focus, hover and a
// click in progress) while live updates stream in; only changed rows are redrawn.
function reconcile(ul: HTMLElement, rows: Row[], tail: string | null): void {
  const existing = new Map<string, HTMLElement>();
  for (const li of [...ul.children] as HTMLElement[]) {
    if (li.dataset.id) existing.set(li.dataset.id, li);
    else li.remove();
  }
  let prev: HTMLElement | null = null;
  for (const row of rows) {
    let li = existing.get(row.id);
    if (li) existing.delete(row.id);
    else {
      li = document.createElement("li");
      li.dataset.id = row.id;
      li.tabIndex = -1;
    }
    if (li.dataset.html !== row.html) {
      li.innerHTML = row.html;
      li.dataset.html = row.html;
    }
    if (li.className !== row.cls) li.className = row.cls;
    for (const [k, v] of Object.entries(row.attrs)) if (li.getAttribute(k) !== v) li.setAttribute(k, v);
    const want: ChildNode | null = prev ? prev.nextSibling : ul.firstChild;
    if (want !== li) ul.insertBefore(li, want);
    prev = li;
  }
  for (const li of existing.values()) li.remove();
  if (tail) ul.insertAdjacentHTML("beforeend", tail);
}

function renderList(items: Incident[]): void {
  const ul = $("incident-list");
  const rows = items.slice(0, LIST_LIMIT).map((inc): Row => {
    const sel = inc.incident_id === state.selected;
    return {
      id: inc.incident_id,
      cls: sel ? "sel" : "",
      attrs: { role: "option", "aria-selected": String(sel) },
      html: `${badge(inc.priority, inc.status)}
      <span class="what">${esc(categoryName(inc.category))}</span>
      <span class="st st-${esc(inc.status)}">${esc(label(inc.status))}</span>
      <span class="sub">${esc(inc.district ?? "")}${inc.crew_id ? ` · ${esc(inc.crew_id)}` : ""}</span>
      ${slaCell(inc, "span")}`,
    };
  });
  let tail: string | null = null;
  if (items.length > LIST_LIMIT) tail = `<li class="more" aria-disabled="true">${items.length - LIST_LIMIT} more: narrow the filters</li>`;
  if (!items.length) tail = `<li class="more" aria-disabled="true">No incidents match.</li>`;
  reconcile(ul, rows, tail);
  $("count-incidents").textContent = String(items.length);
  rove(ul, state.selected);
  tick();
}

// One tab stop per list (a "roving" tabindex): Tab enters the list at the item last
// visited, the arrow keys (and Home/End) move within it, Enter or Space opens the item.
const roving = new Map<HTMLElement, string>();
function rove(ul: HTMLElement, preferred: string | null): void {
  const want = roving.get(ul) ?? preferred;
  const items = ul.querySelectorAll<HTMLElement>("li[data-id]");
  let current = want ? ul.querySelector<HTMLElement>(`li[data-id="${CSS.escape(want)}"]`) : null;
  current ??= items[0] ?? null;
  items.forEach((li) => (li.tabIndex = li === current ? 0 : -1));
}

function listKeys(ul: HTMLElement, activate: (li: HTMLElement) => void): void {
  ul.addEventListener("focusin", (ev) => {
    const li = (ev.target as HTMLElement).closest<HTMLElement>("li[data-id]");
    if (li?.parentElement !== ul) return;
    roving.set(ul, li.dataset.id!);
    ul.querySelectorAll<HTMLElement>("li[data-id]").forEach((x) => (x.tabIndex = x === li ? 0 : -1));
  });
  ul.addEventListener("click", (ev) => {
    const li = (ev.target as HTMLElement).closest<HTMLElement>("li[data-id]");
    if (li) activate(li);
  });
  ul.addEventListener("keydown", (ev) => {
    const li = (ev.target as HTMLElement).closest<HTMLElement>("li[data-id]");
    if (!li) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      activate(li);
    } else if (["ArrowDown", "ArrowUp", "Home", "End"].includes(ev.key)) {
      ev.preventDefault();
      const items = [...ul.querySelectorAll<HTMLElement>(":scope > li[data-id]")];
      const i = items.indexOf(li);
      const j = ev.key === "Home" ? 0 : ev.key === "End" ? items.length - 1 : i + (ev.key === "ArrowDown" ? 1 : -1);
      items[Math.max(0, Math.min(items.length - 1, j))]?.focus();
    }
  });
}
listKeys($("incident-list"), (li) => openPanel(li.dataset.id!, true));
listKeys($("crew-list"), (li) => selectCrew(li.dataset.id!, true));

function renderCrews(): void {
  const ul = $("crew-list");
  const ids = [...new Set([...state.crews.keys(), ...state.assignments.keys()])].sort();
  const rows = ids.map((id): Row => {
    const c = state.crews.get(id);
    const a = state.assignments.get(id);
    const stops = a?.stops ?? [];
    const sel = id === state.selectedCrew;
    const stopRows = stops
      .map((s) => {
        const inc = state.incidents.get(s.incident_id);
        const what = inc ? `${badge(inc.priority, inc.status)} ${esc(categoryName(inc.category))}` : esc(s.incident_id);
        return `<li data-stop="${esc(s.incident_id)}">${what}${s.pinned ? ' <span title="pinned">(pinned)</span>' : ""} <span class="eta" data-eta="${esc(s.eta)}"></span></li>`;
      })
      .join("");
    return {
      id,
      cls: `crew${sel ? " sel" : ""}`,
      attrs: { "aria-current": String(sel), "aria-expanded": String(sel) },
      html: `<span class="arrow" style="transform: rotate(${Number(c?.heading_deg ?? 0) - 90}deg)" aria-hidden="true">➤</span>
        <span class="what">${esc(id)}</span>
        <span class="st">${esc(label(c?.status ?? "unknown"))}</span>
        <span class="sub">${stops.length} stop${stops.length === 1 ? "" : "s"}${stops[0] ? ` · next <span data-eta="${esc(stops[0].eta)}"></span>` : ""}</span>
        <ol class="stops" aria-label="Plan of ${esc(id)}" data-plan="${esc(a?.plan_id ?? "")}">${stopRows}</ol>`,
    };
  });
  reconcile(ul, rows, ids.length ? null : `<li class="more" aria-disabled="true">No crews reported yet.</li>`);
  $("count-crews").textContent = String(ids.length);
  rove(ul, state.selectedCrew);
  tick();
}

function renderKpis(k: Kpis): void {
  const sla = k.sla_today ?? {};
  const met = Number(sla.met ?? 0);
  const total = Number(sla.resolved ?? 0);
  const rate = sla.ratio ?? (total ? met / total : null);
  const pct = rate == null ? "–" : `${Math.round(Number(rate) * 100)}%`;
  $("kpis").innerHTML = `
    <div class="kpi"><span class="k">Open</span><span class="v">${k.open_total}</span></div>
    ${PRIORITIES.map((p) => `<div class="kpi ${p.toLowerCase()}"><span class="k">${SHAPE_CHAR[p]} ${p}</span><span class="v">${k.open_by_priority?.[p] ?? 0}</span></div>`).join("")}
    <div class="kpi"><span class="k">Time to assign</span><span class="v">${duration(k.mean_time_to_assign_s)}</span></div>
    <div class="kpi"><span class="k">Time to resolve</span><span class="v">${duration(k.mean_time_to_resolve_s)}</span></div>
    <div class="kpi"><span class="k">SLA met today</span><span class="v">${pct}${total ? ` <small>(${met}/${total})</small>` : ""}</span></div>`;
}

function districtOptions(): void {
  const sel = $("filters").querySelector<HTMLSelectElement>("select[name=district]")!;
  const have = new Set([...sel.options].map((o) => o.value));
  const names = new Set<string>();
  for (const inc of state.incidents.values()) if (inc.district) names.add(inc.district);
  for (const n of [...names].sort()) if (!have.has(n)) sel.add(new Option(n, n));
}

// --- the map ------------------------------------------------------------------------------

function addLayers(): void {
  map.addSource("routes", { type: "geojson", data: empty() });
  map.addSource("stops", { type: "geojson", data: empty() });
  map.addSource("crews", { type: "geojson", data: empty() });
  map.addSource("incidents", {
    type: "geojson",
    data: empty(),
    cluster: true,
    clusterMaxZoom: 14,
    clusterRadius: 44,
    // The most urgent priority inside a cluster colours it.
    clusterProperties: { best: ["min", ["get", "prank"]] },
  });
  map.addLayer({
    id: "routes-casing",
    type: "line",
    source: "routes",
    layout: { "line-join": "round", "line-cap": "round" },
    paint: { "line-color": "#fff", "line-width": ["case", ["get", "selected"], 9, 6], "line-opacity": 0.9 },
  });
  map.addLayer({
    id: "routes",
    type: "line",
    source: "routes",
    layout: { "line-join": "round", "line-cap": "round" },
    paint: {
      "line-color": ["case", ["get", "selected"], "#000", ROUTE_COLOUR],
      "line-width": ["case", ["get", "selected"], 5, 3],
      "line-dasharray": [2, 1],
    },
  });
  map.addLayer({
    id: "stops",
    type: "symbol",
    source: "stops",
    minzoom: 12,
    layout: { "icon-image": ["concat", "stop-", ["to-string", ["get", "n"]]], "icon-allow-overlap": true, "icon-offset": [14, -14] },
  });
  const prColour: maplibregl.ExpressionSpecification = [
    "match",
    ["get", "best"],
    1,
    PRIORITY_COLOUR.P1,
    2,
    PRIORITY_COLOUR.P2,
    3,
    PRIORITY_COLOUR.P3,
    PRIORITY_COLOUR.P4,
  ];
  map.addLayer({
    id: "clusters",
    type: "circle",
    source: "incidents",
    filter: ["has", "point_count"],
    paint: {
      "circle-color": prColour,
      "circle-radius": ["step", ["get", "point_count"], 18, 10, 22, 50, 28],
      "circle-opacity": 0.35,
      "circle-stroke-color": prColour,
      "circle-stroke-width": 2,
    },
  });
  map.addLayer({
    id: "cluster-count",
    type: "symbol",
    source: "incidents",
    filter: ["has", "point_count"],
    layout: {
      "icon-image": ["concat", "count-P", ["to-string", ["get", "best"]], "-", ["get", "point_count_abbreviated"]],
      "icon-allow-overlap": true,
    },
  });
  map.addLayer({
    id: "incident-halo",
    type: "circle",
    source: "incidents",
    filter: ["==", ["get", "incident_id"], ""],
    paint: { "circle-radius": 22, "circle-color": "#000", "circle-opacity": 0.15, "circle-stroke-color": "#000", "circle-stroke-width": 3 },
  });
  map.addLayer({
    id: "incidents",
    type: "symbol",
    source: "incidents",
    filter: ["!", ["has", "point_count"]],
    layout: {
      "icon-image": ["concat", "inc-", ["get", "priority"], "-", ["get", "look"]],
      "icon-allow-overlap": true,
      "symbol-sort-key": ["-", 10, ["get", "prank"]],
    },
  });
  map.addLayer({
    id: "crews",
    type: "symbol",
    source: "crews",
    layout: {
      "icon-image": ["case", ["get", "selected"], "crew-selected", "crew"],
      "icon-rotate": ["get", "heading"],
      "icon-rotation-alignment": "map",
      "icon-allow-overlap": true,
      "icon-ignore-placement": true,
    },
  });
}

function empty(): GeoJSON.FeatureCollection {
  return { type: "FeatureCollection", features: [] };
}

function updateIncidentSource(items: Incident[]): void {
  const features: GeoJSON.Feature[] = items.map((inc) => ({
    type: "Feature",
    id: undefined,
    geometry: { type: "Point", coordinates: [inc.lon, inc.lat] },
    properties: {
      incident_id: inc.incident_id,
      priority: inc.priority,
      prank: PRANK[inc.priority] ?? 4,
      status: inc.status,
      look: statusLook(inc.status),
      category: inc.category,
    },
  }));
  (map.getSource("incidents") as GeoJSONSource | undefined)?.setData({ type: "FeatureCollection", features });
}

function updateCrewSource(): void {
  if (!map) return;
  const features: GeoJSON.Feature[] = [];
  for (const c of state.crews.values()) {
    if (c.lat == null || c.lon == null) continue;
    features.push({
      type: "Feature",
      geometry: { type: "Point", coordinates: [c.lon, c.lat] },
      properties: { crew_id: c.crew_id, heading: Number(c.heading_deg ?? 0), selected: c.crew_id === state.selectedCrew },
    });
  }
  (map.getSource("crews") as GeoJSONSource | undefined)?.setData({ type: "FeatureCollection", features });
}

function updateRouteSource(): void {
  const routes: GeoJSON.Feature[] = [];
  const stops: GeoJSON.Feature[] = [];
  for (const a of state.assignments.values()) {
    const selected = a.crew_id === state.selectedCrew;
    if (a.route?.coordinates?.length && a.route.coordinates.length > 1) {
      routes.push({ type: "Feature", geometry: a.route, properties: { crew_id: a.crew_id, selected } });
    }
    (a.stops ?? []).forEach((s, i) => {
      if (state.selectedCrew && !selected) return;
      stops.push({ type: "Feature", geometry: { type: "Point", coordinates: [s.lon, s.lat] }, properties: { crew_id: a.crew_id, n: i + 1 } });
    });
  }
  // The selected route is drawn last, above the others.
  routes.sort((x, y) => Number(x.properties!.selected) - Number(y.properties!.selected));
  (map.getSource("routes") as GeoJSONSource | undefined)?.setData({ type: "FeatureCollection", features: routes });
  (map.getSource("stops") as GeoJSONSource | undefined)?.setData({ type: "FeatureCollection", features: stops });
}

function bindMap(): void {
  map.on("click", "incidents", (e) => {
    const id = e.features?.[0]?.properties?.incident_id as string | undefined;
    if (id) openPanel(id, false);
  });
  map.on("click", "clusters", async (e) => {
    const f = e.features?.[0];
    if (!f) return;
    const src = map.getSource("incidents") as GeoJSONSource;
    const zoom = await src.getClusterExpansionZoom(f.properties!.cluster_id as number);
    map.easeTo({ center: (f.geometry as GeoJSON.Point).coordinates as [number, number], zoom });
  });
  map.on("click", "crews", (e) => {
    const id = e.features?.[0]?.properties?.crew_id as string | undefined;
    if (id) selectCrew(id, false);
  });
  for (const layer of ["incidents", "clusters", "crews"]) {
    map.on("mouseenter", layer, () => (map.getCanvas().style.cursor = "pointer"));
    map.on("mouseleave", layer, () => (map.getCanvas().style.cursor = ""));
  }
}

function render(): void {
  if (!map) return;
  const items = sorted([...state.incidents.values()].filter(visible));
  updateIncidentSource(items);
  updateRouteSource();
  updateCrewSource();
  renderList(items);
  renderCrews();
  districtOptions();
  map.setFilter("incident-halo", ["==", ["get", "incident_id"], state.selected ?? ""]);
  if (state.selected && !$("panel").hidden) renderPanel(state.selected, false);
}

function tick(): void {
  const now = cityNow();
  document.querySelectorAll<HTMLElement>("[data-eta]").forEach((el) => {
    const text = eta(el.dataset.eta || null, now);
    if (el.textContent !== text) el.textContent = text;
  });
  document.querySelectorAll<HTMLElement>("[data-due]").forEach((el) => {
    const s = slaText(el.dataset.due || null, now);
    if (el.textContent !== s.text) el.textContent = s.text;
    el.classList.toggle("late", s.late);
  });
}

// --- crews --------------------------------------------------------------------------------

function selectCrew(id: string, fly: boolean): void {
  state.selectedCrew = state.selectedCrew === id ? null : id;
  $("tab-crews").click();
  render();
  const c = state.crews.get(id);
  const a = state.assignments.get(id);
  if (fly && state.selectedCrew) {
    const pts: [number, number][] = [...(a?.route?.coordinates ?? [])];
    if (c?.lat != null && c.lon != null) pts.push([c.lon, c.lat]);
    if (pts.length > 1) {
      const b = pts.reduce((acc, p) => acc.extend(p), new maplibregl.LngLatBounds(pts[0], pts[0]));
      map.fitBounds(b, { padding: 60, maxZoom: 16 });
    } else if (pts.length) map.easeTo({ center: pts[0], zoom: 15 });
  }
}

// --- the incident panel ------------------------------------------------------------------

let returnFocus: HTMLElement | null = null;
const details = new Map<string, Incident>();

async function openPanel(id: string, fly: boolean): Promise<void> {
  returnFocus = document.activeElement as HTMLElement | null;
  state.selected = id;
  const inc = state.incidents.get(id);
  if (fly && inc) map.easeTo({ center: [inc.lon, inc.lat], zoom: Math.max(map.getZoom(), 15.5) });
  render();
  renderPanel(id, true);
  try {
    details.set(id, await api<Incident>(`/api/incidents/${encodeURIComponent(id)}`));
    if (state.selected === id) renderPanel(id, false);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) toast(`Could not load details: ${(err as Error).message}`, true);
  }
}

function closePanel(): void {
  state.selected = null;
  $("panel").hidden = true;
  document.body.classList.remove("panel-open");
  render();
  const back = returnFocus?.dataset?.id
    ? $("incident-list").querySelector<HTMLElement>(`li[data-id="${CSS.escape(returnFocus.dataset.id)}"]`)
    : null;
  (back ?? returnFocus ?? $("incident-list")).focus();
}

document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !$("panel").hidden && !$<HTMLDialogElement>("login").open) {
    ev.preventDefault();
    closePanel();
  }
});

function renderPanel(id: string, focus: boolean): void {
  const panel = $("panel");
  const live = state.incidents.get(id);
  const detail = details.get(id);
  const inc: Incident | undefined = live ? { ...detail, ...live, events: detail?.events } : detail;
  if (!inc) return;
  // Keep what the user is typing: only re-render the read-only part while a form has focus.
  const busy = panel.contains(document.activeElement) && (document.activeElement as HTMLElement).closest("form");
  // The detail is read once, when the panel opens; a live record as new or newer wins.
  const liveWins = live != null && (live.version ?? 0) >= (detail?.version ?? 0);
  const evidence = (liveWins ? live.evidence : undefined) ?? detail?.evidence ?? [];
  const history = (liveWins ? live.history : undefined) ?? detail?.history ?? [];
  const breakdown = Object.entries(inc.score_breakdown ?? {}).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const maxPart = Math.max(1, ...breakdown.map(([, v]) => Math.abs(v)));
  const info = `
    <header class="panel-head">
      <h2 id="panel-title">${badge(inc.priority, inc.status)} ${esc(categoryName(inc.category))}</h2>
      <button type="button" class="close" data-act="close" aria-label="Close details (Escape)">✕</button>
    </header>
    <p class="muted mono">${esc(inc.incident_id)}</p>
    <dl class="facts">
      <dt>Status</dt><dd><span class="st st-${esc(inc.status)}">${esc(label(inc.status))}</span>${inc.merged_into ? ` → ${esc(inc.merged_into)}` : ""}</dd>
      <dt>SLA</dt>${slaCell(inc, "dd")}
      <dt>Due</dt><dd>${esc(clock(inc.expected_at))}</dd>
      <dt>Crew</dt><dd>${esc(inc.crew_id ?? "none")}</dd>
      <dt>District</dt><dd>${esc(inc.district ?? "–")}</dd>
      <dt>Road</dt><dd>${esc(label(inc.road_class ?? "–"))}</dd>
      <dt>Opened</dt><dd>${esc(clock(inc.opened_at))}</dd>
      <dt>Reporters</dt><dd>${esc(inc.reporters ?? "–")}</dd>
    </dl>
    <h3>Priority ${esc(inc.priority)} · score ${Number(inc.score ?? 0).toFixed(1)}${inc.manual_priority ? " (set by hand)" : ""}</h3>
    <table class="breakdown"><caption class="sr">Score breakdown</caption><tbody>
      ${breakdown.map(([k, v]) => `<tr><th scope="row">${esc(label(k))}</th><td class="num">${v >= 0 ? "+" : ""}${v.toFixed(1)}</td><td class="bar"><span style="width:${(Math.abs(v) / maxPart) * 100}%" class="${v < 0 ? "neg" : ""}"></span></td></tr>`).join("")}
    </tbody></table>
    <h3>Evidence (${evidence.length})</h3>
    <ul class="evidence">${evidence
      .slice(0, 50)
      .map(
        (e) => `<li><span class="kind">${esc(e.kind === "alert" ? "Sensor alert" : "Report")}</span> ${esc(e.source ?? "")} <span class="muted">${esc(clock(e.at))}</span>
          ${e.value != null ? `<span class="muted">value ${esc(e.value)}</span>` : ""}
          ${e.description ? `<div>${esc(e.description)}</div>` : ""}
          ${e.media_url && /^https?:\/\//.test(e.media_url) ? `<div><a href="${esc(e.media_url)}" target="_blank" rel="noopener noreferrer">photo</a></div>` : ""}</li>`,
      )
      .join("")}${evidence.length > 50 ? `<li class="muted">${evidence.length - 50} more</li>` : ""}</ul>
    <h3>History</h3>
    <ol class="history">${history.map((h) => `<li><span class="muted">${esc(clock(h.at))}</span> ${esc(label(h.status))}${h.reason ? ` – ${esc(h.reason)}` : ""}</li>`).join("")}</ol>`;
  const actions = auth.canAct ? actionForms(inc) : `<p class="muted">Signed in as a viewer: actions need the dispatcher role.</p>`;
  // Redraw only what changed, so a click or a choice in progress survives live updates.
  const infoEl = panel.querySelector<HTMLElement>(".info");
  const actEl = panel.querySelector<HTMLElement>(".actions");
  if (!infoEl || !actEl || panel.dataset.id !== id) {
    panel.innerHTML = `<div class="info">${info}</div><div class="actions">${actions}</div>`;
    panel.dataset.id = id;
    panel.querySelector<HTMLElement>(".info")!.dataset.html = info;
    panel.querySelector<HTMLElement>(".actions")!.dataset.html = actions;
  } else {
    if (infoEl.dataset.html !== info) {
      infoEl.innerHTML = info;
      infoEl.dataset.html = info;
    }
    if (!busy && actEl.dataset.html !== actions) {
      actEl.innerHTML = actions;
      actEl.dataset.html = actions;
    }
  }
  tick();
  panel.setAttribute("aria-labelledby", "panel-title");
  panel.hidden = false;
  document.body.classList.add("panel-open");
  if (focus) panel.focus();
}

const ACTION_NAMES: Record<string, string> = {
  priority: "Re-prioritise",
  pin: "Pin to crew",
  duplicate: "Mark duplicate",
  close: "Close",
};

function actionForms(inc: Incident): string {
  const crews = [...new Set([...state.crews.keys(), ...state.assignments.keys()])].sort();
  const near = [...state.incidents.values()]
    .filter((o) => o.incident_id !== inc.incident_id && ACTIVE.has(o.status))
    .map((o) => ({ o, d: Math.hypot(o.lat - inc.lat, (o.lon - inc.lon) * Math.cos((inc.lat * Math.PI) / 180)) }))
    .sort((a, b) => a.d - b.d)
    .slice(0, 10);
  return `<h3>Actions</h3>
    <form data-act="priority" class="act"><label>Priority <select name="priority">${PRIORITIES.map((p) => `<option ${p === inc.priority ? "selected" : ""}>${esc(p)}</option>`).join("")}</select></label><button>Re-prioritise</button></form>
    <form data-act="pin" class="act"><label>Crew <select name="crew_id" required>${crews.map((c) => `<option ${c === inc.crew_id ? "selected" : ""}>${esc(c)}</option>`).join("")}</select></label><button>Pin to crew</button></form>
    <form data-act="duplicate" class="act"><label>Duplicate of <input name="duplicate_of" list="near-${esc(inc.incident_id)}" required placeholder="incident id" /></label>
      <datalist id="near-${esc(inc.incident_id)}">${near.map(({ o, d }) => `<option value="${esc(o.incident_id)}">${esc(categoryName(o.category))} ${esc(o.priority)}, ${Math.round(d * 111000)} m</option>`).join("")}</datalist><button>Mark duplicate</button></form>
    <form data-act="close" class="act"><label>Note <input name="note" maxlength="1000" placeholder="why (optional)" /></label><button>Close incident</button></form>`;
}

$("panel").addEventListener("click", (ev) => {
  if ((ev.target as HTMLElement).closest("[data-act=close]")) closePanel();
});

$("panel").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target as HTMLFormElement;
  const id = state.selected;
  if (!id) return;
  const data = Object.fromEntries(new FormData(form)) as Record<string, string>;
  for (const k of Object.keys(data)) if (data[k] === "") delete data[k];
  const act = form.dataset.act!;
  const button = form.querySelector("button")!;
  button.disabled = true;
  try {
    await api(`/api/incidents/${encodeURIComponent(id)}/${act}`, { method: "POST", json: data });
    toast(`${ACTION_NAMES[act] ?? act}: sent.`);
    form.querySelector<HTMLInputElement>("input")?.blur();
  } catch (err) {
    toast(`${ACTION_NAMES[act] ?? act} failed: ${(err as Error).message}`, true);
  } finally {
    button.disabled = false;
  }
});

main().catch((err) => {
  console.error(err);
  toast(`Could not start: ${(err as Error).message}`, true);
  window.cityfix.error = String(err);
});
