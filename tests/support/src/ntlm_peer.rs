//! The independent NTLM upstream: `tests/peers/ntlm_proxy.py`, whose NTLM
//! acceptor is pyspnego's, not Gangway's.
//!
//! [`NtlmPeer::start`] hashes each user's password with the script's own
//! `hash-user` (password on stdin, never on a command line), writes the
//! smbpasswd-style user file into a temp dir, runs the proxy from the
//! project's venv (`.venv`, made by `scripts/setup-test-deps`) on
//! `127.0.0.1:0`, and waits for its `READY <port>` line. It accepts NTLMv2
//! only (the script's default `LM_COMPAT_LEVEL=5`), so a 200 through it
//! proves the client spoke NTLMv2.
//!
//! [`NtlmPeer::stats`] reads the counters the script rewrites after every
//! event: handshakes per connection, failed handshakes, Type 3s that moved
//! to another connection. A missing venv or pyspnego panics naming the
//! setup script: a skipped peer test looks exactly like a passing one.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::poll::wait_for;
use crate::ports::LOOPBACK;
use crate::system::{read_lossy, stop_child};

/// How long the proxy gets to print `READY`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it gets to exit after SIGTERM (it closes clients within 5 s).
const STOP_GRACE: Duration = Duration::from_secs(8);
/// What the script prints once it listens.
const READY_PREFIX: &str = "READY ";
/// The `listening` event's field when it accepts NTLMv2 only.
const NTLMV2_ONLY_MARK: &str = "lm_compat_level='5'";
/// The script, relative to the repository root.
const SCRIPT: &str = "tests/peers/ntlm_proxy.py";
/// The venv's interpreter, relative to the repository root.
const VENV_PYTHON: &str = ".venv/bin/python";
/// What to run when the venv is missing or broken.
const SETUP_HINT: &str = "run scripts/setup-test-deps (it creates .venv and installs \
                          pyspnego from tests/peers/requirements.txt)";

/// One account the peer accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmUser {
    /// The NTLM domain; matched without regard to case. Empty for a user
    /// that matches only clients sending an empty domain.
    pub domain: String,
    /// The user name.
    pub user: String,
    /// The password (any Unicode; only its NT hash is stored).
    pub password: String,
}

impl NtlmUser {
    /// `DOMAIN\user` with `password`.
    pub fn new(domain: &str, user: &str, password: &str) -> Self {
        NtlmUser {
            domain: domain.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }
}

/// The counters from the peer's stats file (see the script's docstring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct NtlmStats {
    /// Client TCP connections accepted.
    pub connections: u64,
    /// Type 3 messages accepted.
    pub handshakes_ok: u64,
    /// Type 3 (or undecodable) messages refused.
    pub handshakes_failed: u64,
    /// Type 1 messages received.
    pub type1_seen: u64,
    /// Requests served on authenticated connections.
    pub requests: u64,
    /// The most handshakes started on one connection.
    pub max_handshakes_on_one_connection: u64,
    /// Type 3s on a connection with no pending Type 2.
    pub type3_without_challenge: u64,
    /// Type 2s sent with `Connection: close` (`--close-after-challenge`).
    #[serde(default)]
    pub closed_after_challenge: u64,
}

