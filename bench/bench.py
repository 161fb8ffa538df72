#!/usr/bin/env python3
"""The benchmark driver: brings up the peers, runs every bridge through the
same work in interleaved rounds, writes the raw figures as JSON and the
report as Markdown. Python 3 standard library only; ``bench/run`` installs
the tools and calls this.

A round visits each upstream (NTLM, Basic, none) and, for each, each bridge
in turn (gangway, cntlm, px, direct: A B C D A B C D ...). A bridge is
started fresh for each figure, measured, and stopped, so no workload's
after-effects reach the next. The NTLM upstream gets every figure; Basic
and no-auth get the throughput and footprint figures (Cntlm speaks NTLM
only, so it sits those out).

``bench/bench.py --render bench/out/results.json --report bench/RESULTS.md``
writes the report again from the last run's raw figures (after editing
``bench/ANALYSIS.md``, say) without running anything.

A workload that raises is recorded as a harness failure for that cell and
the run goes on; ``--quick`` exits 1 when any cell failed that way, so CI
notices a broken harness (bridge errors are data, not failures).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import bridges, machine, peers, procs, report, tunnels, workloads  # noqa: E402

# Seconds of wrk keep-alive and new-connection runs, curls in parallel,
# tunnels held and for how long, handshake client connections and requests
# on each, and the wait before reading idle RSS.
SCALES = {
    "full": dict(ka_s=5, nc_s=5, parallel=8, held=1000, hold_s=3.0,
                 hs_conns=50, hs_reqs=20, idle_s=1.0),
    "quick": dict(ka_s=1, nc_s=1, parallel=2, held=50, hold_s=0.5,
                  hs_conns=10, hs_reqs=5, idle_s=0.3),
}

# (upstream scheme, bridges, figures)
ALL = ["idle", "keepalive", "newconn", "connect1", "connectN", "tunnels", "handshakes"]
LIGHT = ["idle", "keepalive", "newconn", "connect1", "connectN"]
PLAN = [
    ("ntlm", ["gangway", "cntlm", "px", "direct"], ALL),
    ("basic", ["gangway", "px", "direct"], LIGHT),
    ("none", ["gangway", "px", "direct"], LIGHT),
]


def not_applicable(scheme: str, bridge: str, figure: str) -> str | None:
    """Why a figure can't be measured for this pair, or None."""
    if bridge == "direct" and figure == "idle":
        return "no bridge process"
    if bridge == "direct" and scheme == "ntlm" and figure == "newconn":
        return "a precomputed NTLM header cannot authenticate a fresh connection"
    return None


def footprint(bridge: bridges.Bridge) -> dict:
    """The bridge's RSS and thread count right now (nothing for direct)."""
    if not bridge.has_process:
        return {}
    pids = bridge.pids()
    return {"rss_kib": procs.rss_kib(pids), "threads": procs.threads(pids)}


def measure(figure: str, bridge: bridges.Bridge, target: workloads.Target,
            scale: dict) -> dict:
    """One figure for one freshly started bridge."""
    if figure == "idle":
        time.sleep(scale["idle_s"])
        return {**footprint(bridge), "errors": {}}
    if figure == "keepalive":
        return workloads.keepalive(target, scale["ka_s"])
    if figure == "newconn":
        return workloads.newconn(target, scale["nc_s"])
    if figure == "connect1":
        return workloads.connect(target, 1)
    if figure == "connectN":
        return workloads.connect(target, scale["parallel"])
    if figure == "tunnels":
        legs = [target.proxy_auth] if target.proxy_auth else []
        if isinstance(bridge, bridges.Direct) and target.squid.scheme == "ntlm":
            legs = [bridge.ntlm_type1, bridge.ntlm_type3]
        return tunnels.hold(target.port, target.origin, legs, scale["held"], scale["hold_s"],
                            lambda: footprint(bridge))
    if figure == "handshakes":
        return workloads.handshakes(target, scale["hs_conns"], scale["hs_reqs"])
    raise ValueError(figure)


