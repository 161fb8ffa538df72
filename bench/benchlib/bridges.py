"""The bridges under test, each started fresh for each figure and stopped
after it: gangway (release-cli build), Cntlm (Debian, NTLM only), Px (PyPI
px-proxy) and "direct", the no-bridge ceiling where the client talks to
Squid itself with a precomputed Proxy-Authorization.

Each bridge gets the same upstream, user, password and domain, listens on
127.0.0.1, runs at its default settings otherwise, and reaches the origin
through the upstream (nothing bypassed, although the origin is 127.0.0.1).

Direct and NTLM: NTLM authenticates a connection, not a request, so a
precomputed header cannot authenticate a fresh connection on its own. Two
messages are captured once from a real curl handshake with the NTLM Squid:
the Type 1 and a Type 3 (the fake acceptor, bench/squid_ntlm_helper.py,
accepts any Type 3 that follows a Type 2 on the same connection). A client sending that Type 3 on every
request gets one 407 per new connection and 200s after it (Squid treats
the first Type 3 as a new handshake); the tunnel client sends Type 1, reads
the 407, then sends the Type 3. curl does a real handshake of its own.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from . import peers, procs


class Bridge:
    name = "?"
    # Whether the bridge is a process of its own (direct is not).
    has_process = True

    def __init__(self, sup: procs.Supervisor, workdir: Path):
        self.sup = sup
        self.workdir = workdir
        self.proc = None
        self.port = 0


    def start(self, squid: peers.Squid) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.sup.stop(self.proc)
            self.proc = None

    def pids(self) -> list[int]:
        return procs.tree(self.proc.pid) if self.proc else []

    def proxy_auth(self, squid: peers.Squid) -> str | None:
        """The Proxy-Authorization a client sends itself (direct only)."""
        return None

    def _listen(self, name: str, argv: list[str], env: dict | None = None) -> None:
        self.port = procs.free_port()
        argv = [a.replace("{PORT}", str(self.port)) for a in argv]
        self.proc = self.sup.spawn(name, argv, env=env)
        procs.wait_port(self.port, self.proc)


class Gangway(Bridge):
    name = "gangway"

    def __init__(self, sup, workdir, binary: Path):
        super().__init__(sup, workdir)
        self.binary = binary

    def start(self, squid):
        argv = [str(self.binary), "--listen-address", "127.0.0.1", "--port", "{PORT}",
                # The default bypass list holds 127.0.0.0/8: the origin.
                "--bypass", "", "--proxy", squid.url]
        if squid.scheme == "none":
            argv += ["--proxy-type", "noauth"]
        elif squid.scheme == "basic":
            argv += ["--proxy-type", "basic", "--user", peers.USER]
        else:
            argv += ["--proxy-type", "ntlm", "--user", peers.USER, "--realm", peers.DOMAIN]
        env = dict(os.environ, GANGWAY_PASSWORD=peers.PASSWORD)
        self._listen("gangway", argv, env)


class Cntlm(Bridge):
    """Speaks NTLM only: the plan gives it the NTLM upstream alone."""
    name = "cntlm"

    def start(self, squid):
        port = procs.free_port()
        conf = self.workdir / "cntlm.conf"
        # NTLMv2, as gangway and Px speak it; no NoProxy list.
        conf.write_text(
            f"Username {peers.USER}\nDomain {peers.DOMAIN}\nPassword {peers.PASSWORD}\n"
            f"Auth NTLMv2\nProxy 127.0.0.1:{squid.port}\nListen 127.0.0.1:{port}\n")
        os.chmod(conf, 0o600)
        self.port = port
        self.proc = self.sup.spawn("cntlm", ["cntlm", "-f", "-c", str(conf)])
        procs.wait_port(self.port, self.proc)


class Px(Bridge):
    name = "px"

    def __init__(self, sup, workdir, px: Path):
        super().__init__(sup, workdir)
        self.px = px

    def start(self, squid):
        user = peers.USER if squid.scheme == "basic" else f"{peers.DOMAIN}\\{peers.USER}"
        home = self.workdir / "px-home"
        home.mkdir(exist_ok=True)
        # A private HOME so no px.ini or keyring of this machine is read.
        env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home),
                   PX_PASSWORD=peers.PASSWORD, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
        argv = [str(self.px), "--listen=127.0.0.1", "--port={PORT}",
                f"--proxy=127.0.0.1:{squid.port}"]
        # No-auth upstream: Px's default (it detects that no auth is asked
        # for). Its --auth=NONE answers CONNECT with a 500 in Px 0.13.0.
        if squid.scheme != "none":
            argv += [f"--auth={squid.scheme.upper()}", f"--username={user}"]
        self._listen("px", argv, env)


class Direct(Bridge):
    name = "direct"
    has_process = False

    def __init__(self, sup, workdir):
        super().__init__(sup, workdir)
        self.ntlm_type1: str | None = None
        self.ntlm_type3: str | None = None

    def start(self, squid):
        self.port = squid.port

    def stop(self):
        pass

    def pids(self):
        return []

    def proxy_auth(self, squid):
        if squid.scheme == "basic":
            raw = f"{peers.USER}:{peers.PASSWORD}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if squid.scheme == "ntlm":
            return self.ntlm_type3
        return None

    def capture_ntlm(self, squid: peers.Squid, origin: peers.Origin) -> None:
        """Records the Type 1 and Type 3 of one real curl handshake."""
        r = procs.run(["curl", "-sv", "--noproxy", "", "-o", "/dev/null",
                       "-x", squid.url, "--proxy-ntlm",
                       "-U", f"{peers.DOMAIN}\\{peers.USER}:{peers.PASSWORD}",
                       origin.url(peers.SMALL_PATH)])
        sent = re.findall(r"^> Proxy-Authorization: (NTLM \S+)", r.stderr, re.M)
        if len(sent) != 2 or "< HTTP/1.1 200" not in r.stderr:
            raise RuntimeError(f"could not record an NTLM handshake with curl:\n{r.stderr[-2000:]}")
        self.ntlm_type1, self.ntlm_type3 = sent

