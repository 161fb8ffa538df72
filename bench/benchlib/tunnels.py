"""Many CONNECT tunnels held open at once.

Opens N tunnels through the target to the origin's plain HTTP port (at most
OPEN_AT_ONCE handshakes in flight, like a browser opening many), counts the
200s, holds them all for a while and samples the bridge's RSS and thread
count while they are held, then sends one HTTP request through every tunnel
still open and counts the complete 200 responses ("usable"). Every
operation has a timeout and the whole run a deadline.

Direct to the NTLM Squid: the client sends the recorded Type 1, reads the
407, then sends the recorded Type 3 on the same connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from . import peers

OPEN_AT_ONCE = 100
STEP_TIMEOUT_S = 10.0
WHOLE_RUN_S = 120.0


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT_S)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, length


class _Tunnel:
    def __init__(self):
        self.reader = None
        self.writer = None
        self.error: str | None = None


async def _open(port: int, authority: str, legs: list[str], gate: asyncio.Semaphore) -> _Tunnel:
    t = _Tunnel()
    async with gate:
        try:
            t.reader, t.writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), STEP_TIMEOUT_S)
            for i, auth in enumerate(legs or [""]):
                extra = f"Proxy-Authorization: {auth}\r\n" if auth else ""
                t.writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode())
                await t.writer.drain()
                status, length = await _read_head(t.reader)
                if status == 407 and i + 1 < len(legs):
                    await asyncio.wait_for(t.reader.readexactly(length), STEP_TIMEOUT_S)
                    continue
                if status != 200:
                    t.error = f"status_{status}"
                break
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, IndexError) as e:
            t.error = type(e).__name__
    return t


async def _use(t: _Tunnel, authority: str) -> str | None:
    """One GET through the tunnel; None when a full 200 came back."""
    try:
        t.writer.write(f"GET {peers.SMALL_PATH} HTTP/1.1\r\nHost: {authority}\r\n"
                       "Connection: close\r\n\r\n".encode())
        await t.writer.drain()
        status, length = await _read_head(t.reader)
        body = await asyncio.wait_for(t.reader.readexactly(length), STEP_TIMEOUT_S)
        if status != 200 or len(body) != peers.SMALL_SIZE:
            return f"use_status_{status}"
        return None
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError, ValueError, IndexError) as e:
        return f"use_{type(e).__name__}"


async def _run(port: int, authority: str, legs: list[str], count: int, hold_s: float,
               sample: Callable[[], dict]) -> dict:
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    start = time.monotonic()
    tunnels = await asyncio.gather(*(_open(port, authority, legs, gate) for _ in range(count)))
    open_s = time.monotonic() - start
    errors: dict[str, int] = {}
    for t in tunnels:
        if t.error:
            errors[t.error] = errors.get(t.error, 0) + 1
    opened = [t for t in tunnels if t.error is None]
    await asyncio.sleep(hold_s)
    held = sample()
    results = await asyncio.gather(*(_use(t, authority) for t in opened))
    for err in results:
        if err:
            errors[err] = errors.get(err, 0) + 1
    for t in tunnels:
        if t.writer is not None:
            t.writer.close()
    return {"tried": count, "ok": len(opened), "usable": sum(1 for r in results if r is None),
            "open_s": open_s, **held, "errors": errors}


def hold(port: int, origin: peers.Origin, legs: list[str], count: int, hold_s: float,
         sample: Callable[[], dict]) -> dict:
    """Runs the whole test; `legs` are the Proxy-Authorization values to
    send in turn (empty: none), `sample()` reads the bridge's RSS/threads."""
    authority = f"127.0.0.1:{origin.http_port}"

    async def bounded():
        return await asyncio.wait_for(_run(port, authority, legs, count, hold_s, sample),
                                      WHOLE_RUN_S)
    try:
        return asyncio.run(bounded())
    except asyncio.TimeoutError:
        return {"tried": count, "ok": 0, "usable": 0, "errors": {"whole_run_timeout": 1}}
