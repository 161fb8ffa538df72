//! The real `gangway` binary, as a user runs it.
//!
//! Tests pass the binary's path in (`env!("CARGO_BIN_EXE_gangway")` is only
//! known to the gangway-cli package's own tests). [`GangwayBuilder::start`]
//! launches it with `--port 0` (unless told otherwise), stdout and stderr
//! captured to files in a temp dir, and waits until stdout carries the ready
//! line:
//!
//! ```text
//! gangway listening on 127.0.0.1:41234 -> http://127.0.0.1:3129 (basic as alice)
//! ```
//!
//! The address in it is where tests connect. The environment is scrubbed of
//! proxy variables and of `GANGWAY_PASSWORD` so the developer's own shell
//! cannot leak into a test.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::poll::wait_for;
use crate::system::{read_lossy, signal, stop_child};

/// How long the binary gets to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// What the ready line starts with.
pub const READY_PREFIX: &str = "gangway listening on ";
/// The environment variable the CLI reads a password from.
pub const PASSWORD_ENV: &str = "GANGWAY_PASSWORD";

/// Variables that would change where a child sends traffic or what password
/// it uses; removed from every child's environment.
const SCRUBBED_ENV: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    PASSWORD_ENV,
    "RUST_LOG",
];

/// How a `gangway` process is to be started.
#[derive(Debug, Clone)]
pub struct GangwayBuilder {
    bin: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    port_zero: bool,
}

impl GangwayBuilder {
    /// A builder for the binary at `bin`, with no options yet.
    pub fn new(bin: impl AsRef<Path>) -> Self {
        GangwayBuilder {
            bin: bin.as_ref().to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            stdin: None,
            port_zero: true,
        }
    }

    /// Adds one command-line argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Adds command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// `--proxy URL`: forward through this upstream proxy.
    pub fn upstream(self, url: &str) -> Self {
        self.arg("--proxy").arg(url)
    }

    /// `--proxy-type TYPE` (`noauth`, `basic`, `digest`, `ntlm`, `auto`).
    pub fn proxy_type(self, kind: &str) -> Self {
        self.arg("--proxy-type").arg(kind)
    }

    /// `--user USER`.
    pub fn user(self, user: &str) -> Self {
        self.arg("--user").arg(user)
    }

    /// `--password-stdin`, with `password` and a newline written to stdin.
    pub fn password_stdin(mut self, password: &str) -> Self {
        self.stdin = Some(format!("{password}\n").into_bytes());
        self.arg("--password-stdin")
    }

    /// The password in `GANGWAY_PASSWORD`.
    pub fn password_env(self, password: &str) -> Self {
        self.env(PASSWORD_ENV, password)
    }

    /// `--password PW` on the command line (works, but the CLI warns).
    pub fn password_arg(self, password: &str) -> Self {
        self.arg("--password").arg(password)
    }

    /// `--bypass LIST`.
    pub fn bypass(self, list: &str) -> Self {
        self.arg("--bypass").arg(list)
    }

    /// `--bypass ''`: nothing goes direct. Needed whenever loopback origins
    /// are reached through a loopback upstream, since loopback is bypassed by
    /// default.
    pub fn no_bypass(self) -> Self {
        self.bypass("")
    }

    /// `-v`.
    pub fn verbose(self) -> Self {
        self.arg("-v")
    }

    /// Do not add `--port 0` (the test passes `--port` or `--config` itself).
    pub fn without_port_zero(mut self) -> Self {
        self.port_zero = false;
        self
    }

