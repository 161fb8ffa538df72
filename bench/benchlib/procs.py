"""Processes the benchmark starts, and what /proc says about them.

Every child is started in its own session (so its helpers and workers share
its process group), its pid is appended to ``<workdir>/pids`` for the shell
trap in ``bench/run`` to find if Python itself dies, and it is stopped by
that process group: SIGTERM, a bounded wait, then SIGKILL. Nothing here
waits without a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# How long a peer or bridge may take to accept connections after start.
START_TIMEOUT_S = 20.0
# How long a stopped process group may take to exit before SIGKILL.
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervisor:
    """Starts children, remembers them, and stops every one of them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pidfile = workdir / "pids"
        self.children: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str], *, env: dict | None = None,
              cwd: Path | None = None, stdin_data: bytes | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or self.workdir,
            start_new_session=True,
        )
        log.close()
        if stdin_data is not None:
            proc.stdin.write(stdin_data)
            proc.stdin.close()
        with open(self.pidfile, "a") as f:
            f.write(f"{proc.pid}\n")
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """Stops the child's whole process group, by its id."""
        if proc not in self.children:
            return
        self.children.remove(proc)
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        # Helpers (Squid's auth programs, Px workers) may outlive the leader.
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        for proc in list(reversed(self.children)):
            self.stop(proc)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_port(port: int, proc: subprocess.Popen | None = None,
              timeout: float = START_TIMEOUT_S) -> None:
    """Waits until 127.0.0.1:port accepts, or raises (process died, timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def run(argv: list[str], timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
    """A short command with a deadline; output captured as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


# --- /proc ------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its ')'.
    return raw[raw.rindex(")") + 2:].split()


def tree(pid: int) -> list[int]:
    """pid and all its descendants (Px workers, Squid helpers, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _status_value(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pids: list[int]) -> int:
    """Resident set size summed over the processes, in KiB."""
    return sum(_status_value(p, "VmRSS") for p in pids)


def threads(pids: list[int]) -> int:
    return sum(_status_value(p, "Threads") for p in pids)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    ticks = 0
    for p in pids:
        fields = _stat_fields(p)
        if fields:
            # After the name: state is field 3, so utime (14) and stime (15)
            # sit at indexes 11 and 12.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK
