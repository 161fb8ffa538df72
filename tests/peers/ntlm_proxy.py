#!/usr/bin/env python3
"""An NTLM-authenticating HTTP proxy: an independent upstream for Gangway's tests.

Its NTLM acceptor is pyspnego's pure-Python one, not Gangway's code, so a 200
through this proxy shows that Gangway's NTLM works with another implementation.
It runs with LM_COMPAT_LEVEL=5 unless the environment sets another level, so
it accepts NTLMv2 only: LM, NTLMv1 and NTLM2-session responses get a 407.

Usage
-----
    ntlm_proxy.py --listen 127.0.0.1:PORT --users FILE --stats FILE [--log FILE]
    ntlm_proxy.py hash-user DOMAIN USER < password-file

`--listen` must be a loopback address; PORT 0 picks a free port. Once the
proxy is listening it prints `READY <port>` on stdout, and nothing else.
SIGTERM or SIGINT stops it.

`hash-user` reads the password from stdin as UTF-8, drops one trailing newline
(`\\n` or `\\r\\n`) and prints the user-file line for it, so the password never
appears on a command line. Pass "" as DOMAIN for a user without a domain.

User file
---------
pyspnego's smbpasswd-style lines, one user per line (the proxy points
pyspnego's NTLM_USER_FILE at this file):

    DOMAIN\\USER:0:AAD3B435B51404EEAAD3B435B51404EE:NT_HASH:[U]:LCT-00000000

- DOMAIN\\USER: the domain and user the client sends, matched without regard
  to case. Without `DOMAIN\\`, the line matches only a client that sends an
  empty domain. Neither may contain `:`; the user may not contain `\\`.
- The third field is an LM hash; it is never used at LM_COMPAT_LEVEL=5, and
  AAD3B435B51404EEAAD3B435B51404EE is the conventional "no LM hash".
- NT_HASH: 32 hex digits, MD4 of the password's UTF-16LE encoding. Because
  only the hash is stored, passwords may contain colons or any Unicode.
- The last two fields are ignored but must be present (six fields in all).
The file is UTF-8; blank lines are allowed; comments are not.

Behaviour, per client TCP connection
------------------------------------
- `Proxy-Authorization: NTLM <Type 1>`: 407 with `Proxy-Authenticate: NTLM
  <Type 2>` and `Connection: keep-alive` (as modern Squid: no
  Proxy-Connection header); the request body is drained. A Type 1 on an
  authenticated connection starts a new handshake.
- `NTLM <Type 3>` on the same connection, right after that 407: if pyspnego
  accepts it, the connection is authenticated for its lifetime and this very
  request is served. A rejected Type 3, or one on a connection with no pending
  Type 2, gets 407 `Proxy-Authenticate: NTLM` and the connection is closed.
- Any other request on an unauthenticated connection: 407
  `Proxy-Authenticate: NTLM`, keep-alive, body drained.
- Serving: absolute-form `http://` requests (any method; Content-Length or
  chunked bodies) go to the origin on a fresh connection each, and the
  response is streamed back with a correct length or chunking; `CONNECT
  host:port` gets 200 and then a byte relay both ways. Origins must be
  loopback (IP literals or `localhost`; no other name is resolved): others
  get 403. Client connections are HTTP/1.1 keep-alive.

Stats
-----
After every event the stats file is rewritten atomically (write, then
rename) as one JSON object:

    {"connections": n, "handshakes_ok": n, "handshakes_failed": n,
     "type1_seen": n, "requests": n, "max_handshakes_on_one_connection": n,
     "type3_without_challenge": n}

- connections: client TCP connections accepted.
- type1_seen: Type 1 messages received (each starts a handshake).
- handshakes_ok / handshakes_failed: Type 3s accepted / refused (refused
  includes undecodable NTLM tokens and Type 3s with no pending Type 2).
- requests: requests handled on an authenticated connection (forwarded,
  tunnelled, or refused by the proxy itself, e.g. a non-loopback origin).
- max_handshakes_on_one_connection: the most Type 1s seen on one connection.
- type3_without_challenge: Type 3s that arrived with no pending Type 2 on
  their connection (a client that moved the handshake to another connection).

With `--log FILE`, one line per event is appended there. Neither the log nor
stdout ever carries a password, a hash or an NTLM token.

Robustness: request heads are limited to 64 KiB and 100 header fields, chunk
size lines and trailers are bounded, bodies drained for a 407 are limited to
1 MiB (larger ones close the connection), reads time out, and any protocol
error or exception closes that one connection only.
"""

