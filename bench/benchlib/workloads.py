"""The work every bridge is given. Each function measures one figure and
returns a dict of numbers plus ``errors``: a dict of error kind -> count
(empty when there were none). Every wait has a deadline.

- ``keepalive``: wrk -t2 -c50, absolute-form GET /1k on kept-alive
  connections: ok req/s, p50/p99 latency, and the CPU seconds per 10,000
  requests of the bridge and of Squid (utime+stime from /proc, whole
  process trees).
- ``newconn``: the same with ``Connection: close``: one request per
  connection, so every request pays a client connection accept.
- ``connect``: curl through a CONNECT tunnel to the HTTPS origin, 64 MiB
  over TLS, 1 tunnel and N in parallel: MiB/s (aggregate for N).
- ``handshakes``: 50 short-lived client connections (5 at a time), 20
  keep-alive requests each (a new connection when the bridge closes
  one); the NTLM Squid's access log between the start and the end says
  how many 407 round trips (handshakes) the bridge paid upstream for
  these 1000 requests.

The 1000-tunnel hold is in ``tunnels``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import peers, procs

WRK_LUA = Path(__file__).resolve().parent.parent / "wrk" / "proxy.lua"
# wrk: a request slower than this counts as a timeout error.
WRK_TIMEOUT_S = 2
# A single curl transfer of 64 MiB may take this long before it counts as failed.
CURL_MAX_S = 120
# The handshake client: per-socket operation timeout.
CLIENT_TIMEOUT_S = 10.0

# The start of an NTLM Type 1 header as Squid's access log writes it.
NTLM_TYPE1 = "NTLM%20TlRMTVNTUAABAAAA"


@dataclass
class Target:
    """Where a client sends its proxy requests, and what it must add."""
    port: int
    proxy_auth: str | None  # set for direct only
    pids: list[int]         # the bridge's processes (empty for direct)
    origin: peers.Origin
    squid: peers.Squid


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra)
    return env


def _wrk(target: Target, seconds: float, close: bool) -> dict:
    env = _clean_env(BENCH_URL=target.origin.url(peers.SMALL_PATH),
                     BENCH_PROXY_AUTH=target.proxy_auth or "",
                     BENCH_CLOSE="1" if close else "0")
    argv = ["wrk", "-t2", "-c50", f"-d{seconds:g}s", f"--timeout={WRK_TIMEOUT_S}s",
            "-s", str(WRK_LUA), f"http://127.0.0.1:{target.port}/"]
    r = subprocess.run(argv, env=env, capture_output=True, text=True,
                       timeout=seconds + WRK_TIMEOUT_S + 30)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"wrk printed no result (exit {r.returncode}): {r.stdout} {r.stderr}")


def _wrk_result(w: dict) -> dict:
    secs = w["duration_us"] / 1e6
    errors = {k: v for k, v in w["errors"].items() if v}
    ok = w["requests"] - w["errors"]["status"]
    return {"ok": ok, "rps": ok / secs if secs else 0.0,
            "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
            "errors": errors}


def keepalive(target: Target, seconds: float) -> dict:
    squid = procs.tree(target.squid.proc.pid)
    cpu0, squid0 = procs.cpu_seconds(target.pids), procs.cpu_seconds(squid)
    res = _wrk_result(_wrk(target, seconds, close=False))
    cpu, squid_cpu = procs.cpu_seconds(target.pids) - cpu0, procs.cpu_seconds(squid) - squid0
    if res["ok"]:
        if target.pids:
            res["cpu_s_per_10k"] = cpu / res["ok"] * 10_000
        # The upstream's share: what each bridge makes Squid spend.
        res["squid_cpu_s_per_10k"] = squid_cpu / res["ok"] * 10_000
    return res


def newconn(target: Target, seconds: float) -> dict:
    res = _wrk_result(_wrk(target, seconds, close=True))
    return {"rps": res["rps"], "ok": res["ok"], "errors": res["errors"]}


def _curl_argv(target: Target) -> list[str]:
    argv = ["curl", "-s", "-o", "/dev/null", "--noproxy", "", "-p",
            "-x", f"http://127.0.0.1:{target.port}", "--cacert", str(target.origin.cert),
            "--max-time", str(CURL_MAX_S),
            "-w", "%{http_code} %{size_download}\n"]
    if target.proxy_auth and target.squid.scheme == "basic":
        argv += ["--proxy-basic", "-U", f"{peers.USER}:{peers.PASSWORD}"]
    elif target.proxy_auth and target.squid.scheme == "ntlm":
        # curl runs a real NTLM handshake: the direct client for tunnels.
        argv += ["--proxy-ntlm", "-U", f"{peers.DOMAIN}\\{peers.USER}:{peers.PASSWORD}"]
    return argv + [target.origin.url(peers.LARGE_PATH, tls=True)]


def connect(target: Target, parallel: int) -> dict:
    """`parallel` curls at once, each 64 MiB through its own tunnel."""
    argv = _curl_argv(target)
    start = time.monotonic()
    curls = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=_clean_env(), text=True) for _ in range(parallel)]
    outs = []
    for c in curls:
        try:
            out, _ = c.communicate(timeout=CURL_MAX_S + 10)
        except subprocess.TimeoutExpired:
            c.kill()
            out, _ = c.communicate()
        outs.append((c.returncode, out.split()))
    wall = time.monotonic() - start
    errors: dict[str, int] = {}
    good_bytes = 0
    for rc, fields in outs:
        if rc != 0:
            errors[f"curl_exit_{rc}"] = errors.get(f"curl_exit_{rc}", 0) + 1
        elif fields[0] != "200" or int(fields[1]) != peers.LARGE_SIZE:
            errors["short_or_status"] = errors.get("short_or_status", 0) + 1
        else:
            good_bytes += int(fields[1])
    return {"mib_s": good_bytes / wall / 2**20, "errors": errors}


# --- NTLM handshakes over short-lived client connections ---------------------

def _read_response(sock: socket.socket, buf: bytes) -> tuple[int, bool, bytes]:
    """Reads one response with a Content-Length body; returns (status,
    whether the server announced it closes the connection, bytes left)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split()[0], int(lines[0].split()[1])
    length, tokens = 0, []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name in ("connection", "proxy-connection"):
            tokens += [t.strip().lower() for t in value.split(",")]
        elif name == "transfer-encoding":
            raise ValueError("chunked response: the client reads Content-Length bodies only")
    closing = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        buf += chunk
    return status, closing, buf[length:]


