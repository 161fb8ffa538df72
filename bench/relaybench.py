#!/usr/bin/env python3
"""Relay micro-benchmark for the CONNECT tunnel (bench/ANALYSIS.md, "CONNECT
throughput"): plain TCP through a bridge already listening on 127.0.0.1,
no TLS, no Squid, so only the relay is measured.

  relaybench.py origin PORT                  serve: each connection reads an
                                             8-byte size N and then either
                                             sends N bytes (N > 0) or reads
                                             |N| bytes, then closes
  relaybench.py pull PROXY ORIGIN MIB [K]    K tunnels at once (default 1),
                                             each downloads MIB MiB; prints
                                             the summed MiB/s (PROXY 0: no
                                             bridge, straight to the origin)
  relaybench.py hold PROXY ORIGIN PID [N [UP]]
                                             opens N tunnels (default 1000),
                                             sends UP bytes (default 4096)
                                             and reads 2 back through each,
                                             then prints the bridge's VmRSS
                                             (MiB) while all are held

Python stdlib only; the origin is a separate process so the client and the
origin don't share a GIL.
"""
import socket
import struct
import sys
import threading
import time

CHUNK = 1 << 20


def origin(port: int) -> None:
    srv = socket.create_server(("127.0.0.1", port), backlog=1024)
    payload = memoryview(b"\x5a" * CHUNK)

    def serve(conn: socket.socket) -> None:
        with conn:
            head = b""
            while len(head) < 8:
                part = conn.recv(8 - len(head))
                if not part:
                    return
                head += part
            (n,) = struct.unpack("!q", head)
            if n > 0:
                while n > 0:
                    k = min(n, CHUNK)
                    conn.sendall(payload[:k])
                    n -= k
            else:
                buf = bytearray(1 << 16)
                n = -n
                while n > 0:
                    k = conn.recv_into(buf)
                    if k == 0:
                        break
                    n -= k
                conn.sendall(b"ok")
                conn.recv(1)  # held until the client closes

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def tunnel(proxy: int, origin_port: int) -> socket.socket:
    if proxy == 0:  # no bridge: the client straight to the origin
        return socket.create_connection(("127.0.0.1", origin_port))
    s = socket.create_connection(("127.0.0.1", proxy))
    target = f"127.0.0.1:{origin_port}"
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        part = s.recv(1024)
        if not part:
            raise ConnectionError("bridge closed during CONNECT")
        head += part
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return s


def pull_one(proxy: int, origin_port: int, size: int, out: list) -> None:
    s = tunnel(proxy, origin_port)
    s.sendall(struct.pack("!q", size))
    buf = bytearray(CHUNK)
    got = 0
    while True:
        k = s.recv_into(buf)
        if k == 0:
            break
        got += k
    s.close()
    out.append(got)


def pull(proxy: int, origin_port: int, mib: int, k: int) -> None:
    size = mib * CHUNK
    out: list = []
    threads = [threading.Thread(target=pull_one, args=(proxy, origin_port, size, out))
               for _ in range(k)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if out != [size] * k:
        sys.exit(f"short transfer: {out}")
    print(f"{k * mib / dt:.1f}")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def hold(proxy: int, origin_port: int, pid: int, n: int = 1000, up: int = 4096) -> None:
    # Each tunnel first carries `up` bytes one way and "ok" back, as a
    # real client's TLS handshake would, so both relay directions have
    # seen traffic before they idle (up=0: "ok" only).
    socks = []
    for _ in range(n):
        s = tunnel(proxy, origin_port)
        s.sendall(struct.pack("!q", -up) + b"x" * up)
        socks.append(s)
    for s in socks:
        if s.recv(2) != b"ok":
            sys.exit("a tunnel did not carry its bytes")
    time.sleep(2)
    print(f"{rss_mib(pid):.1f}")
    for s in socks:
        s.close()


def main() -> None:
    cmd, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if cmd == "origin":
        origin(*args)
    elif cmd == "pull":
        pull(*args)
    elif cmd == "hold":
        hold(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
