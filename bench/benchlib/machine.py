"""What the figures were taken on: the machine and the version of every
program in the path of a request."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from pathlib import Path

from . import procs

REPO = Path(__file__).resolve().parents[2]


def _first_line(argv: list[str], stream: str = "stdout") -> str:
    try:
        r = procs.run(argv, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (r.stdout if stream == "stdout" else r.stderr) or r.stdout or r.stderr
    return text.strip().splitlines()[0] if text.strip() else "?"


def _dpkg(pkg: str) -> str:
    return _first_line(["dpkg-query", "-W", "-f=${Version}", pkg])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def describe(gangway: Path, px: Path, built: bool) -> dict:
    """`built`: bench/run built `gangway` from this work tree (else it was
    given with --gangway and its source is unknown here)."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates", "Cargo.lock"])
    pip = px.parent / "pip"
    px_version = "?"
    try:
        m = re.search(r"^Version: (.+)$", procs.run([str(pip), "show", "px-proxy"]).stdout, re.M)
        px_version = m.group(1) if m else "?"
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "nproc": os.cpu_count(),
            "memory_gib": round(mem_kib / 2**20, 1),
            "cpu": cpu,
            "kernel": platform.release(),
            "os": "Debian " + Path("/etc/debian_version").read_text().strip()
            if Path("/etc/debian_version").exists() else platform.platform(),
            "load_before": loadavg(),
        },
        "versions": {
            "gangway": _first_line([str(gangway), "--version"]) + (
                f" (release-cli build of commit {commit}"
                f"{' with uncommitted changes in crates/' if dirty not in ('', '?') else ''})"
                if built else f" (binary given with --gangway: {gangway})"),
            "rustc": _first_line(["rustc", "--version"]),
            "cntlm": _dpkg("cntlm"),
            "px-proxy": px_version + " (" + _first_line([str(px.parent / "python"), "--version"]) + ")",
            "squid": _dpkg("squid"),
            "nginx": _dpkg("nginx"),
            "wrk": _dpkg("wrk"),
            "curl": _first_line(["curl", "--version"]),
            "openssl": _first_line(["openssl", "version"]),
            "python (driver)": platform.python_version(),
            "python (Squid's NTLM helper, bench/squid_ntlm_helper.py)":
                _first_line(["/usr/bin/python3", "--version"]),
        },
    }
