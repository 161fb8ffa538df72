#!/usr/bin/python3
"""A fake NTLM authenticator for Squid's stateful helper protocol: it
answers every handshake with a well-formed Type 2 and accepts any Type 3,
without checking it (MS-NLMP §2.2.1.2 and §2.2.1.3 for the layouts).

Why not Squid's own ntlm_fake_auth: in Squid 5.7 its Type 2 is malformed.
The TargetName buffer's offset is 0xaaaaaaae (never set), the flags echo
whatever the client sent, and there is no TargetInfo block. curl ignores
all that; gangway rejects the challenge ("target name lies outside the
message"), and Cntlm can't do NTLMv2 without TargetInfo. This helper
does the same job (no domain controller, so the benchmark measures the
bridges) with a challenge any NTLMv2 client can answer. Correctness is
proven elsewhere, by the tests against an independent NTLM acceptor.

Protocol (one line in, one line out, stdout flushed):
  YR <type1>  ->  TT <type2>       a new handshake on a connection
  KK <type3>  ->  AF <user>        the answer: accepted as it is
  KK <type1>  ->  TT <type2>       the client started over
  anything else -> BH <reason>
A Type 3 sent as the first message of a connection (a client replaying a
precomputed header) arrives as YR and gets a challenge, as with
ntlm_fake_auth: the same Type 3 passes on the second try.

Python 3 standard library only; run by /usr/bin/python3 as Squid's user.
"""

import base64
import os
import struct
import sys
import time

SIGNATURE = b"NTLMSSP\x00"
DOMAIN = "BENCH"

# UNICODE | REQUEST_TARGET | NTLM | ALWAYS_SIGN | TARGET_TYPE_DOMAIN |
# EXTENDED_SESSIONSECURITY | TARGET_INFO | VERSION | 128 | 56
FLAGS = (0x00000001 | 0x00000004 | 0x00000200 | 0x00008000 | 0x00010000
         | 0x00080000 | 0x00800000 | 0x02000000 | 0x20000000 | 0x80000000)
VERSION = bytes([10, 0]) + struct.pack("<H", 19041) + b"\x00\x00\x00\x0f"


def _av(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def type2() -> bytes:
    target = DOMAIN.encode("utf-16-le")
    filetime = int((time.time() + 11644473600) * 10_000_000)
    info = (_av(2, DOMAIN.encode("utf-16-le"))            # MsvAvNbDomainName
            + _av(1, b"S\x00Q\x00U\x00I\x00D\x00")         # MsvAvNbComputerName
            + _av(4, "bench.test".encode("utf-16-le"))     # MsvAvDnsDomainName
            + _av(3, "squid.bench.test".encode("utf-16-le"))  # MsvAvDnsComputerName
            + _av(7, struct.pack("<Q", filetime))          # MsvAvTimestamp
            + _av(0, b""))                                 # MsvAvEOL
    header_len = 56
    return (SIGNATURE + struct.pack("<I", 2)
            + struct.pack("<HHI", len(target), len(target), header_len)
            + struct.pack("<I", FLAGS) + os.urandom(8) + b"\x00" * 8
            + struct.pack("<HHI", len(info), len(info), header_len + len(target))
            + VERSION + target + info)


def _field(msg: bytes, at: int, unicode: bool) -> str:
    length, _, offset = struct.unpack_from("<HHI", msg, at)
    raw = msg[offset:offset + length]
    return raw.decode("utf-16-le" if unicode else "latin-1", errors="replace")


def user_of(type3: bytes) -> str:
    unicode = bool(struct.unpack_from("<I", type3, 60)[0] & 1)
    domain, user = _field(type3, 28, unicode), _field(type3, 36, unicode)
    # Squid takes the user name as one token: no spaces.
    return (f"{domain}\\{user}" if domain else user).replace(" ", "_") or "anonymous"


def answer(line: str) -> str:
    verb, _, blob = line.strip().partition(" ")
    try:
        msg = base64.b64decode(blob) if blob else b""
    except ValueError:
        return "BH bad base64"
    kind = struct.unpack_from("<I", msg, 8)[0] if len(msg) >= 12 and msg[:8] == SIGNATURE else 0
    if verb == "YR" or (verb == "KK" and kind == 1):
        return "TT " + base64.b64encode(type2()).decode()
    if verb == "KK" and kind == 3 and len(msg) >= 64:
        return "AF " + user_of(msg)
    return f"BH unexpected {verb} message type {kind}"


def main() -> None:
    for line in sys.stdin:
        sys.stdout.write(answer(line) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
