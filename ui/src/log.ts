// The connection log window. Rows arrive in batches over a Tauri IPC
// channel (about ten a second, see src-tauri/src/connection_log.rs); the
// history is bounded (RowStore), and only the rows in view are in the DOM,
// so the window stays responsive at thousands of requests a second.
import { Channel, invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";
import { getCurrentWindow } from "@tauri-apps/api/window";
import type { AppStatus } from "./form";
import {
  DEFAULT_HISTORY,
  HISTORY_CHOICES,
  RowStore,
  authText,
  bytes,
  clientText,
  clock,
  duration,
  errorText,
  isError,
  isOpen,
  routeText,
  stamp,
  statusText,
  toCsv,
  toJson,
  visible,
  type Filter,
  type LogBatch,
  type LogEvent,
} from "./logrows";

const ROW_HEIGHT = 24;
/** Rows rendered beyond the visible ones, above and below. */
const OVERSCAN = 10;
const HISTORY_KEY = "gangway.log.history";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const store = new RowStore(savedHistory());
let shown: LogEvent[] = [];
let paused = false;
let pausedQueue: LogEvent[] = [];
/** Rows the engine side dropped, plus rows lost from the pause queue. */
let droppedByApp = 0;
let droppedWhilePaused = 0;
let selected: number | null = null;
let renderQueued = false;
/** Client address -> program, as the app found them. */
const names = new Map<string, string>();

function savedHistory(): number {
  const n = Number(localStorage.getItem(HISTORY_KEY));
  return HISTORY_CHOICES.includes(n) ? n : DEFAULT_HISTORY;
}

function filter(): Filter {
  return {
    text: $<HTMLInputElement>("filter").value,
    errorsOnly: $<HTMLInputElement>("errorsOnly").checked,
    tunnels: $<HTMLInputElement>("showTunnels").checked,
    requests: $<HTMLInputElement>("showRequests").checked,
  };
}

// ---- Rendering ------------------------------------------------------------------

function refilter() {
  shown = visible(store, filter());
  scheduleRender();
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function cell(text: string, cls?: string): HTMLSpanElement {
  const s = document.createElement("span");
  s.textContent = text;
  if (cls) s.className = cls;
  s.title = text;
  return s;
}

function rowElement(e: LogEvent): HTMLDivElement {
  const r = document.createElement("div");
  r.className = "r";
  if (isError(e)) r.classList.add("err");
  else if (e.status === 407) r.classList.add("auth");
  if (isOpen(e)) r.classList.add("open");
  if (e.id === selected) r.classList.add("sel");
  r.dataset.id = String(e.id);
  r.setAttribute("role", "row");
  r.append(
    cell(clock(e.started_ms)),
    cell(clientText(e)),
    cell(e.method),
    cell(e.target),
    cell(routeText(e)),
    cell(authText(e)),
    cell(statusText(e), "num st"),
    cell(bytes(e.bytes_up), "num"),
    cell(bytes(e.bytes_down), "num"),
    cell(isOpen(e) ? `${duration(e.duration_ms)}+` : duration(e.duration_ms), "num"),
    cell(errorText(e), "error"),
  );
  return r;
}

function render() {
  const viewport = $("viewport");
  $("spacer").style.height = `${shown.length * ROW_HEIGHT}px`;
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const count = Math.ceil(viewport.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
  const slice = shown.slice(first, first + count);
  const rows = $("rows");
  rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
  rows.replaceChildren(...slice.map(rowElement));
  $("empty").hidden = shown.length > 0;
  $("empty").textContent =
    store.rows.length === 0
      ? "No requests yet. Traffic through the bridge appears here as it happens."
      : "No rows match the filter.";
  const total = store.rows.length;
  const kept = `kept ${total.toLocaleString("en")} of at most ${store.cap.toLocaleString("en")}`;
  $("shown").textContent =
    shown.length === total
      ? `${total.toLocaleString("en")} rows (${kept})`
      : `Showing ${shown.length.toLocaleString("en")} rows (${kept})`;
  $("shown").dataset.rows = String(shown.length);
  $("shown").dataset.kept = String(total);
  $("shown").dataset.evicted = String(store.evicted);
  const dropped = droppedByApp + droppedWhilePaused;
  const d = $("dropped");
  d.hidden = dropped === 0;
  d.dataset.dropped = String(dropped);
  d.textContent = `${dropped.toLocaleString("en")} rows dropped: the window fell behind (the traffic itself was not affected)`;
  if (selected !== null) showDetails(selected);
}

// ---- Details pane --------------------------------------------------------------

function table(pairs: [string, string][]): HTMLTableElement {
  const t = document.createElement("table");
  for (const [k, v] of pairs) {
    const tr = t.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  return t;
}

function heading(text: string): HTMLHeadingElement {
  const h = document.createElement("h3");
  h.textContent = text;
  return h;
}

function ms(v: number | null): string {
  return v === null ? "–" : duration(v);
}

function showDetails(id: number) {
  const row = store.get(id);
  const pane = $("details");
  if (!row) {
    pane.hidden = true;
    selected = null;
    return;
  }
  const e = row.ev;
  pane.hidden = false;
  $("detailTitle").textContent = `${e.method} ${e.target}`;
  const body = $("detailBody");
  const parts: HTMLElement[] = [];
  if (errorText(e)) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = errorText(e);
    parts.push(p);
  }
  parts.push(
    table([
      ["Time", new Date(e.started_ms).toLocaleString()],
      ["Client", clientText(e)],
      ["Route", routeText(e)],
      ["Auth", authText(e) || "none"],
      ["Status", statusText(e)],
      ["Bytes", `${bytes(e.bytes_up)} up, ${bytes(e.bytes_down)} down`],
    ]),
    heading("Timing"),
    table([
      ["Connect", e.connect_ms === null ? "pooled connection (no connect)" : ms(e.connect_ms)],
      ["Authentication", ms(e.auth_ms)],
      ["First byte", ms(e.first_byte_ms)],
      [isOpen(e) ? "Open for" : "Total", duration(e.duration_ms)],
    ]),
  );
  const req = e.request_headers ?? [];
  const res = e.response_headers ?? [];
  if (req.length === 0 && res.length === 0) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = "Headers are captured only while this window is open; credentials are always masked.";
    parts.push(p);
  } else {
    parts.push(heading("Request headers"), table(req), heading("Response headers"), table(res));
  }
  body.replaceChildren(...parts);
  for (const r of $("rows").children) (r as HTMLElement).classList.toggle("sel", (r as HTMLElement).dataset.id === String(id));
}

// ---- The feed --------------------------------------------------------------------

function onBatch(batch: LogBatch) {
  const c = batch.counters;
  $("rate").textContent = c.requests_per_second < 10 ? c.requests_per_second.toFixed(1) : String(Math.round(c.requests_per_second));
  $("tunnels").textContent = String(c.open_tunnels);
  $("errors").textContent = String(c.errors_last_minute);
  $("errors").classList.toggle("bad", c.errors_last_minute > 0);
  $("handshakes").textContent = String(c.handshakes);
  $("rows").dataset.events = String(c.events);
  const notice = $("notice");
  notice.hidden = c.bridging;
  notice.textContent = "Bridging is off. Enable it from the tray menu; traffic through the bridge will appear here.";
  const changedDrops = batch.dropped !== droppedByApp;
  droppedByApp = batch.dropped;
  for (const ev of batch.events) {
    const name = batch.names[ev.client] ?? names.get(ev.client);
    if (name) {
      ev.process = name;
      if (names.size > 5_000) names.clear();
      names.set(ev.client, name);
    }
  }
  if (batch.events.length === 0) {
    if (changedDrops) scheduleRender();
    return;
  }
  if (paused) {
    pausedQueue.push(...batch.events);
    const over = pausedQueue.length - store.cap;
    if (over > 0) {
      pausedQueue.splice(0, over);
      droppedWhilePaused += over;
    }
    return;
  }
  store.apply(batch.events);
  refilter();
}

function setPaused(on: boolean) {
  paused = on;
  const b = $("pause");
  b.textContent = on ? `Resume` : "Pause";
  b.classList.toggle("on", on);
  if (!on && pausedQueue.length > 0) {
    store.apply(pausedQueue);
    pausedQueue = [];
    refilter();
  }
}

async function exportShown(format: "csv" | "json") {
  const out = $("exported");
  const rows = shown;
  const contents = format === "csv" ? toCsv(rows) : toJson(rows);
  try {
    const path = await invoke<string>("export_connection_log", { format, stamp: stamp(new Date()), contents });
    out.className = "result good";
    out.textContent = `Saved ${rows.length} rows to ${path}`;
    out.dataset.path = path;
  } catch (e) {
    out.className = "result bad";
    out.textContent = `Export failed: ${(e as { message?: string }).message ?? String(e)}`;
  }
}

function showStatus(s: AppStatus) {
  const line = $("statusLine");
  line.textContent = s.line;
  line.className = `status ${s.health}`;
}

function wire() {
  const history = $<HTMLSelectElement>("history");
  history.value = String(store.cap);
  history.addEventListener("change", () => {
    const n = Number(history.value);
    localStorage.setItem(HISTORY_KEY, String(n));
    store.setCap(n);
    refilter();
  });
  for (const id of ["filter", "errorsOnly", "showTunnels", "showRequests"]) {
    $(id).addEventListener("input", refilter);
    $(id).addEventListener("change", refilter);
  }
  $("pause").addEventListener("click", () => setPaused(!paused));
  $("clear").addEventListener("click", () => {
    store.clear();
    pausedQueue = [];
    selected = null;
    $("details").hidden = true;
    refilter();
  });
  $("exportCsv").addEventListener("click", () => void exportShown("csv"));
  $("exportJson").addEventListener("click", () => void exportShown("json"));
  $("viewport").addEventListener("scroll", scheduleRender, { passive: true });
  window.addEventListener("resize", scheduleRender);
  $("rows").addEventListener("click", (ev) => {
    const row = (ev.target as HTMLElement).closest<HTMLElement>(".r");
    if (!row?.dataset.id) return;
    selected = Number(row.dataset.id);
    showDetails(selected);
  });
  $("closeDetails").addEventListener("click", () => {
    selected = null;
    $("details").hidden = true;
    scheduleRender();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey && ev.key === "w") {
      void getCurrentWindow().close();
      return;
    }
    if (ev.key === "Escape" && selected !== null) {
      selected = null;
      $("details").hidden = true;
      scheduleRender();
    }
  });
}

async function start() {
  wire();
  render();
  void invoke<AppStatus>("get_status").then(showStatus);
  void listen<AppStatus>("status", (ev) => showStatus(ev.payload));
  const channel = new Channel<LogBatch>();
  channel.onmessage = onBatch;
  try {
    const info = await invoke<{ logDir: string | null }>("watch_connection_log", { channel });
    $("logFile").textContent = info.logDir ? `Log files: ${info.logDir}` : "";
  } catch (e) {
    const notice = $("notice");
    notice.hidden = false;
    notice.textContent = `The connection log is not available: ${(e as { message?: string }).message ?? String(e)}`;
  }
}

void start();