import argparse
import asyncio
import base64
import binascii
import ipaddress
import itertools
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.parse

# Limits and timeouts, in one place.
MAX_LINE = 16 * 1024  # one request/status/header/chunk-size line
MAX_HEAD = 64 * 1024  # a whole request or response head
MAX_HEADERS = 100
MAX_DRAIN = 1024 * 1024  # body read and dropped before a 407
MAX_TOKEN = 16 * 1024  # base64 NTLM token
IO_CHUNK = 64 * 1024
IDLE_TIMEOUT = 120.0  # waiting for the next request on a connection
IO_TIMEOUT = 60.0  # any single read or write in a request
CONNECT_TIMEOUT = 10.0  # opening the origin connection
TUNNEL_HALF_CLOSE_TIMEOUT = 300.0  # the other direction after one side ends

NO_LM_HASH = "AAD3B435B51404EEAAD3B435B51404EE"
NTLMSSP = b"NTLMSSP\x00"
TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# RFC 9110 §7.6.1: never forwarded; plus whatever Connection names.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
STATS_KEYS = (
    "connections",
    "handshakes_ok",
    "handshakes_failed",
    "type1_seen",
    "requests",
    "max_handshakes_on_one_connection",
    "type3_without_challenge",
    "closed_after_challenge",
)


class HttpError(Exception):
    """A request we answer with `status` and then close the connection."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


# --- user file ---------------------------------------------------------------


def nt_hash(password):
    """MD4 of the UTF-16LE password, with pyspnego's own MD4."""
    data = password.encode("utf-16-le", errors="surrogatepass")
    try:
        from spnego._ntlm_raw.md4 import md4
    except ImportError:  # a pyspnego without its private MD4
        import hashlib

        return hashlib.new("md4", data).digest()
    return md4(data)


def hash_user(domain, user):
    raw = sys.stdin.buffer.read()
    try:
        password = raw.decode("utf-8")
    except UnicodeDecodeError:
        sys.exit("hash-user: the password on stdin is not UTF-8")
    password = password.removesuffix("\n").removesuffix("\r")
    if not user or any(c in user for c in ":\\\r\n"):
        sys.exit("hash-user: USER must be non-empty without ':', '\\' or newlines")
    if any(c in domain for c in ":\\\r\n"):
        sys.exit("hash-user: DOMAIN may not contain ':', '\\' or newlines")
    who = f"{domain}\\{user}" if domain else user
    print(f"{who}:0:{NO_LM_HASH}:{nt_hash(password).hex().upper()}:[U]:LCT-00000000")


def check_user_file(path):
    """Exits with a message (never the line's content) if a line is wrong."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"--users {path}: {e}")
    users = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(":")
        if len(fields) != 6 or not fields[0]:
            sys.exit(f"--users {path}:{number}: want DOMAIN\\USER:UID:LM:NT:FLAGS:LCT")
        for field in (fields[2], fields[3]):
            if not re.fullmatch(r"[0-9A-Fa-f]{32}", field):
                sys.exit(f"--users {path}:{number}: LM and NT hashes must be 32 hex digits")
        users += 1
    if not users:
        sys.exit(f"--users {path}: no users")
    return users


# --- stats and log -----------------------------------------------------------


class Events:
    """Counters written to the stats file, and the log, after every event."""

    def __init__(self, stats_path, log_path):
        self.stats_path = stats_path
        self.counts = dict.fromkeys(STATS_KEYS, 0)
        self.log = open(log_path, "a", encoding="utf-8", buffering=1) if log_path else None
        # Type 2s still to be sent with Connection: close (--close-after-challenge).
        self.close_after_challenge = 0
        self.write_stats()

    def event(self, conn_id, name, *bumps, **fields):
        for bump in bumps:
            self.counts[bump] += 1
        if self.log:
            details = " ".join(f"{k}={v!r}" for k, v in fields.items())
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            self.log.write(f"{stamp} conn={conn_id} {name} {details}".rstrip() + "\n")
        self.write_stats()

    def handshakes_on_connection(self, n):
        key = "max_handshakes_on_one_connection"
        self.counts[key] = max(self.counts[key], n)

    def write_stats(self):
        tmp = f"{self.stats_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.counts, f)
            f.write("\n")
        os.replace(tmp, self.stats_path)


# --- HTTP/1.1 plumbing -------------------------------------------------------


class Head:
    """A request or response head: its first line's parts and its fields."""

    def __init__(self, start, fields):
        self.start = start
        self.fields = fields  # [(name, value)], in order, case kept

    def get_all(self, name):
        name = name.lower()
        return [v for n, v in self.fields if n.lower() == name]

    def get(self, name):
        values = self.get_all(name)
        return values[0] if values else None

    def tokens(self, name):
        return {t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()}


