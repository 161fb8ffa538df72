"""Turns the raw per-round figures into ``bench/RESULTS.md``: one table per
upstream (median and min–max over the rounds, errors summed over the
rounds), the ratios between bridges taken from the same run, the issue's
targets checked against them, and how and where the figures were taken.

The analysis written by hand (profiles, what limits a figure) lives in
``bench/ANALYSIS.md`` and is appended as it is.
"""

from __future__ import annotations

import statistics
from pathlib import Path

ANALYSIS = Path(__file__).resolve().parents[1] / "ANALYSIS.md"
ERR = "errors"

SCHEME_TITLES = {
    "ntlm": "NTLM upstream (Squid 5 + a fake NTLM acceptor, bench/squid_ntlm_helper.py)",
    "basic": "Basic upstream (Squid 5 + basic_ncsa_auth)",
    "none": "No-auth upstream (Squid 5)",
}


def _mib(kib):
    return kib / 1024


# (label, figures, key or ERR, format, transform, better)
def _rows(meta: dict) -> list[tuple]:
    n = meta["scale_params"]["parallel"]
    held = meta["scale_params"]["held"]
    hs = meta["scale_params"]["hs_conns"]
    return [
        ("Keep-alive, ok req/s", ["keepalive"], "rps", "{:,.0f}", None, "higher"),
        ("Keep-alive, p50 latency ms", ["keepalive"], "p50_ms", "{:.2f}", None, "lower"),
        ("Keep-alive, p99 latency ms", ["keepalive"], "p99_ms", "{:.2f}", None, "lower"),
        ("Keep-alive, errors", ["keepalive"], ERR, None, None, None),
        ("CPU s per 10,000 requests", ["keepalive"], "cpu_s_per_10k", "{:.2f}", None, "lower"),
        ("  Squid's CPU s per 10,000 requests", ["keepalive"], "squid_cpu_s_per_10k", "{:.2f}",
         None, "lower"),
        ("New connection per request, ok req/s", ["newconn"], "rps", "{:,.0f}", None, "higher"),
        ("New connection per request, errors", ["newconn"], ERR, None, None, None),
        ("CONNECT 64 MiB TLS, 1 tunnel, MiB/s", ["connect1"], "mib_s", "{:,.0f}", None, "higher"),
        (f"CONNECT 64 MiB TLS, {n} tunnels, MiB/s (sum)", ["connectN"], "mib_s", "{:,.0f}", None, "higher"),
        ("CONNECT, errors", ["connect1", "connectN"], ERR, None, None, None),
        (f"{held} tunnels held: opened (200)", ["tunnels"], "ok", "{:.0f}", None, "higher"),
        (f"{held} tunnels held: usable after the hold", ["tunnels"], "usable", "{:.0f}", None, "higher"),
        (f"{held} tunnels held: RSS MiB", ["tunnels"], "rss_kib", "{:.1f}", _mib, "lower"),
        (f"{held} tunnels held: threads", ["tunnels"], "threads", "{:.0f}", None, "lower"),
        (f"{held} tunnels held: errors", ["tunnels"], ERR, None, None, None),
        ("Idle RSS after start, MiB", ["idle"], "rss_kib", "{:.1f}", _mib, "lower"),
        ("Idle threads", ["idle"], "threads", "{:.0f}", None, "lower"),
        (f"Upstream 407s per 1000 requests ({hs} client connections)", ["handshakes"], "per_1000",
         "{:.0f}", None, "lower"),
        ("  of which NTLM Type 1 (handshakes begun)", ["handshakes"], "type1_per_1000",
         "{:.0f}", None, "lower"),
        ("  client reconnects (the bridge closed a connection)", ["handshakes"], "reconnects",
         "{:.0f}", None, None),
        ("Handshake client, errors", ["handshakes"], ERR, None, None, None),
    ]


