// The connection log's rows, apart from the page: the bounded history,
// updates to rows already shown, the filter, and the exports. No DOM here,
// so vitest checks it in node.

/** One connection event as the engine sends it (crates/gangway-engine/src/events.rs). */
export interface LogEvent {
  id: number;
  phase: "open" | "done";
  kind: "request" | "tunnel" | "local";
  started_ms: number;
  client: string;
  method: string;
  target: string;
  route: string;
  auth: { scheme: string; handshake: boolean; reused: boolean } | null;
  status: number | null;
  bytes_up: number;
  bytes_down: number;
  duration_ms: number;
  connect_ms: number | null;
  auth_ms: number | null;
  first_byte_ms: number | null;
  error: string | null;
  /** The client's program, where the OS could tell (set by the window). */
  process?: string;
  request_headers?: [string, string][];
  response_headers?: [string, string][];
}

export interface Counters {
  requests_per_second: number;
  open_tunnels: number;
  errors_last_minute: number;
  handshakes: number;
  events: number;
  bridging: boolean;
}

export interface LogBatch {
  events: LogEvent[];
  dropped: number;
  counters: Counters;
  /** Client address -> program name. */
  names: Record<string, string>;
}

export interface Filter {
  text: string;
  errorsOnly: boolean;
  tunnels: boolean;
  requests: boolean;
}

export const DEFAULT_HISTORY = 10_000;
export const HISTORY_CHOICES = [1_000, 10_000, 50_000];

/** A row keeps its place while its event is replaced (a tunnel closing). */
export interface Row {
  ev: LogEvent;
  /** The filter's search text, made on first use, dropped when `ev` changes. */
  text?: string;
}

export function isError(e: LogEvent): boolean {
  return e.phase === "done" && (e.error !== null || (e.status !== null && e.status >= 500));
}

export function isOpen(e: LogEvent): boolean {
  return e.phase === "open";
}

/** The bounded history: oldest first in `rows`, at most `cap` of them. */
export class RowStore {
  rows: Row[] = [];
  private byId = new Map<number, Row>();
  /** Rows pushed out by the history cap since the last clear. */
  evicted = 0;

  constructor(public cap: number = DEFAULT_HISTORY) {}

  /** Adds new rows and updates known ones; returns whether anything changed. */
  apply(events: LogEvent[]): boolean {
    for (const ev of events) {
      const known = this.byId.get(ev.id);
      if (known) {
        known.ev = ev;
        known.text = undefined;
      } else {
        const row = { ev };
        this.rows.push(row);
        this.byId.set(ev.id, row);
      }
    }
    this.trim();
    return events.length > 0;
  }

  setCap(cap: number) {
    this.cap = cap;
    this.trim();
  }

  clear() {
    this.rows = [];
    this.byId.clear();
    this.evicted = 0;
  }

  get(id: number): Row | undefined {
    return this.byId.get(id);
  }

  private trim() {
    const over = this.rows.length - this.cap;
    if (over <= 0) return;
    for (const row of this.rows.splice(0, over)) this.byId.delete(row.ev.id);
    this.evicted += over;
  }
}

function rowMatches(row: Row, f: Filter, text: string): boolean {
  const e = row.ev;
  if (f.errorsOnly && !isError(e)) return false;
  const tunnel = e.kind === "tunnel";
  if (tunnel && !f.tunnels) return false;
  if (!tunnel && !f.requests) return false;
  if (text === "") return true;
  row.text ??= searchText(e);
  return row.text.includes(text);
}

function searchText(e: LogEvent): string {
  return [clientText(e), e.method, e.target, e.route, authText(e), e.status ?? "", errorText(e), e.kind]
    .join(" ")
    .toLowerCase();
}

/**
 * What is shown: newest first. Runs for every batch, so each row's search
 * text is made once, not once per batch.
 */
export function visible(store: RowStore, f: Filter): LogEvent[] {
  const text = f.text.trim().toLowerCase();
  const out: LogEvent[] = [];
  for (let i = store.rows.length - 1; i >= 0; i--) {
    const row = store.rows[i];
    if (rowMatches(row, f, text)) out.push(row.ev);
  }
  return out;
}

// ---- Words for the cells -------------------------------------------------------

export function authText(e: LogEvent): string {
  if (!e.auth) return "";
  if (e.auth.reused) return `${e.auth.scheme}, pooled`;
  if (e.auth.handshake) return `${e.auth.scheme}, handshake`;
  return e.auth.scheme;
}

export function clientText(e: LogEvent): string {
  return e.process ? `${e.client} (${e.process})` : e.client;
}

export function routeText(e: LogEvent): string {
  return e.route === "direct" ? "direct" : `via ${e.route}`;
}

export function statusText(e: LogEvent): string {
  if (isOpen(e)) return "open";
  return e.status === null ? "–" : String(e.status);
}

const REASONS: Record<number, string> = {
  407: "Proxy Authentication Required",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** The error in words: the engine's, or what a 5xx or 407 status means. */
export function errorText(e: LogEvent): string {
  if (e.error) return e.error;
  if (e.phase !== "done" || e.status === null) return "";
  const reason = REASONS[e.status] ?? "";
  const who = e.route === "direct" ? "the origin" : "the upstream proxy";
  if (e.status === 407) return `${who} asks for credentials (${e.status} ${reason})`;
  if (e.status >= 500) return `${who} answered ${e.status}${reason ? ` ${reason}` : ""}`;
  return "";
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return `${m} min ${s} s`;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

export function clock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** `20261125-190102`, local time: the export file's name. */
export function stamp(d: Date): string {
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

// ---- Exports -------------------------------------------------------------------------

const CSV_COLUMNS = [
  "time",
  "client",
  "kind",
  "method",
  "target",
  "route",
  "auth",
  "status",
  "bytes_up",
  "bytes_down",
  "duration_ms",
  "error",
] as const;

function csvCell(v: string | number | null): string {
  let s = v === null ? "" : String(v);
  // A spreadsheet would run a cell starting like a formula.
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function toCsv(events: LogEvent[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const e of events) {
    lines.push(
      [
        new Date(e.started_ms).toISOString(),
        clientText(e),
        e.kind,
        e.method,
        e.target,
        e.route,
        authText(e),
        isOpen(e) ? "open" : e.status,
        e.bytes_up,
        e.bytes_down,
        e.duration_ms,
        errorText(e),
      ]
        .map(csvCell)
        .join(","),
    );
  }
  return lines.join("\r\n") + "\r\n";
}

export function toJson(events: LogEvent[]): string {
  return JSON.stringify(
    events.map((e) => ({ time: new Date(e.started_ms).toISOString(), ...e })),
    null,
    2,
  );
}
