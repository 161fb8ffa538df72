// The connection log window. Rows arrive in batches over a Tauri IPC
// channel (at most four a second, and only when something changed; see
// src-tauri/src/connection_log.rs); the
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
/**
 * Renders driven by the feed come at most this often while traffic is
 * heavy (a batch of BUSY_BATCH rows or more, 200 rows a second): each one
 * repaints every row in view, and the webview shares the machine with the
 * bridge. Nobody reads rows that arrive faster than that; counters still
 * move with every batch. At 250 ms the web process took about 61% of a
 * core under the e2e load, at 500 ms about 55%.
 */
const BUSY_RENDER_MS = 500;
const BUSY_BATCH = 50;
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
let lastRender = 0;
let feedTimer: number | null = null;
/** Row elements, reused from render to render. */
const pool: HTMLDivElement[] = [];
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

/** Sets an element's text only when it differs: an unchanged write still makes the webview restyle and repaint. */
function setText(id: string, text: string) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

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

/** A render for new rows: right away, unless traffic is heavy (see BUSY_RENDER_MS). */
function scheduleFeedRender(batchSize: number) {
  if (feedTimer !== null) return;
  const wait = batchSize >= BUSY_BATCH ? lastRender + BUSY_RENDER_MS - performance.now() : 0;
  if (wait <= 0) {
    scheduleRender();
    return;
  }
  feedTimer = window.setTimeout(() => {
    feedTimer = null;
    scheduleRender();
  }, wait);
}

const CELLS = 11;

function newRow(): HTMLDivElement {
  const r = document.createElement("div");
  r.setAttribute("role", "row");
  for (let i = 0; i < CELLS; i++) r.append(document.createElement("span"));
  return r;
}

const CELL_CLASS = ["", "", "", "", "", "", "num st", "num", "num", "num", "error"];

function setCell(s: HTMLElement, text: string, cls: string) {
  if (s.textContent !== text) {
    s.textContent = text;
    s.title = text;
  }
  if (s.className !== cls) s.className = cls;
}

/** Fills a (reused) row element with `e`, touching only what changed. */
function fillRow(r: HTMLDivElement, e: LogEvent) {
  let cls = "r";
  if (isError(e)) cls += " err";
  else if (e.status === 407) cls += " auth";
  if (isOpen(e)) cls += " open";
  if (e.id === selected) cls += " sel";
  if (r.className !== cls) r.className = cls;
  r.dataset.id = String(e.id);
  const texts = [
    clock(e.started_ms),
    clientText(e),
    e.method,
    e.target,
    routeText(e),
    authText(e),
    statusText(e),
    bytes(e.bytes_up),
    bytes(e.bytes_down),
    isOpen(e) ? `${duration(e.duration_ms)}+` : duration(e.duration_ms),
    errorText(e),
  ];
  const cells = r.children;
  for (let i = 0; i < CELLS; i++) setCell(cells[i] as HTMLElement, texts[i], CELL_CLASS[i]);
}

function render() {
  const t0 = performance.now();
  renderRows();
  timing.renders++;
  timing.renderMs += performance.now() - t0;
}

function renderRows() {
  const viewport = $("viewport");
  $("spacer").style.height = `${shown.length * ROW_HEIGHT}px`;
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const count = Math.ceil(viewport.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
  const slice = shown.slice(first, first + count);
  const rows = $("rows");
  rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
  while (pool.length < slice.length) pool.push(newRow());
  slice.forEach((e, i) => fillRow(pool[i], e));
  while (rows.childElementCount > slice.length) rows.lastElementChild?.remove();
  for (let i = rows.childElementCount; i < slice.length; i++) rows.append(pool[i]);
  lastRender = performance.now();
  $("empty").hidden = shown.length > 0;
  $("empty").textContent =
    store.rows.length === 0
      ? "No requests yet. Traffic through the bridge appears here as it happens."
      : "No rows match the filter.";
  showCounts();
  if (selected !== null) showDetails(selected);
}

/**
 * The row counts and the dropped-rows notice. Updated with every batch as
 * well as every render, so they are never behind a render still to come.
 */
function showCounts() {
  const total = store.rows.length;
  const kept = `kept ${total.toLocaleString("en")} of at most ${store.cap.toLocaleString("en")}`;
  setText("shown", shown.length === total ? `${total.toLocaleString("en")} rows (${kept})` : `Showing ${shown.length.toLocaleString("en")} rows (${kept})`);
  $("shown").dataset.rows = String(shown.length);
  $("shown").dataset.kept = String(total);
  $("shown").dataset.evicted = String(store.evicted);
  const dropped = droppedByApp + droppedWhilePaused;
  const d = $("dropped");
  if (d.hidden !== (dropped === 0)) d.hidden = dropped === 0;
  d.dataset.dropped = String(dropped);
  setText("dropped", `${dropped.toLocaleString("en")} rows dropped: the window fell behind (the traffic itself was not affected)`);
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

/**
 * Time spent on the feed and on rendering, for the load test to report;
 * `noNews` counts batches that told the window nothing (the app should
 * never send one: each costs a repaint).
 */
const timing = { batches: 0, events: 0, feedMs: 0, renders: 0, renderMs: 0, noNews: 0 };
let lastNews = "";
(window as unknown as { __logTiming: typeof timing }).__logTiming = timing;

function onBatch(batch: LogBatch) {
  const t0 = performance.now();
  const news = JSON.stringify([batch.dropped, batch.counters]);
  if (batch.events.length === 0 && news === lastNews) timing.noNews++;
  lastNews = news;
  takeBatch(batch);
  timing.batches++;
  timing.events += batch.events.length;
  timing.feedMs += performance.now() - t0;
}

function takeBatch(batch: LogBatch) {
  const c = batch.counters;
  setText("rate", c.requests_per_second < 10 ? c.requests_per_second.toFixed(1) : String(Math.round(c.requests_per_second)));
  setText("tunnels", String(c.open_tunnels));
  setText("errors", String(c.errors_last_minute));
  $("errors").classList.toggle("bad", c.errors_last_minute > 0);
  setText("handshakes", String(c.handshakes));
  $("rows").dataset.events = String(c.events);
  const notice = $("notice");
  if (notice.hidden !== c.bridging) notice.hidden = c.bridging;
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
    if (changedDrops) showCounts();
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
  shown = visible(store, filter());
  showCounts();
  scheduleFeedRender(batch.events.length);
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