def _values(cell: dict, figures: list[str], key: str, transform) -> list[float] | str | None:
    """Per-round values, the n/a reason, or None when never measured."""
    vals, na = [], None
    for fig in figures:
        entry = cell.get(fig)
        if entry is None:
            continue
        if "na" in entry:
            na = entry["na"]
            continue
        for r in entry["rounds"]:
            if key in r:
                vals.append(transform(r[key]) if transform else r[key])
    if not vals:
        return na
    return vals


def _errors(cell: dict, figures: list[str]) -> dict | str | None:
    total, seen, na = {}, False, None
    for fig in figures:
        entry = cell.get(fig)
        if entry is None:
            continue
        if "na" in entry:
            na = entry["na"]
            continue
        for r in entry["rounds"]:
            seen = True
            for k, v in r.get("errors", {}).items():
                total[k] = total.get(k, 0) + v
    return total if seen else na


def median(vals):
    return statistics.median(vals)


def _fmt_cell(vals, fmt: str) -> str:
    if vals is None:
        return "—"
    if isinstance(vals, str):
        return "n/a"
    med, lo, hi = median(vals), min(vals), max(vals)
    if len(vals) == 1 or fmt.format(lo) == fmt.format(hi):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(lo)}–{fmt.format(hi)})"


def _fmt_errors(errs) -> str:
    if errs is None:
        return "—"
    if isinstance(errs, str):
        return "n/a"
    n = sum(errs.values())
    if n == 0:
        return "0"
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(errs.items(), key=lambda kv: -kv[1]))
    return f"**{n:,}** ({kinds})"


def _table(meta, results, scheme, names) -> list[str]:
    out = ["| figure | " + " | ".join(names) + " |",
           "|---|" + "---:|" * len(names)]
    notes = {}
    for label, figures, key, fmt, transform, _ in _rows(meta):
        cells = [results.get(scheme, {}).get(n, {}) for n in names]
        if not any(any(f in c for f in figures) for c in cells):
            continue
        row = []
        for c in cells:
            if key == ERR:
                row.append(_fmt_errors(_errors(c, figures)))
            else:
                v = _values(c, figures, key, transform)
                if isinstance(v, str):
                    notes[v] = notes.get(v) or f"n/a{'*' * (len(notes) + 1)}"
                    row.append(notes[v])
                else:
                    row.append(_fmt_cell(v, fmt))
        out.append(f"| {label} | " + " | ".join(row) + " |")
    for why, mark in notes.items():
        out.append(f"\n{mark}: {why}.")
    return out


def _med(results, scheme, bridge, figures, key, transform=None):
    v = _values(results.get(scheme, {}).get(bridge, {}), figures, key, transform)
    return median(v) if isinstance(v, list) else None


def _ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    if r >= 100:
        return "≥100×"
    if 0 < r < 0.01:
        return "<0.01×"
    return f"{r:.2f}×"


def _ratios(meta, results, scheme, names) -> list[str]:
    pairs = [(a, b) for a, b in [("gangway", "direct"), ("gangway", "cntlm"), ("gangway", "px"),
                                 ("cntlm", "direct"), ("px", "direct")]
             if a in names and b in names]
    out = ["| figure (better) | " + " | ".join(f"{a} ÷ {b}" for a, b in pairs) + " |",
           "|---|" + "---:|" * len(pairs)]
    for label, figures, key, _, transform, better in _rows(meta):
        if key == ERR or better is None:
            continue
        meds = {n: _med(results, scheme, n, figures, key, transform) for n in names}
        if sum(v is not None for v in meds.values()) < 2:
            continue
        out.append(f"| {label.strip()} ({better}) | "
                   + " | ".join(_ratio(meds[a], meds[b]) for a, b in pairs) + " |")
    return out


