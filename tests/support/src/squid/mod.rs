//! A real Squid, private to one test.
//!
//! [`Squid::start`] writes a [`SquidConfig`] into a fresh temp directory
//! (owned by Squid's `proxy` user, since Squid started as root drops to it),
//! runs `squid -N` in the foreground, and waits until Squid's cache.log says
//! it accepts connections on *our* port and the port answers. Logs, pid file
//! and core dumps all stay in that directory, which goes away on drop.
//!
//! Tests read the access log through [`Squid::access_entries`];
//! [`Squid::flush_access_log`] first makes sure every earlier request has
//! been logged. [`Squid::stop`] and [`Squid::restart`] bring the same
//! configuration down and up again on the same port.

mod access_log;
mod config;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

pub use access_log::AccessEntry;
pub use config::{digest_ha1, SquidAuth, SquidConfig, DEFAULT_REALM};

use self::config::{ACCESS_LOG, CACHE_LOG, CONF_FILE, PID_FILE, SQUID_USER, STDIO_FILE};
use crate::hang::closed_port;
use crate::poll::wait_for;
use crate::ports::{free_port, LOOPBACK};
use crate::system::{chown_for_daemon, read_lossy, stop_child, SQUID};

/// How long Squid gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Squid gets to exit after SIGTERM before SIGKILL. With
/// `shutdown_lifetime 0` it takes about 2.5 s.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many fresh ports to try when another process took ours first.
const PORT_ATTEMPTS: usize = 3;
/// How long an access-log line may lag behind the response.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// The cache.log line Squid writes once per listening port.
const LISTENING_MARK: &str = "Accepting HTTP Socket connections";

/// A running (or stopped, between [`Squid::stop`] and [`Squid::restart`])
/// Squid.
pub struct Squid {
    config: SquidConfig,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    markers: AtomicU32,
}

impl Squid {
    /// Starts Squid without authentication.
    pub fn no_auth() -> Self {
        Self::start(SquidConfig::no_auth())
    }

    /// Starts Squid demanding Basic credentials of `user`.
    pub fn basic(user: &str, password: &str) -> Self {
        Self::start(SquidConfig::basic(user, password))
    }

    /// Starts Squid demanding Digest credentials of `user`.
    pub fn digest(user: &str, password: &str) -> Self {
        Self::start(SquidConfig::digest(user, password))
    }