/// A running NTLM proxy. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct NtlmPeer {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl NtlmPeer {
    /// Starts the proxy accepting `users`, on a free loopback port.
    pub fn start(users: &[NtlmUser]) -> Self {
        Self::start_with(users, &[])
    }

    /// Like [`NtlmPeer::start`], with extra options for the script, e.g.
    /// `["--close-after-challenge", "3"]`.
    pub fn start_with(users: &[NtlmUser], extra: &[&str]) -> Self {
        assert!(!users.is_empty(), "the NTLM peer needs at least one user");
        let python = venv_python();
        let dir = tempfile::Builder::new()
            .prefix("gangway-ntlm-")
            .tempdir()
            .expect("create the NTLM peer's temp dir");
        let user_file = dir.path().join("users");
        let lines: String = users
            .iter()
            .map(|u| hash_user(&python, &u.domain, &u.user, &u.password))
            .collect();
        std::fs::write(&user_file, lines).expect("write the NTLM user file");

        let stdout_path = dir.path().join("stdout.txt");
        let stderr_path = dir.path().join("stderr.txt");
        let mut cmd = Command::new(&python);
        cmd.arg(script())
            .arg("--listen")
            .arg(format!("{LOOPBACK}:0"))
            .arg("--users")
            .arg(&user_file)
            .arg("--stats")
            .arg(dir.path().join("stats.json"))
            .arg("--log")
            .arg(dir.path().join("events.log"))
            .args(extra)
            .env_remove("LM_COMPAT_LEVEL")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create the peer's stdout file"))
            .stderr(File::create(&stderr_path).expect("create the peer's stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}; {SETUP_HINT}", python.display()));
        let mut peer = NtlmPeer {
            child,
            dir,
            port: 0,
        };
        let ready = wait_for(START_TIMEOUT, || {
            let out = read_lossy(&stdout_path);
            if let Some(port) = out
                .lines()
                .find_map(|l| l.strip_prefix(READY_PREFIX))
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                return Some(Ok(port));
            }
            match peer.child.try_wait() {
                Ok(Some(status)) => Some(Err(status)),
                _ => None,
            }
        });
        match ready {
            Some(Ok(port)) => {
                peer.port = port;
                // The script logs its level before it prints READY.
                assert!(
                    peer.log().contains(NTLMV2_ONLY_MARK),
                    "the NTLM peer does not run NTLMv2-only:\n{}",
                    peer.log()
                );
                peer
            }
            other => {
                let why = match other {
                    Some(Err(status)) => format!("it exited ({status})"),
                    _ => format!("no READY line within {START_TIMEOUT:?}"),
                };
                stop_child(&mut peer.child, STOP_GRACE);
                panic!(
                    "the NTLM peer did not start: {why}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    read_lossy(&stdout_path),
                    read_lossy(&stderr_path)
                )
            }
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOOPBACK, self.port))
    }

    /// `http://127.0.0.1:port`, as `gangway --proxy` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The counters as the peer last wrote them.
    pub fn stats(&self) -> NtlmStats {
        let text = read_lossy(&self.dir.path().join("stats.json"));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the NTLM peer's stats file is not JSON ({e}): {text:?}"))
    }

    /// Waits (bounded) until `done` holds for the stats, returning the last
    /// stats read either way. The peer writes its counters right before it
    /// answers, so this only covers events with no answer (a closed socket).
    pub fn wait_for_stats(
        &self,
        timeout: Duration,
        done: impl Fn(&NtlmStats) -> bool,
    ) -> NtlmStats {
        wait_for(timeout, || {
            let stats = self.stats();
            done(&stats).then_some(stats)
        })
        .unwrap_or_else(|| self.stats())
    }

    /// The peer's event log (one line per event; never a secret).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("events.log"))
    }

    /// Stats, stderr and the event log's tail, for failure messages.
    pub fn report(&self) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- NTLM peer stats ---\n{:?}\n--- NTLM peer stderr ---\n{}\n--- NTLM peer events (last 60) ---\n{}",
            self.stats(),
            read_lossy(&self.dir.path().join("stderr.txt")),
            tail.join("\n")
        )
    }
}

impl Drop for NtlmPeer {
    fn drop(&mut self) {
        stop_child(&mut self.child, STOP_GRACE);
    }
}

/// The repository root (this crate lives in `tests/support`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    let script = repo_root().join(SCRIPT);
    assert!(script.is_file(), "the NTLM peer script {SCRIPT} is missing");
    script
}

/// The venv's python, checked once per test binary to import pyspnego.
fn venv_python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let python = repo_root().join(VENV_PYTHON);
            if !python.is_file() {
                return Err(format!(
                    "the NTLM peer needs the venv at {} which does not exist: {SETUP_HINT}",
                    python.display()
                ));
            }
            let check = Command::new(&python)
                .arg("-c")
                .arg("import spnego")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}; {SETUP_HINT}", python.display()))?;
            if !check.status.success() {
                return Err(format!(
                    "pyspnego is not installed in {}: {SETUP_HINT}\n{}",
                    python.display(),
                    String::from_utf8_lossy(&check.stderr)
                ));
            }
            Ok(python)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One user-file line, from the script's `hash-user` (password on stdin).
fn hash_user(python: &Path, domain: &str, user: &str, password: &str) -> String {
    let mut child = Command::new(python)
        .arg(script())
        .arg("hash-user")
        .arg(domain)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run ntlm_proxy.py hash-user: {e}; {SETUP_HINT}"));
    child
        .stdin
        .take()
        .expect("hash-user stdin")
        .write_all(password.as_bytes())
        .expect("write the password to hash-user");
    let output = child.wait_with_output().expect("wait for hash-user");
    assert!(
        output.status.success(),
        "ntlm_proxy.py hash-user {domain:?} {user:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("hash-user prints UTF-8")
}
