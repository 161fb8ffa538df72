#!/usr/bin/env python3
"""A/B for one figure: gangway builds against each other and against direct,
interleaved (A B direct, then direct B A, ...), with the bridge's and
Squid's CPU per unit of work. For checking one change quickly, on a quiet
machine; `bench/run` remains the benchmark of record.

    python3 bench/ab.py connect1|connectN|keepalive none|basic|ntlm ROUNDS \\
        NAME=PATH [NAME=PATH ...]

Example (the findings in bench/ANALYSIS.md were taken this way):

    python3 bench/ab.py connect1 none 10 new=target/release-cli/gangway

(`cargo build --profile release-cli -p gangway-cli` builds what bench/run
measures.)

Needs what bench/run installs (nginx, squid, wrk, curl); run bench/run
--quick once first on a fresh machine.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
from benchlib import bridges, peers, procs, workloads  # noqa: E402

FIGURES = {"connect1", "connectN", "keepalive"}


SCALE = bench.SCALES["full"]


def cpu_snapshot(bridge_pids: list[int], squid_pids: list[int], nginx_pids: list[int]) -> dict:
    """CPU seconds so far of the bridge, Squid, nginx and this script's
    reaped children (the clients), and the machine's busy and total clock
    ticks (/proc/stat: user nice system idle iowait irq softirq steal;
    guest time is already inside user and nice)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return {"bridge": procs.cpu_seconds(bridge_pids), "squid": procs.cpu_seconds(squid_pids),
            "nginx": procs.cpu_seconds(nginx_pids), "clients": kids.ru_utime + kids.ru_stime,
            "busy": sum(ticks) - ticks[3] - ticks[4], "total": sum(ticks)}


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[1] not in FIGURES or sys.argv[2] not in ("none", "basic", "ntlm"):
        print(__doc__, file=sys.stderr)
        return 2
    figure, scheme, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    builds = dict(arg.split("=", 1) for arg in sys.argv[4:])
    workdir = Path(tempfile.mkdtemp(prefix="gangway-ab."))
    os.chmod(workdir, 0o755)  # nginx workers and Squid run as other users
    sup = procs.Supervisor(workdir)
    try:
        origin = peers.Origin(sup, workdir)
        origin.start()
        squid = peers.Squid(sup, workdir, scheme)
        squid.start()
        contenders = {name: bridges.Gangway(sup, workdir, Path(path).absolute())
                      for name, path in builds.items()}
        contenders["direct"] = bridges.Direct(sup, workdir)
        if scheme == "ntlm":
            contenders["direct"].capture_ntlm(squid, origin)
        figures: dict[str, list[float]] = {name: [] for name in contenders}
        order = list(contenders)
        for rnd in range(rounds):
            for name in order if rnd % 2 == 0 else reversed(order):
                bridge = contenders[name]
                bridge.start(squid)
                try:
                    target = workloads.Target(bridge.port, bridge.proxy_auth(squid), bridge.pids(),
                                              origin, squid)
                    pids = (bridge.pids(), procs.tree(squid.proc.pid), procs.tree(origin.proc.pid))
                    before = cpu_snapshot(*pids)
                    got = bench.measure(figure, bridge, target, SCALE)
                    used = {k: v - before[k] for k, v in cpu_snapshot(*pids).items()}
                    busy = 100 * used["busy"] / max(used["total"], 1)
                    if figure == "keepalive":
                        value, unit, work = got["rps"], "req/s", got["ok"] / 1000
                        per = "ms per 1000 requests"
                    else:
                        n = 1 if figure == "connect1" else SCALE["parallel"]
                        value, unit, work = got["mib_s"], "MiB/s", n * peers.LARGE_SIZE / 2**20
                        per = "ms per MiB"
                finally:
                    bridge.stop()
                figures[name].append(value)
                costs = ", ".join(f"{label} {1000 * used[key] / max(work, 1e-9):.2f}" for key, label in
                                  (("bridge", "bridge"), ("squid", "Squid"), ("nginx", "nginx"), ("clients", "clients")))
                print(f"round {rnd + 1}: {name:10} {value:9.1f} {unit}  {costs} {per}  "
                      f"machine busy {busy:.0f}%  errors {got['errors']}", flush=True)
        direct = statistics.median(figures["direct"])
        for name, values in figures.items():
            med = statistics.median(values)
            print(f"{name:10} median {med:9.1f} ({min(values):.1f}-{max(values):.1f})  "
                  f"{med / direct:.2f}x direct")
        return 0
    finally:
        sup.stop_all()


if __name__ == "__main__":
    sys.exit(main())