async def timed(awaitable, timeout=IO_TIMEOUT):
    return await asyncio.wait_for(awaitable, timeout)


async def read_line(reader, timeout=IO_TIMEOUT):
    line = await timed(reader.readline(), timeout)
    if len(line) > MAX_LINE:
        raise HttpError(400, "line too long")
    return line


async def read_head(reader, first_line_optional=True, first_timeout=IO_TIMEOUT):
    """Reads a head up to its blank line. None on a clean EOF before it."""
    line = await read_line(reader, first_timeout)
    while line in (b"\r\n", b"\n"):  # RFC 9112 §2.2: ignore leading CRLFs
        line = await read_line(reader, first_timeout)
    if not line:
        if first_line_optional:
            return None
        raise HttpError(502, "origin closed the connection before answering")
    total = len(line)
    start = line.rstrip(b"\r\n").decode("latin-1")
    fields = []
    while True:
        line = await read_line(reader)
        total += len(line)
        if not line.endswith(b"\n"):
            raise HttpError(400, "head ends without a blank line")
        if total > MAX_HEAD or len(fields) > MAX_HEADERS:
            raise HttpError(431, "head too large")
        line = line.rstrip(b"\r\n").decode("latin-1")
        if not line:
            return Head(start, fields)
        if line[0] in " \t":
            raise HttpError(400, "obsolete line folding")
        name, colon, value = line.partition(":")
        if not colon or not TOKEN_RE.match(name):
            raise HttpError(400, "bad header field")
        fields.append((name, value.strip(" \t")))


def parse_request_line(head):
    parts = head.start.split(" ")
    if len(parts) != 3 or not TOKEN_RE.match(parts[0]) or not parts[1]:
        raise HttpError(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "HTTP version not supported")
    return method, target, version


def body_framing(head):
    """('chunked', None), ('length', n) or ('none', 0) for a request body."""
    te = head.get_all("Transfer-Encoding")
    cl = head.get_all("Content-Length")
    if te:
        if cl:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
        if codings != ["chunked"]:
            raise HttpError(501, "unsupported transfer coding")
        return "chunked", None
    if cl:
        values = {v.strip() for v in cl}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise HttpError(400, "bad Content-Length")
        return "length", int(next(iter(values)))
    return "none", 0


async def read_exact_chunks(reader, n):
    """Yields exactly n bytes from reader, in pieces."""
    while n > 0:
        data = await timed(reader.read(min(n, IO_CHUNK)))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        yield data


async def read_chunked(reader):
    """Yields the data of a chunked body (RFC 9112 §7.1); trailers dropped."""
    while True:
        line = await read_line(reader)
        if not line.endswith(b"\n"):
            raise HttpError(400, "truncated chunk size")
        size = line.split(b";", 1)[0].strip()
        if not size or len(size) > 15 or not re.fullmatch(rb"[0-9A-Fa-f]+", size):
            raise HttpError(400, "bad chunk size")
        size = int(size, 16)
        if size == 0:
            total = 0
            for _ in range(MAX_HEADERS + 1):
                line = await read_line(reader)
                total += len(line)
                if not line.endswith(b"\n") or total > MAX_HEAD:
                    raise HttpError(400, "bad trailers")
                if line in (b"\r\n", b"\n"):
                    return
            raise HttpError(400, "too many trailers")
        async for data in read_exact_chunks(reader, size):
            yield data
        if await read_line(reader) not in (b"\r\n", b"\n"):
            raise HttpError(400, "chunk data not followed by CRLF")