def _targets(meta, results) -> list[str]:
    s = "ntlm"
    m = lambda b, f, k, t=None: _med(results, s, b, [f], k, t)  # noqa: E731
    g_ka, d_ka = m("gangway", "keepalive", "rps"), m("direct", "keepalive", "rps")
    peers_ka = [v for v in (m("cntlm", "keepalive", "rps"), m("px", "keepalive", "rps")) if v]
    g_err = _errors(results.get(s, {}).get("gangway", {}), ["keepalive"])
    g_err_n = sum(g_err.values()) if isinstance(g_err, dict) else None
    held = meta["scale_params"]["held"]
    rows = []

    def row(what, measured, ok):
        verdict = "—" if ok is None else ("met" if ok else "**missed**")
        rows.append(f"| {what} | {measured} | {verdict} |")

    def ratio_check(a, b, need):
        if a is None or not b:
            return "—", None
        return f"{a / b:.2f}×", a / b >= need

    text, ok = ratio_check(g_ka, d_ka, 0.7)
    row("Keep-alive req/s ≥ 0.7× direct", text, ok)
    text, ok = ratio_check(g_ka, max(peers_ka) if peers_ka else None, 5.0)
    if d_ka and peers_ka:
        # Every bridge goes through the same Squid, whose rate direct
        # approximates: direct ÷ peer is about the most this can be here.
        text += f" (for scale: direct ÷ better peer = {d_ka / max(peers_ka):.2f}×)"
    row("Keep-alive req/s ≥ 5× the better of Cntlm and Px", text, ok)
    row("Keep-alive: zero errors (gangway, all rounds)",
        "—" if g_err_n is None else f"{g_err_n}", None if g_err_n is None else g_err_n == 0)
    for fig, label in (("connect1", "1 tunnel"), ("connectN", f"{meta['scale_params']['parallel']} tunnels")):
        text, ok = ratio_check(m("gangway", fig, "mib_s"), m("direct", fig, "mib_s"), 0.9)
        row(f"CONNECT throughput, {label} ≥ 0.9× direct", text, ok)
    opened, usable = m("gangway", "tunnels", "ok"), m("gangway", "tunnels", "usable")
    row(f"{held} of {held} tunnels open and usable",
        "—" if opened is None else f"{opened:.0f} opened, {usable:.0f} usable (median)",
        None if opened is None else (opened == held and usable == held))
    rss = m("gangway", "tunnels", "rss_kib", _mib)
    row(f"RSS ≤ 16 MiB with {held} tunnels held", "—" if rss is None else f"{rss:.1f} MiB",
        None if rss is None else rss <= 16)
    idle = m("gangway", "idle", "rss_kib", _mib)
    row("Idle RSS ≤ 5 MiB", "—" if idle is None else f"{idle:.1f} MiB",
        None if idle is None else idle <= 5)
    hs = m("gangway", "handshakes", "per_1000")
    row("NTLM 407s per 1000 requests ≤ pool size (16)", "—" if hs is None else f"{hs:.0f}",
        None if hs is None else hs <= 16)
    return ["| target (gangway, NTLM upstream) | measured | |", "|---|---|---|"] + rows