class _DeadConnection(Exception):
    """A reused connection closed before any byte of the response."""


def _exchange(sock: socket.socket, req: bytes, buf: bytes, reused: bool):
    try:
        sock.sendall(req)
        if not buf:
            first = sock.recv(65536)
            if not first:
                raise ConnectionError("closed before a response head")
            buf = first
    except OSError as e:
        if reused:
            raise _DeadConnection() from e
        raise
    except ConnectionError:
        if reused:
            raise _DeadConnection()
        raise
    return _read_response(sock, buf)


def client_connection(target: Target, requests: int) -> tuple[int, int, dict]:
    """One client connection doing `requests` keep-alive GETs, as curl
    does them: when the proxy announces a close, the next request goes on
    a new connection; when a reused connection turns out dead before any
    response byte, the request is retried once on a new one. Both count as
    reconnects, not errors. Returns (200s, reconnects, errors)."""
    url = target.origin.url(peers.SMALL_PATH)
    host = url.split("/")[2]
    auth = f"Proxy-Authorization: {target.proxy_auth}\r\n" if target.proxy_auth else ""
    req = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
    ok, reconnects, errors = 0, 0, {}
    sock, buf, served = None, b"", 0

    def connect():
        return socket.create_connection(("127.0.0.1", target.port), timeout=CLIENT_TIMEOUT_S)
    try:
        for _ in range(requests):
            if sock is None:
                sock, buf, served = connect(), b"", 0
            try:
                status, closing, buf = _exchange(sock, req, buf, served > 0)
            except _DeadConnection:
                sock.close()
                sock, buf, served = connect(), b"", 0
                reconnects += 1
                status, closing, buf = _exchange(sock, req, buf, False)
            served += 1
            if status == 407 and target.proxy_auth and not closing:
                # Direct NTLM: the precomputed Type 3 opens the handshake
                # on a new connection and passes on the second try.
                status, closing, buf = _exchange(sock, req, buf, False)
            if status == 200:
                ok += 1
            else:
                errors[f"status_{status}"] = errors.get(f"status_{status}", 0) + 1
            if closing:
                sock.close()
                sock, reconnects = None, reconnects + 1
    except (OSError, ValueError, IndexError) as e:
        errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
    finally:
        if sock is not None:
            sock.close()
    return ok, reconnects, errors


def handshakes(target: Target, connections: int = 50, per_connection: int = 20,
               concurrency: int = 5) -> dict:
    offset = target.squid.log_offset()
    total_ok, reconnects, errors = 0, 0, {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for ok, again, errs in pool.map(lambda _: client_connection(target, per_connection),
                                        range(connections)):
            total_ok += ok
            reconnects += again
            for k, v in errs.items():
                errors[k] = errors.get(k, 0) + v
    # Squid logs each request as it ends: wait for one line per request.
    lines = target.squid.wait_log(offset, lambda got: len(got) >= total_ok)
    denied = sum(1 for ln in lines if "/407 " in ln)
    type1 = sum(1 for ln in lines if NTLM_TYPE1 in ln)
    requests = connections * per_connection
    return {"requests": requests, "ok": total_ok,
            "per_1000": denied / requests * 1000,
            "type1_per_1000": type1 / requests * 1000,
            "upstream_lines": len(lines), "reconnects": reconnects, "errors": errors}