def body_reader(reader, framing):
    kind, n = framing
    if kind == "chunked":
        return read_chunked(reader)
    return read_exact_chunks(reader, n)


async def drain_body(head, reader):
    """Reads and drops a request body. False if the connection can't be
    reused: the body is too large, or the client waits for 100-continue."""
    kind, n = body_framing(head)
    if kind == "none" or (kind == "length" and n == 0):
        return True
    if "100-continue" in head.tokens("Expect"):
        return False
    if kind == "length" and n > MAX_DRAIN:
        return False
    total = 0
    async for data in body_reader(reader, (kind, n)):
        total += len(data)
        if total > MAX_DRAIN:
            return False
    return True


async def send(writer, data):
    writer.write(data)
    await timed(writer.drain())


def encode_head(start, fields):
    lines = [start] + [f"{n}: {v}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_simple(writer, status, reason, keep_alive, extra=(), body=None, head_only=False):
    """A short response. `head_only` for an answer to HEAD: the headers
    describe the body, but no body follows (RFC 9110 section 9.3.2)."""
    body = (body if body is not None else f"{status} {reason}\n").encode("utf-8")
    fields = list(extra) + [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive" if keep_alive else "close"),
    ]
    await send(writer, encode_head(f"HTTP/1.1 {status} {reason}", fields) + (b"" if head_only else body))


def forwardable(fields):
    """Fields minus hop-by-hop ones and those Connection names."""
    named = {
        t.strip().lower() for n, v in fields if n.lower() == "connection" for t in v.split(",")
    }
    return [(n, v) for n, v in fields if n.lower() not in HOP_BY_HOP and n.lower() not in named]


def client_keeps_alive(head, version):
    tokens = head.tokens("Connection") | head.tokens("Proxy-Connection")
    if "close" in tokens:
        return False
    return version == "HTTP/1.1" or "keep-alive" in tokens


async def loopback_address(host, port):
    """The address to connect to if host is loopback, else None. Only IP
    literals and `localhost` are considered: no other name is looked up."""
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        if host.lower() != "localhost":
            return None
    try:
        infos = await timed(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
            CONNECT_TIMEOUT,
        )
    except (OSError, asyncio.TimeoutError):
        return None
    addresses = [info[4][0] for info in infos]
    if addresses and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return addresses[0]
    return None


# --- NTLM --------------------------------------------------------------------


def new_acceptor():
    import spnego

    return spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)