def render(meta: dict, results: dict, plan: list) -> str:
    sp = meta["scale_params"]
    mach = meta["machine"]
    L = ["# Benchmark results", ""]
    if meta["scale"] != "full":
        L += ["**Smoke run (`--quick`): tiny durations and counts, one round. "
              "These figures check the harness only; they mean nothing.**", ""]
    L += [
        f"- Date: {meta['date']}; the whole run took {meta['duration_s'] / 60:.1f} min.",
        f"- Command: `{meta['command']}` ({meta['rounds']} interleaved rounds).",
        f"- Machine: {mach['nproc']} cores ({mach['cpu']}), {mach['memory_gib']} GiB, "
        f"{mach['os']}, Linux {mach['kernel']}. Load average before: {mach['load_before']}, "
        f"after: {meta['load_after']}.",
        "- **Noise:** this machine was shared with other work (compilers) while these figures were "
        "taken, and everything (clients, bridge, Squid, nginx) shares its 2 cores. Absolute numbers "
        "are noisy; the ratios, taken within the same interleaved run, are what count.",
        "",
        "Cells: median over the rounds (min–max when they differ). Error cells: the total over "
        "all rounds, by kind (wrk: connect/read/write/status/timeout; curl exit codes; "
        "tunnel and client failures by exception or status). `—`: not measured for this pair.",
        "",
    ]
    if meta.get("failures"):
        L += ["Harness failures (the cell has no figure for that round):", ""]
        L += [f"- {f}" for f in meta["failures"]] + [""]
    L += ["## Targets of issue #6", ""] + _targets(meta, results) + [""]
    for scheme, names, _ in plan:
        if scheme not in results:
            continue
        L += [f"## {SCHEME_TITLES[scheme]}", ""] + _table(meta, results, scheme, names) + [""]
        L += ["Ratios of the medians, same run:", ""] + _ratios(meta, results, scheme, names) + [""]
    L += [
        "## What each figure is",
        "",
        f"- **Keep-alive**: `wrk -t2 -c50 -d{sp['ka_s']}s` with `bench/wrk/proxy.lua`, absolute-form "
        "`GET http://127.0.0.1:PORT/1k` (1 KiB) through the bridge. ok req/s counts 200s only. "
        "CPU seconds are utime+stime from `/proc/PID/stat` (whole process tree) over that run, "
        "per 10,000 ok requests, for the bridge and for the upstream Squid.",
        f"- **New connection per request**: the same wrk run ({sp['nc_s']} s) with `Connection: close` "
        "on every request, so each request opens a new client connection.",
        f"- **CONNECT**: `curl -p` through the bridge to nginx over HTTPS, 64 MiB, verified size; "
        f"{sp['parallel']} curls at once give the summed rate (total bytes ÷ wall time).",
        f"- **Tunnels held**: `bench/benchlib/tunnels.py` opens {sp['held']} CONNECT tunnels to the "
        f"origin's plain HTTP port (100 handshakes in flight at most), holds them {sp['hold_s']:g} s, "
        "reads the bridge's RSS and thread count from `/proc` while they are held, then sends a GET "
        "through every open tunnel: usable = full 200 response.",
        "- **Idle RSS**: VmRSS summed over the bridge's process tree, "
        f"{sp['idle_s']:g} s after it started listening.",
        f"- **Upstream 407s**: {sp['hs_conns']} client connections (5 at a time), {sp['hs_reqs']} "
        "keep-alive requests each, reconnecting as curl does (after an announced close, and once "
        "when a reused connection is found dead before any response byte: Cntlm closes "
        "connections it announced as keep-alive); the NTLM Squid's access log (which records each request's "
        "Proxy-Authorization) counts the 407 answers and the NTLM Type 1 messages between start "
        "and end, scaled to 1000 requests.",
        "- **direct** is the client talking to Squid itself with a precomputed Proxy-Authorization "
        "(Basic: the header; NTLM: a Type 3 recorded from one curl handshake at start). NTLM "
        "authenticates a connection, not a request: Squid answers the first Type 3 on a new "
        "connection with a 407 and accepts it on the second try (the fake acceptor checks nothing), "
        "so direct pays one 407 per connection, counted as a wrk status error (50 per keep-alive "
        "run). A one-request connection can't be authenticated that way, hence no direct NTLM "
        "new-connection figure. For CONNECT, direct uses curl's own NTLM handshake; the tunnel "
        "client sends the recorded Type 1, then the Type 3.",
        "- Every bridge runs at its defaults, with the same user, password and domain, and "
        "reaches the origin through Squid (a route check per start fails the cell otherwise): "
        "gangway `--bypass ''` (its default bypass list holds 127.0.0.0/8), Cntlm `Auth NTLMv2` "
        "with no NoProxy, Px `--auth=NTLM|BASIC` (no `--auth` for the no-auth upstream). gangway logs its default one line per "
        "request to a file.",
        "",
        "## Versions",
        "",
    ]
    L += [f"- {k}: {v}" for k, v in meta["versions"].items()]
    L += ["", "Raw per-round figures: `bench/out/results.json` (not committed).", ""]
    if ANALYSIS.exists():
        L += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(L)