def check_route(target: workloads.Target) -> None:
    """One request must reach the origin through the upstream Squid (a
    bridge that bypassed it for 127.0.0.1 would measure nothing)."""
    offset = target.squid.log_offset()
    ok, _, errors = workloads.client_connection(target, 1)
    if ok != 1:
        raise RuntimeError(f"route check failed: {errors}")
    def through_squid(lines):
        return any("/200 " in ln for ln in lines)
    if not through_squid(target.squid.wait_log(offset, through_squid)):
        raise RuntimeError("route check: the request did not go through the upstream Squid")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--render", type=Path, metavar="RAW_JSON",
                    help="only write --report again from a raw JSON of an earlier run "
                         "(e.g. after editing bench/ANALYSIS.md)")
    ap.add_argument("--gangway", type=Path, help="the gangway release binary")
    ap.add_argument("--built", action="store_true",
                    help="bench/run built --gangway from this work tree")
    ap.add_argument("--px", type=Path, help="the px executable (in its venv)")
    ap.add_argument("--workdir", type=Path, help="temp dir for configs and logs")
    ap.add_argument("--raw", type=Path, help="where to write the raw JSON")
    ap.add_argument("--report", type=Path, required=True, help="where to write the Markdown")
    ap.add_argument("--command", default="bench/run", help="the command line, for the report")
    args = ap.parse_args()
    if args.render:
        raw = json.loads(args.render.read_text())
        args.report.write_text(report.render(raw["meta"], raw["results"], PLAN))
        print(f"wrote {args.report} from {args.render}")
        return 0
    if not (args.gangway and args.px and args.workdir and args.raw):
        ap.error("--gangway, --px, --workdir and --raw are needed for a run")
    # Children run in the temp dir: every path handed to them is absolute.
    args.gangway, args.px = args.gangway.absolute(), args.px.absolute()

    scale_name = "quick" if args.quick else "full"
    scale = SCALES[scale_name]
    rounds = args.rounds or (1 if args.quick else 3)
    started = time.time()
    meta = machine.describe(args.gangway, args.px, args.built)
    meta.update(command=args.command, scale=scale_name, scale_params=scale, rounds=rounds)

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)

    os.chmod(args.workdir, 0o755)  # nginx workers and Squid run as other users
    sup = procs.Supervisor(args.workdir)
    results: dict = {}
    failures: list[str] = []
    try:
        origin = peers.Origin(sup, args.workdir)
        origin.start()
        squids = {}
        for scheme, _, _ in PLAN:
            squids[scheme] = peers.Squid(sup, args.workdir, scheme)
            squids[scheme].start()
        all_bridges = {
            "gangway": bridges.Gangway(sup, args.workdir, args.gangway),
            "cntlm": bridges.Cntlm(sup, args.workdir),
            "px": bridges.Px(sup, args.workdir, args.px),
            "direct": bridges.Direct(sup, args.workdir),
        }
        all_bridges["direct"].capture_ntlm(squids["ntlm"], origin)

        for rnd in range(1, rounds + 1):
            for scheme, names, figures in PLAN:
                for name in names:
                    bridge = all_bridges[name]
                    cell = results.setdefault(scheme, {}).setdefault(name, {})
                    print(f"[round {rnd}/{rounds}] {scheme:5} {name:8}", end="", flush=True)
                    t0 = time.monotonic()
                    for figure in figures:
                        why = not_applicable(scheme, name, figure)
                        if why:
                            cell.setdefault(figure, {"na": why})
                            continue
                        # A fresh bridge for every figure: one workload's
                        # trouble (Px blocks an upstream after 407s, Cntlm
                        # loses threads) must not spill into the next.
                        f0 = time.monotonic()
                        try:
                            bridge.start(squids[scheme])
                            target = workloads.Target(bridge.port, bridge.proxy_auth(squids[scheme]),
                                                      bridge.pids(), origin, squids[scheme])
                            if figure != "idle":
                                check_route(target)
                            value = measure(figure, bridge, target, scale)
                        except Exception as e:  # noqa: BLE001 - recorded, run goes on
                            failures.append(f"round {rnd} {scheme} {name} {figure}: {e}")
                            traceback.print_exc()
                            value = {"failed": str(e), "errors": {"harness": 1}}
                        finally:
                            bridge.stop()
                        cell.setdefault(figure, {"rounds": []})["rounds"].append(value)
                        print(f" {figure} {time.monotonic() - f0:.1f}s", end="", flush=True)
                    print(f"  ({time.monotonic() - t0:.0f}s)")
                    time.sleep(0.5)
    except KeyboardInterrupt as e:
        print(f"\nbench: interrupted ({e}); tearing down, no report written", file=sys.stderr)
        return 130
    finally:
        # Nothing may interrupt the teardown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sup.stop_all()

    meta["duration_s"] = time.time() - started
    meta["load_after"] = machine.loadavg()
    meta["failures"] = failures
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    args.report.write_text(report.render(meta, results, PLAN))
    print(f"wrote {args.report} and {args.raw} in {meta['duration_s']:.0f}s")
    for f in failures:
        print(f"harness failure: {f}", file=sys.stderr)
    if args.quick and failures:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