def ntlm_message(head):
    """(type, bytes) of the NTLM token in Proxy-Authorization, 'bad' for a
    token that is not an NTLM message, or None for no NTLM token."""
    for value in head.get_all("Proxy-Authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "ntlm":
            continue
        token = token.strip()
        if not token:
            return None
        if len(token) > MAX_TOKEN:
            return "bad"
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return "bad"
        if len(raw) < 12 or raw[:8] != NTLMSSP:
            return "bad"
        return int.from_bytes(raw[8:12], "little"), raw
    return None


class Connection:
    ids = itertools.count(1)

    def __init__(self, events, reader, writer):
        self.id = next(Connection.ids)
        self.events = events
        self.reader = reader
        self.writer = writer
        self.pending = None  # pyspnego context between Type 2 and Type 3
        self.response_started = False  # past this, an error can only close
        self.authenticated = False
        self.head_only = False  # the request being answered is a HEAD
        self.handshakes = 0

    def event(self, name, *bumps, **fields):
        self.events.event(self.id, name, *bumps, **fields)

    async def run(self):
        peer = self.writer.get_extra_info("peername")
        self.event("open", "connections", peer=str(peer))
        try:
            while True:
                self.response_started = False
                try:
                    head = await read_head(self.reader, first_timeout=IDLE_TIMEOUT)
                except HttpError as e:
                    await send_simple(self.writer, e.status, str(e), False)
                    self.event("bad-request", reason=str(e))
                    return
                if head is None:
                    return
                try:
                    keep = await self.handle(head)
                except HttpError as e:
                    self.event("error", status=e.status, reason=str(e))
                    if not self.response_started:
                        await send_simple(self.writer, e.status, str(e), False)
                    return
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            self.event("closed", reason=type(e).__name__)
        except Exception as e:  # noqa: BLE001 - one connection must not stop the proxy
            self.event("crash", reason=f"{type(e).__name__}: {e}")
        finally:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 5)
            except Exception:  # noqa: BLE001
                pass
            self.event("close")

    async def handle(self, head):
        method, target, version = parse_request_line(head)
        self.head_only = method.upper() == "HEAD"
        keep = client_keeps_alive(head, version)
        message = ntlm_message(head)

        if message == "bad":
            self.pending = None
            self.event("ntlm-undecodable", "handshakes_failed")
            return await self.ask_for_ntlm(keep=False)

        if message is not None and message[0] == 1:
            # A Type 1 starts a new handshake, even on an authenticated connection.
            self.authenticated = False
            self.pending = None
            self.handshakes += 1
            self.events.handshakes_on_connection(self.handshakes)
            self.event("type1", "type1_seen", handshake=self.handshakes)
            try:
                context = new_acceptor()
                challenge = context.step(message[1])
            except Exception as e:  # noqa: BLE001 - garbage from the client
                self.event("type1-rejected", "handshakes_failed", reason=f"{type(e).__name__}: {e}")
                return await self.ask_for_ntlm(keep=False)
            self.pending = context
            keep = keep and await drain_body(head, self.reader)
            if self.events.close_after_challenge > 0:
                # An upstream that will not keep a connection open across
                # the handshake: the Type 2 goes out with Connection: close.
                self.events.close_after_challenge -= 1
                self.pending = None
                self.event("type2-then-close", "closed_after_challenge")
                keep = False
            return await self.ask_for_ntlm(keep, challenge)

        if message is not None and message[0] == 3:
            context, self.pending = self.pending, None
            if context is None:
                self.event(
                    "type3-without-challenge", "handshakes_failed", "type3_without_challenge"
                )
                return await self.ask_for_ntlm(keep=False)
            try:
                context.step(message[1])
                ok, reason = context.complete, "incomplete"
            except Exception as e:  # noqa: BLE001 - pyspnego raises on any refusal
                ok, reason = False, f"{type(e).__name__}: {e}"
            if not ok:
                self.event("auth-failed", "handshakes_failed", reason=reason)
                return await self.ask_for_ntlm(keep=False)
            self.authenticated = True
            self.event(
                "auth-ok", "handshakes_ok", user=str(getattr(context, "client_principal", "?"))
            )
            return await self.serve(head, method, target, version, keep)

        if message is not None:
            self.pending = None
            self.event("ntlm-unexpected-type", "handshakes_failed", type=message[0])
            return await self.ask_for_ntlm(keep=False)

        if self.authenticated:
            return await self.serve(head, method, target, version, keep)

        self.pending = None
        self.event("unauthenticated", method=method)
        keep = keep and await drain_body(head, self.reader)
        return await self.ask_for_ntlm(keep)

    async def ask_for_ntlm(self, keep, challenge=None):
        """A 407 offering NTLM, with the Type 2 when there is one."""
        offer = f"NTLM {base64.b64encode(challenge).decode('ascii')}" if challenge else "NTLM"
        await send_simple(
            self.writer,
            407,
            "Proxy Authentication Required",
            keep,
            [("Proxy-Authenticate", offer)],
            head_only=self.head_only,
        )
        return keep

    async def serve(self, head, method, target, version, keep):
        self.event("request", "requests", method=method, target=target)
        if method.upper() == "CONNECT":
            await self.tunnel(target)
            return False
        return await self.forward(head, method, target, version, keep)

    async def refuse(self, head, status, reason, keep):
        keep = keep and await drain_body(head, self.reader)
        self.event("refused", status=status, reason=reason)
        await send_simple(self.writer, status, reason, keep, head_only=self.head_only)
        return keep

    async def tunnel(self, target):
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            await send_simple(self.writer, 400, "Bad CONNECT target", False)
            return
        address = await loopback_address(host, int(port))
        if address is None:
            await send_simple(self.writer, 403, "Only loopback origins", False)
            return
        try:
            origin_reader, origin_writer = await timed(
                asyncio.open_connection(address, int(port)), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as e:
            self.event("origin-unreachable", target=target, reason=type(e).__name__)
            await send_simple(self.writer, 502, "Bad Gateway", False)
            return
        self.response_started = True
        await send(self.writer, b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.event("tunnel-open", target=target)
        try:
            await relay(self.reader, self.writer, origin_reader, origin_writer)
        finally:
            origin_writer.close()
        self.event("tunnel-closed", target=target)

    async def forward(self, head, method, target, version, keep):
        url = urllib.parse.urlsplit(target)
        if url.scheme.lower() != "http" or not url.hostname:
            return await self.refuse(head, 400, "Absolute-form http:// URL required", keep)
        try:
            port = url.port or 80
        except ValueError:
            return await self.refuse(head, 400, "Bad port", keep)
        address = await loopback_address(url.hostname, port)
        if address is None:
            return await self.refuse(head, 403, "Only loopback origins", keep)
        framing = body_framing(head)
        try:
            origin_reader, origin_writer = await timed(
                asyncio.open_connection(address, port, limit=MAX_LINE), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as e:
            self.event("origin-unreachable", target=target, reason=type(e).__name__)
            return await self.refuse(head, 502, "Bad Gateway", keep)
        try:
            return await self.exchange(
                head, method, url, version, keep, framing, origin_reader, origin_writer
            )
        finally:
            origin_writer.close()

    async def exchange(
        self, head, method, url, version, keep, framing, origin_reader, origin_writer
    ):
        path = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
        host = url.netloc.rpartition("@")[2]
        fields = [
            (n, v)
            for n, v in forwardable(head.fields)
            if n.lower() not in ("host", "content-length", "expect")
        ]
        fields.insert(0, ("Host", host))
        kind, length = framing
        if kind == "chunked":
            fields.append(("Transfer-Encoding", "chunked"))
        elif kind == "length":
            fields.append(("Content-Length", str(length)))
        fields.append(("Connection", "close"))
        await send(origin_writer, encode_head(f"{method} {path} HTTP/1.1", fields))

        if kind != "none" and "100-continue" in head.tokens("Expect"):
            await send(self.writer, b"HTTP/1.1 100 Continue\r\n\r\n")
        if kind != "none":
            async for data in body_reader(self.reader, framing):
                if kind == "chunked":
                    data = b"%x\r\n%s\r\n" % (len(data), data)
                await send(origin_writer, data)
            if kind == "chunked":
                await send(origin_writer, b"0\r\n\r\n")

        # The origin's answer, past any 1xx interim responses.
        while True:
            response = await read_head(origin_reader, first_line_optional=False)
            status_parts = response.start.split(" ", 2)
            if (
                len(status_parts) < 2
                or not status_parts[0].startswith("HTTP/1.")
                or not status_parts[1].isdigit()
            ):
                raise HttpError(502, "bad status line from origin")
            status = int(status_parts[1])
            reason = status_parts[2] if len(status_parts) > 2 else ""
            if status == 101:
                raise HttpError(502, "origin switched protocols")
            if status >= 200:
                break

        out = [(n, v) for n, v in forwardable(response.fields)]
        if method.upper() == "HEAD" or status in (204, 304):
            body = None  # no body; Content-Length, if any, is kept as is
        elif response.get_all("Transfer-Encoding"):
            codings = response.tokens("Transfer-Encoding")
            if "chunked" not in codings:
                body = ("eof", None)
            else:
                body = ("chunked", None)
            out = [(n, v) for n, v in out if n.lower() != "content-length"]
        elif response.get_all("Content-Length"):
            values = {v.strip() for v in response.get_all("Content-Length")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise HttpError(502, "bad Content-Length from origin")
            body = ("length", int(next(iter(values))))
        else:
            body = ("eof", None)

        # How the client gets the body: its length, chunked, or up to close.
        chunk_out = body is not None and body[0] != "length" and version == "HTTP/1.1"
        if body is not None and body[0] != "length" and not chunk_out:
            keep = False
        if chunk_out:
            out.append(("Transfer-Encoding", "chunked"))
        out.append(("Connection", "keep-alive" if keep else "close"))
        self.response_started = True
        await send(self.writer, encode_head(f"HTTP/1.1 {status} {reason}".rstrip(), out))

        if body is not None:
            if body[0] == "chunked":
                source = read_chunked(origin_reader)
            elif body[0] == "length":
                source = read_exact_chunks(origin_reader, body[1])
            else:
                source = read_until_eof(origin_reader)
            async for data in source:
                if chunk_out:
                    data = b"%x\r\n%s\r\n" % (len(data), data)
                await send(self.writer, data)
            if chunk_out:
                await send(self.writer, b"0\r\n\r\n")
        self.event("response", status=status)
        return keep


async def read_until_eof(reader):
    while True:
        data = await timed(reader.read(IO_CHUNK))
        if not data:
            return
        yield data


async def relay(client_reader, client_writer, origin_reader, origin_writer):
    """Copies bytes both ways until both directions end."""

    async def pump(src, dst):
        try:
            while True:
                data = await src.read(IO_CHUNK)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        finally:
            if dst.can_write_eof():
                try:
                    dst.write_eof()
                except OSError:
                    pass

    tasks = {
        asyncio.ensure_future(pump(client_reader, origin_writer)),
        asyncio.ensure_future(pump(origin_reader, client_writer)),
    }
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    if pending and not any(t.exception() for t in done):
        done2, pending = await asyncio.wait(pending, timeout=TUNNEL_HALF_CLOSE_TIMEOUT)
        done |= done2
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- main --------------------------------------------------------------------


def parse_listen(value):
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError
        port = int(port)
        if not 0 <= port < 65536:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError("want LOOPBACK_IP:PORT, e.g. 127.0.0.1:0") from None
    return host, port


async def serve(args):
    events = Events(args.stats, args.log)
    events.close_after_challenge = args.close_after_challenge
    live = {}  # handler task -> its Connection, for shutdown

    async def on_client(reader, writer):
        connection = Connection(events, reader, writer)
        live[asyncio.current_task()] = connection
        try:
            await connection.run()
        finally:
            live.pop(asyncio.current_task(), None)

    host, port = args.listen
    server = await asyncio.start_server(on_client, host, port, limit=MAX_LINE)
    port = server.sockets[0].getsockname()[1]
    events.event(
        0, "listening", host=host, port=port, lm_compat_level=os.environ["LM_COMPAT_LEVEL"]
    )
    print(f"READY {port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Stop accepting, then close every client so its handler ends on EOF
    # instead of being cancelled mid-read when the loop shuts down.
    server.close()
    for connection in list(live.values()):
        connection.writer.close()
    if live:
        await asyncio.wait(list(live), timeout=5)
    await server.wait_closed()
    events.event(0, "stopped")


def main(argv):
    if argv[:1] == ["hash-user"]:
        if len(argv) != 3:
            sys.exit("usage: ntlm_proxy.py hash-user DOMAIN USER < password")
        hash_user(argv[1], argv[2])
        return

    parser = argparse.ArgumentParser(
        description="NTLM-authenticating test proxy (pyspnego acceptor)"
    )
    parser.add_argument(
        "--listen", required=True, type=parse_listen, help="LOOPBACK_IP:PORT (PORT 0 picks one)"
    )
    parser.add_argument(
        "--users", required=True, help="smbpasswd-style user file (see the module docstring)"
    )
    parser.add_argument(
        "--stats", required=True, help="JSON stats file, rewritten after every event"
    )
    parser.add_argument("--log", help="append one line per event here")
    parser.add_argument(
        "--close-after-challenge",
        type=int,
        default=0,
        metavar="N",
        help="send the first N Type 2 challenges with Connection: close, then close",
    )
    args = parser.parse_args(argv)

    check_user_file(args.users)
    os.environ["NTLM_USER_FILE"] = os.path.abspath(args.users)
    os.environ.setdefault("LM_COMPAT_LEVEL", "5")
    try:
        new_acceptor()  # fail now, not on the first client, if pyspnego can't
    except Exception as e:  # noqa: BLE001
        sys.exit(f"cannot create a pyspnego NTLM acceptor: {type(e).__name__}: {e}")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main(sys.argv[1:])