    /// Starts the binary and waits for its ready line; panics with its output
    /// if it exits or stays silent for 20 s.
    pub fn start(self) -> Gangway {
        match self.try_start() {
            Ok(gangway) => gangway,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Starts the binary and waits for its ready line, or returns what it
    /// printed if it exited (or hung) first: for tests of startup errors.
    pub fn try_start(self) -> Result<Gangway, String> {
        let mut gangway = self.spawn();
        let ready = wait_for(READY_TIMEOUT, || {
            if let Some(line) = gangway.ready_line_now() {
                return Some(Ok(line));
            }
            match gangway.child.try_wait() {
                Ok(Some(status)) => Some(Err(status)),
                _ => None,
            }
        });
        match ready {
            Some(Ok(line)) => {
                gangway.addr = parse_ready_line(&line).unwrap_or_else(|| {
                    panic!("cannot read an address from the ready line {line:?}")
                });
                gangway.ready_line = line;
                Ok(gangway)
            }
            Some(Err(status)) => Err(format!(
                "gangway exited before its ready line ({status}); args {:?}\n{}",
                gangway.args,
                gangway.output_report()
            )),
            None => {
                gangway.stop();
                Err(format!(
                    "gangway printed no ready line within {READY_TIMEOUT:?}; args {:?}\n{}",
                    gangway.args,
                    gangway.output_report()
                ))
            }
        }
    }

    /// Runs the binary to completion (at most `timeout`, then it is killed):
    /// for tests of invalid arguments and other startup failures.
    pub fn run_to_exit(self, timeout: Duration) -> Exited {
        let mut gangway = self.spawn();
        let status = wait_for(timeout, || gangway.child.try_wait().ok().flatten())
            .unwrap_or_else(|| gangway.stop());
        Exited {
            status,
            stdout: gangway.stdout(),
            stderr: gangway.stderr(),
        }
    }

    fn spawn(self) -> Gangway {
        assert!(
            self.bin.is_file(),
            "no gangway binary at {} (pass env!(\"CARGO_BIN_EXE_gangway\"))",
            self.bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("gangway-run-")
            .tempdir()
            .expect("create gangway's temp dir");
        let stdout_path = dir.path().join("stdout.txt");
        let stderr_path = dir.path().join("stderr.txt");
        let mut args = self.args;
        if self.port_zero {
            args.insert(0, "0".into());
            args.insert(0, "--port".into());
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(&args)
            .stdout(File::create(&stdout_path).expect("create stdout file"))
            .stderr(File::create(&stderr_path).expect("create stderr file"))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1");
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        for (key, value) in &self.envs {
            cmd.env(key, value);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        if let Some(input) = &self.stdin {
            let mut stdin = child.stdin.take().expect("piped stdin");
            // A CLI that exits early (bad arguments) closes its stdin; that
            // shows in its exit status and stderr, which the test checks.
            if let Err(e) = stdin.write_all(input) {
                eprintln!("testkit: gangway did not read its stdin: {e}");
            }
            // Dropping `stdin` closes it: the CLI sees EOF after the line.
        }
        Gangway {
            child,
            dir,
            stdout_path,
            stderr_path,
            args,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            ready_line: String::new(),
        }
    }
}

/// What a `gangway` run that ended printed.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr (the log and error messages).
    pub stderr: String,
}

/// A running `gangway`. Dropping it stops it (SIGTERM, SIGKILL after 5 s).
pub struct Gangway {
    child: Child,
    dir: TempDir,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    args: Vec<OsString>,
    addr: SocketAddr,
    ready_line: String,
}

impl Gangway {
    /// A builder for the binary at `bin`.
    pub fn builder(bin: impl AsRef<Path>) -> GangwayBuilder {
        GangwayBuilder::new(bin)
    }

    /// Starts a direct (no upstream) bridge with default settings.
    pub fn direct(bin: impl AsRef<Path>) -> Gangway {
        GangwayBuilder::new(bin).start()
    }

    /// Where it listens, from the ready line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://ADDR:PORT`, to use as a client's proxy or to fetch its pages.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The whole ready line, without the newline.
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// What it logged on stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Waits (bounded) until stderr contains `needle`; returns whether it did.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.stderr().contains(needle).then_some(())).is_some()
    }

    /// Panics if `secret` appears anywhere in its stdout or stderr.
    pub fn assert_output_never_contains(&self, secret: &str) {
        let (stdout, stderr) = (self.stdout(), self.stderr());
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "gangway printed a secret ({secret:?}):\n{}",
            self.output_report()
        );
    }

    /// Sends SIGHUP (re-read settings, forget rejected credentials).
    pub fn sighup(&self) {
        signal(&self.child, libc::SIGHUP);
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident set size so far (`VmHWM` in `/proc/PID/status`),
    /// in bytes: what it ever held in memory at once.
    pub fn peak_rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path} (is gangway still running?): {e}"));
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no VmHWM line in {path}:\n{status}"));
        kib * 1024
    }

    /// Sends SIGTERM and returns at once (see [`Gangway::wait_exit`]).
    pub fn sigterm(&self) {
        signal(&self.child, libc::SIGTERM);
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.child.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s) and returns how it exited.
    pub fn stop(&mut self) -> ExitStatus {
        stop_child(&mut self.child, STOP_GRACE)
    }

    /// The temp dir holding its captured output (for config files a test
    /// wants to keep next to it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stdout and stderr, labelled, for failure messages.
    pub fn output_report(&self) -> String {
        format!(
            "--- gangway stdout ---\n{}\n--- gangway stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    fn ready_line_now(&self) -> Option<String> {
        self.stdout()
            .lines()
            .find(|l| l.starts_with(READY_PREFIX))
            .map(str::to_owned)
    }
}

impl Drop for Gangway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The listening address in a ready line:
/// `gangway listening on ADDR:PORT -> …`.
pub fn parse_ready_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix(READY_PREFIX)?;
    let addr = rest.split(" -> ").next()?;
    addr.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_lines() {
        assert_eq!(
            parse_ready_line(
                "gangway listening on 127.0.0.1:41234 -> http://127.0.0.1:3129 (basic as alice)"
            ),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(
            parse_ready_line("gangway listening on [::1]:3128 -> direct"),
            Some("[::1]:3128".parse().unwrap())
        );
        assert_eq!(parse_ready_line("something else"), None);
    }
}