    /// Starts Squid with `config` on a free loopback port.
    ///
    /// Panics (with cache.log) when Squid does not come up within 15 s, and
    /// naming the package when Squid is not installed.
    pub fn start(config: SquidConfig) -> Self {
        let squid = SQUID.require();
        let mut dir = tempfile::Builder::new()
            .prefix("gangway-squid-")
            .tempdir()
            .expect("create Squid's temp dir");
        chown_for_daemon(dir.path(), SQUID_USER);
        config.write_password_file(dir.path());

        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut this = Squid {
                config: config.clone(),
                dir,
                port,
                child: None,
                markers: AtomicU32::new(0),
            };
            match this.launch(&squid) {
                Ok(()) => return this,
                Err(failure) if failure.port_taken => {
                    last_failure = failure.report;
                    dir = this.take_dir();
                }
                Err(failure) => panic!("{}", failure.report),
            }
        }
        panic!("Squid found its port taken {PORT_ATTEMPTS} times; last attempt:\n{last_failure}");
    }

    /// The port Squid listens on.
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

    /// The realm Squid announces.
    pub fn realm(&self) -> &str {
        self.config.realm_name()
    }

    /// Squid's private directory (config, logs, password file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The access log as it is now (empty before the first request).
    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.path().join(ACCESS_LOG))
    }

    /// The access log as entries, oldest first.
    pub fn access_entries(&self) -> Vec<AccessEntry> {
        access_log::parse_log(&self.access_log())
    }

    /// How many logged requests got `status`.
    pub fn count_status(&self, status: u16) -> usize {
        self.access_entries()
            .iter()
            .filter(|e| e.status == status)
            .count()
    }

    /// How many logged requests got a 407, with or without credentials.
    pub fn count_407(&self) -> usize {
        self.count_status(407)
    }

    /// How many requests carried `user`'s credentials and got a 407: the
    /// number of rejected login attempts for that user.
    pub fn count_rejected_credentials(&self, user: &str) -> usize {
        self.access_entries()
            .iter()
            .filter(|e| e.is_rejected_credentials_of(user))
            .count()
    }

    /// Squid's cache.log (its diagnostics).
    pub fn cache_log(&self) -> String {
        read_lossy(&self.dir.path().join(CACHE_LOG))
    }

    /// Makes sure every request Squid answered before this call is in the
    /// access log: sends a marker request of our own straight to Squid and
    /// waits (bounded) until its line appears. Squid logs a transaction when
    /// it finishes, so earlier finished ones are logged before the marker.
    pub fn flush_access_log(&self) {
        let n = self.markers.fetch_add(1, Ordering::SeqCst);
        let marker = format!("/gangway-testkit-log-marker-{n}");
        // Nothing listens there: an open Squid answers 503, an
        // authenticating one 407; either way it logs the URL.
        let target = format!("http://{}:{}{marker}", LOOPBACK, closed_port());
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n");
        let mut stream =
            TcpStream::connect_timeout(&self.addr(), LOG_TIMEOUT).expect("connect to Squid");
        stream
            .set_read_timeout(Some(LOG_TIMEOUT))
            .expect("set read timeout");
        stream
            .write_all(request.as_bytes())
            .expect("send the marker request to Squid");
        let mut sink = Vec::new();
        // Squid closes after answering (Connection: close). Only the log
        // line matters; a failed read just ends this wait early.
        if let Err(e) = stream.read_to_end(&mut sink) {
            eprintln!("testkit: reading Squid's answer to the log marker: {e}");
        }
        let logged = wait_for(LOG_TIMEOUT, || {
            self.access_log().contains(&marker).then_some(())
        });
        assert!(
            logged.is_some(),
            "Squid did not log the marker request within {LOG_TIMEOUT:?}; access.log:\n{}",
            self.access_log()
        );
    }

    /// Changes `user`'s password while Squid runs: rewrites the password
    /// file and moves its mtime forward, since the helpers reload the file
    /// when its mtime (in whole seconds) changes.
    pub fn change_password(&mut self, user: &str, password: &str) {
        let file = self
            .config
            .password_file(self.dir.path())
            .expect("change_password needs a Squid with Basic or Digest auth");
        let before = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("password file mtime");
        self.config.set_password(user, password);
        self.config.write_password_file(self.dir.path());
        let bumped = (before + Duration::from_secs(2)).max(SystemTime::now());
        File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(bumped))
            .expect("bump the password file's mtime");
    }

    /// Whether the Squid process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Stops Squid (SIGTERM, then SIGKILL after 10 s) and waits for it to
    /// exit. The port is free afterwards; the logs remain.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, STOP_GRACE);
        }
    }

    /// Starts Squid again with the same configuration on the same port
    /// (stopping it first if it still runs). Panics if it cannot come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(failure) = self.launch(&SQUID.require()) {
            panic!("restarting Squid on port {}: {}", self.port, failure.report);
        }
    }

    /// Writes the config, spawns `squid -N` and waits until it listens.
    fn launch(&mut self, squid: &Path) -> Result<(), LaunchFailure> {
        let dir = self.dir.path().to_path_buf();
        let conf = dir.join(CONF_FILE);
        std::fs::write(&conf, self.config.render(&dir, self.port)).expect("write squid.conf");
        let listening_before = self.listening_marks();
        let stdio = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(STDIO_FILE))
            .expect("open Squid's stdout file");
        let child = Command::new(squid)
            .arg("-N")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(stdio.try_clone().expect("clone file handle"))
            .stderr(stdio)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", squid.display()));
        self.child = Some(child);

        let ready = wait_for(START_TIMEOUT, || {
            if !self.is_running() {
                return Some(false);
            }
            let listening = self.listening_marks() > listening_before
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_ok();
            listening.then_some(true)
        });
        if ready == Some(true) {
            return Ok(());
        }
        self.stop();
        let cache_log = self.cache_log();
        Err(LaunchFailure {
            port_taken: cache_log.contains("Address already in use"),
            report: format!(
                "Squid did not come up on 127.0.0.1:{} within {START_TIMEOUT:?} ({}).\n\
                 --- squid.conf ---\n{}\n--- cache.log ---\n{cache_log}\n--- stdout/stderr ---\n{}",
                self.port,
                if ready.is_none() {
                    "timed out"
                } else {
                    "it exited"
                },
                read_lossy(&conf),
                read_lossy(&dir.join(STDIO_FILE)),
            ),
        })
    }

    /// How many times cache.log has announced our port so far.
    fn listening_marks(&self) -> usize {
        let ours = format!("local=127.0.0.1:{} ", self.port);
        self.cache_log()
            .lines()
            .filter(|l| l.contains(LISTENING_MARK) && l.contains(&ours))
            .count()
    }

    /// Hands the directory to the next attempt (after a failed launch).
    fn take_dir(mut self) -> TempDir {
        self.stop();
        // Remove stale state so the next attempt starts clean.
        for file in [CACHE_LOG, PID_FILE] {
            let path: PathBuf = self.dir.path().join(file);
            if path.exists() {
                std::fs::remove_file(&path).expect("remove stale Squid file");
            }
        }
        let placeholder = tempfile::tempdir().expect("placeholder temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why a launch failed, and whether trying another port may help.
struct LaunchFailure {
    port_taken: bool,
    report: String,
}
