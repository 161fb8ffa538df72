import { describe, expect, it } from "vitest";
import {
  RowStore,
  authText,
  bytes,
  errorText,
  isError,
  statusText,
  toCsv,
  toJson,
  visible,
  type Filter,
  type LogEvent,
} from "./logrows";

const all: Filter = { text: "", errorsOnly: false, tunnels: true, requests: true };

function ev(id: number, over: Partial<LogEvent> = {}): LogEvent {
  return {
    id,
    phase: "done",
    kind: "request",
    started_ms: 1_764_097_262_000 + id,
    client: "127.0.0.1:40000",
    method: "GET",
    target: `http://example.test/${id}`,
    route: "proxy.corp:8080",
    auth: { scheme: "NTLM", handshake: false, reused: true },
    status: 200,
    bytes_up: 0,
    bytes_down: 1234,
    duration_ms: 12,
    connect_ms: null,
    auth_ms: null,
    first_byte_ms: 10,
    error: null,
    ...over,
  };
}

describe("the row store", () => {
  it("keeps at most its cap, newest first, and counts what it pushed out", () => {
    const store = new RowStore(3);
    store.apply([ev(1), ev(2), ev(3), ev(4), ev(5)]);
    expect(visible(store, all).map((e) => e.id)).toEqual([5, 4, 3]);
    expect(store.evicted).toBe(2);
    expect(store.get(1)).toBeUndefined();
    store.setCap(2);
    expect(visible(store, all).map((e) => e.id)).toEqual([5, 4]);
  });

  it("updates an open tunnel in place when it closes", () => {
    const store = new RowStore();
    store.apply([ev(1, { kind: "tunnel", method: "CONNECT", phase: "open", status: 200, bytes_down: 0 }), ev(2)]);
    expect(statusText(visible(store, all)[1])).toBe("open");
    store.apply([ev(1, { kind: "tunnel", method: "CONNECT", phase: "done", status: 200, bytes_down: 5000, duration_ms: 900 })]);
    const rows = visible(store, all);
    expect(rows.map((e) => e.id)).toEqual([2, 1]);
    expect(rows[1].bytes_down).toBe(5000);
    expect(statusText(rows[1])).toBe("200");
  });
});

describe("the filter", () => {
  const store = new RowStore();
  store.apply([
    ev(1),
    ev(2, { status: 502, error: "cannot reach the upstream proxy.corp:8080: connection refused" }),
    ev(3, { kind: "tunnel", method: "CONNECT", target: "github.com:443" }),
    ev(4, { status: 503 }),
  ]);

  it("narrows by text across the columns", () => {
    expect(visible(store, { ...all, text: "GITHUB" }).map((e) => e.id)).toEqual([3]);
    expect(visible(store, { ...all, text: "refused" }).map((e) => e.id)).toEqual([2]);
  });

  it("searches a row's new words once its event changes (a tunnel closing)", () => {
    const s = new RowStore();
    s.apply([ev(7, { kind: "tunnel", phase: "open", status: null, method: "CONNECT", target: "example.org:443" })]);
    expect(visible(s, { ...all, text: "timed out" })).toEqual([]);
    s.apply([ev(7, { kind: "tunnel", method: "CONNECT", target: "example.org:443", error: "the origin timed out" })]);
    expect(visible(s, { ...all, text: "timed out" }).map((e) => e.id)).toEqual([7]);
  });

  it("shows errors only: failures in words and 5xx", () => {
    expect(visible(store, { ...all, errorsOnly: true }).map((e) => e.id)).toEqual([4, 2]);
    expect(isError(ev(9, { phase: "open", error: "x" }))).toBe(false);
  });

  it("separates tunnels and requests", () => {
    expect(visible(store, { ...all, requests: false }).map((e) => e.id)).toEqual([3]);
    expect(visible(store, { ...all, tunnels: false }).map((e) => e.id)).toEqual([4, 2, 1]);
  });
});

describe("exports", () => {
  it("CSV has a header and one line per row, quoted where needed", () => {
    const csv = toCsv([ev(1, { error: 'said "no", then closed', target: "=cmd|calc" })]);
    const lines = csv.trimEnd().split("\r\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe("time,client,kind,method,target,route,auth,status,bytes_up,bytes_down,duration_ms,error");
    expect(lines[1]).toContain('"said ""no"", then closed"');
    // No formula injection into a spreadsheet.
    expect(lines[1]).toContain(",'=cmd|calc,");
    expect(lines[1]).toContain("NTLM, pooled");
  });

  it("JSON round-trips the rows", () => {
    const rows = [ev(1), ev(2, { status: 407, auth: { scheme: "Basic", handshake: true, reused: false } })];
    const back = JSON.parse(toJson(rows));
    expect(back).toHaveLength(2);
    expect(back[1].status).toBe(407);
    expect(authText(rows[1])).toBe("Basic, handshake");
  });
});

describe("words", () => {
  it("a 5xx without an error of its own says who answered", () => {
    expect(errorText(ev(1, { status: 503 }))).toBe("the upstream proxy answered 503 Service Unavailable");
    expect(errorText(ev(1, { status: 502, route: "direct", error: "cannot connect to example.test:80: refused" }))).toBe(
      "cannot connect to example.test:80: refused",
    );
    expect(errorText(ev(1))).toBe("");
  });

  it("sizes read as people say them", () => {
    expect(bytes(0)).toBe("0 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(64 * 1024 * 1024)).toBe("64 MiB");
  });
});
