"""The fixed peers every bridge shares: the nginx origin and three Squids.

- ``Origin``: nginx serving ``/1k`` (1 KiB) and ``/64m`` (64 MiB) over HTTP
  and HTTPS, with a self-signed certificate for 127.0.0.1 made here with
  openssl. One worker, no access log: it must never be the bottleneck.
- ``Squid``: one process per auth scheme (Squid lets any configured scheme
  authenticate on any port, so schemes must not share a process):
  ``none``, ``basic`` (basic_ncsa_auth with an MD5-crypt password file) and
  ``ntlm`` (``bench/squid_ntlm_helper.py``, a fake acceptor like Squid's
  ntlm_fake_auth but with a well-formed Type 2: it accepts any Type 3, so
  the NTLM row measures the bridges' work, not a domain controller's).
  Its access log records the Proxy-Authorization each request carried, so
  NTLM handshakes can be counted from it.

All configuration is generated into the run's temp dir.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import procs

USER = "bench"
PASSWORD = "bench-Pass1"
DOMAIN = "BENCH"

SMALL_PATH = "/1k"
LARGE_PATH = "/64m"
SMALL_SIZE = 1024
LARGE_SIZE = 64 * 1024 * 1024

SQUID_HELPERS = Path("/usr/lib/squid")
NTLM_HELPER = Path(__file__).resolve().parents[1] / "squid_ntlm_helper.py"


class Origin:
    def __init__(self, sup: procs.Supervisor, workdir: Path):
        self.sup = sup
        self.dir = workdir / "origin"
        self.http_port = procs.free_port()
        self.https_port = procs.free_port()
        self.proc = None

    @property
    def cert(self) -> Path:
        return self.dir / "cert.pem"

    def url(self, path: str, tls: bool = False) -> str:
        if tls:
            return f"https://127.0.0.1:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"

    def start(self) -> None:
        www = self.dir / "www"
        www.mkdir(parents=True)
        (www / SMALL_PATH[1:]).write_bytes(b"x" * SMALL_SIZE)
        with open(www / LARGE_PATH[1:], "wb") as f:
            f.truncate(LARGE_SIZE)  # zeros; TLS makes every byte cost the same
        r = procs.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(self.dir / "key.pem"), "-out", str(self.cert),
        ])
        if r.returncode != 0:
            raise RuntimeError(f"openssl: {r.stderr.strip()}")
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / name).mkdir(parents=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    client_body_temp_path {self.dir}/tmp/client_body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.http_port};
        listen 127.0.0.1:{self.https_port} ssl;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.dir}/key.pem;
        root {www};
    }}
}}
""")
        self.proc = self.sup.spawn("nginx", ["nginx", "-c", str(conf), "-p", str(self.dir)])
        procs.wait_port(self.http_port, self.proc)
        procs.wait_port(self.https_port, self.proc)


class Squid:
    """One Squid on 127.0.0.1 with one auth scheme: none, basic or ntlm."""

    def __init__(self, sup: procs.Supervisor, workdir: Path, scheme: str):
        assert scheme in ("none", "basic", "ntlm")
        self.sup = sup
        self.scheme = scheme
        self.dir = workdir / f"squid-{scheme}"
        self.port = procs.free_port()
        self.proc = None

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        auth = ""
        if self.scheme == "basic":
            # Squid 5.7's basic_ncsa_auth takes crypt/MD5 hashes, not {SHA}.
            r = procs.run(["openssl", "passwd", "-apr1", "-stdin"], input=PASSWORD + "\n")
            if r.returncode != 0:
                raise RuntimeError(f"openssl passwd: {r.stderr.strip()}")
            (self.dir / "passwd").write_text(f"{USER}:{r.stdout.strip()}\n")
            auth = f"""
auth_param basic program {SQUID_HELPERS}/basic_ncsa_auth {self.dir}/passwd
auth_param basic children 5 startup=5
auth_param basic credentialsttl 2 hours
"""
        elif self.scheme == "ntlm":
            # Our own fake acceptor: ntlm_fake_auth's challenge is malformed
            # (see bench/squid_ntlm_helper.py). A stateful helper is reserved
            # for each handshake in flight; the 1000-tunnel burst needs many.
            helper = self.dir / "ntlm_helper.py"
            shutil.copyfile(NTLM_HELPER, helper)
            auth = f"""
auth_param ntlm program /usr/bin/python3 -S {helper}
auth_param ntlm children 100 startup=20 idle=10
"""
        allow = "http_access allow loopback" if self.scheme == "none" else (
            "acl authed proxy_auth REQUIRED\nhttp_access allow authed")
        (self.dir / "squid.conf").write_text(f"""
http_port 127.0.0.1:{self.port}
pid_filename {self.dir}/squid.pid
logformat bench %ts.%03tu %>a:%>p %Ss/%03>Hs %rm %ru %{{Proxy-Authorization}}>h
access_log stdio:{self.access_log} bench
cache_log {self.dir}/cache.log
coredump_dir {self.dir}
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 1 seconds
max_filedescriptors 20000
{auth}
acl loopback src 127.0.0.1/32
http_access deny !loopback
{allow}
http_access deny all
""")
        # Squid started as root runs as 'proxy': it must write here.
        shutil.chown(self.dir, user="proxy")
        os.chmod(self.dir, 0o755)
        self.proc = self.sup.spawn(f"squid-{self.scheme}",
                                   ["squid", "-N", "-f", str(self.dir / "squid.conf")])
        procs.wait_port(self.port, self.proc)

    def log_offset(self) -> int:
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_log(self, offset: int, done, timeout: float = 2.0) -> list[str]:
        """The log lines since `offset`, once `done(lines)` holds or
        `timeout` passed (Squid writes a line as each request ends)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.log_since(offset)
            if done(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def log_since(self, offset: int) -> list[str]:
        try:
            with open(self.access_log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return []
