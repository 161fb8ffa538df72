//! curl, the client a user would point at the bridge.
//!
//! Every run is `curl -q -sS --max-time … [-x http://127.0.0.1:PORT
//! --noproxy ''] …`: no `.curlrc`, no proxy settings from the environment, a
//! hard time limit. Each URL's body goes to its own file and a `-w` line per
//! transfer reports the status, the CONNECT status and how many new
//! connections curl opened (0 = it reused one), so several URLs in one run
//! show keep-alive at work.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::origin::EchoReply;
use crate::system::{read_lossy, CURL};

/// The time limit when a test sets none.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(30);

/// Prefix of our `-w` lines, so they cannot be confused with anything else.
/// (It must not start with `@`: curl would read the format from that file.)
const W_PREFIX: &str = "gangway-testkit-transfer:";

/// One curl invocation being put together.
#[derive(Debug, Clone)]
pub struct Curl {
    proxy: Option<String>,
    args: Vec<OsString>,
    urls: Vec<String>,
    stdin: Option<Vec<u8>>,
    max_time: Duration,
}

impl Default for Curl {
    fn default() -> Self {
        Self::new()
    }
}

impl Curl {
    /// curl without a proxy (e.g. to fetch the bridge's own pages).
    pub fn new() -> Self {
        Curl {
            proxy: None,
            args: Vec::new(),
            urls: Vec::new(),
            stdin: None,
            max_time: DEFAULT_MAX_TIME,
        }
    }

    /// curl with `-x http://ADDR` (the bridge's address).
    pub fn via(proxy: SocketAddr) -> Self {
        Self::via_url(&format!("http://{proxy}"))
    }

    /// curl with `-x URL`.
    pub fn via_url(proxy: &str) -> Self {
        Curl {
            proxy: Some(proxy.to_owned()),
            ..Self::new()
        }
    }

    /// Adds a URL to fetch (several URLs share connections where they can).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Adds one raw curl argument (placed before the URLs).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Adds raw curl arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `-H "Name: value"`.
    pub fn header(self, header: &str) -> Self {
        self.arg("-H").arg(header)
    }

    /// `-X METHOD`.
    pub fn method(self, method: &str) -> Self {
        self.arg("-X").arg(method)
    }

    /// `-I`: a HEAD request (the "body" is then the response head).
    pub fn head(self) -> Self {
        self.arg("-I")
    }

    /// `--http1.0`.
    pub fn http10(self) -> Self {
        self.arg("--http1.0")
    }

    /// `-p`: tunnel through the proxy with CONNECT even for `http://` URLs.
    pub fn tunnel(self) -> Self {
        self.arg("-p")
    }

    /// `--cacert FILE`: trust the test CA.
    pub fn cacert(self, file: &Path) -> Self {
        self.arg("--cacert").arg(file)
    }

    /// `--data-binary @FILE`: POST the file as is.
    pub fn post_file(self, file: &Path) -> Self {
        let mut at = OsString::from("@");
        at.push(file);
        self.arg("--data-binary").arg(at)
    }

    /// `-T FILE`: PUT the file (with `Content-Length`).
    pub fn upload_file(self, file: &Path) -> Self {
        self.arg("-T").arg(file)
    }

    /// `-T -` with `data` on stdin: curl does not know the length, so it
    /// PUTs with `Transfer-Encoding: chunked`.
    pub fn upload_stdin(mut self, data: Vec<u8>) -> Self {
        self.stdin = Some(data);
        self.arg("-T").arg("-")
    }

    /// `--max-time`: the hard limit for the whole run.
    pub fn max_time(mut self, limit: Duration) -> Self {
        self.max_time = limit;
        self
    }

    /// Runs curl and collects what it got. Does not panic on HTTP errors or
    /// curl failures: the test asserts on the [`CurlOutput`].
    pub fn run(self) -> CurlOutput {
        assert!(!self.urls.is_empty(), "curl needs at least one URL");
        let dir = tempfile::Builder::new()
            .prefix("gangway-curl-")
            .tempdir()
            .expect("create curl's temp dir");
        let headers_path = dir.path().join("headers.txt");
        let secs = self.max_time.as_secs().max(1);
        let mut cmd = Command::new(CURL.require());
        // -q must come first: it makes curl ignore ~/.curlrc.
        cmd.arg("-q")
            .arg("-sS")
            .arg("--max-time")
            .arg(secs.to_string())
            .arg("--connect-timeout")
            .arg(secs.min(10).to_string())
            .arg("-D")
            .arg(&headers_path)
            .arg("-w")
            .arg(format!(
                "{W_PREFIX} %{{http_code}} %{{http_connect}} %{{num_connects}} %{{size_download}}\\n"
            ));
        if let Some(proxy) = &self.proxy {
            // An empty --noproxy list overrides any NO_PROXY from the
            // environment: every URL goes through the proxy, loopback too.
            cmd.arg("-x").arg(proxy).arg("--noproxy").arg("");
        }
        cmd.args(&self.args);
        for (i, url) in self.urls.iter().enumerate() {
            cmd.arg("-o")
                .arg(dir.path().join(format!("body-{i}")))
                .arg(url);
        }
        for key in [
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(key);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn curl");
        // Feed stdin from another thread: curl may be sending while we wait.
        let feeder = self.stdin.map(|data| {
            let mut stdin = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                // curl stops reading if the transfer fails; the failure
                // itself is in its exit status and stderr, this is a hint.
                if let Err(e) = stdin.write_all(&data) {
                    eprintln!("testkit: curl took only part of its stdin: {e}");
                }
            })
        });
        let output = child.wait_with_output().expect("wait for curl");
        if let Some(feeder) = feeder {
            feeder.join().expect("stdin feeder thread");
        }

        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let transfers = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(W_PREFIX))
            .enumerate()
            .map(|(i, fields)| Transfer::parse(fields, &dir.path().join(format!("body-{i}"))))
            .collect();
        CurlOutput {
            status: output.status,
            transfers,
            headers: read_lossy(&headers_path),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            urls: self.urls,
        }
    }
}

/// One URL's result within a run.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The final HTTP status (`0` when no response arrived).
    pub status: u16,
    /// The status of the proxy's answer to CONNECT (`0` when none was sent).
    pub connect_status: u16,
    /// New connections curl opened for this URL (`0` = reused one).
    pub new_connections: u32,
    /// The body received.
    pub body: Vec<u8>,
}

impl Transfer {
    fn parse(fields: &str, body_path: &Path) -> Self {
        let mut it = fields.split_whitespace();
        let mut next = || it.next().unwrap_or("0");
        let status = next().parse().unwrap_or(0);
        let connect_status = next().parse().unwrap_or(0);
        let new_connections = next().parse().unwrap_or(0);
        Transfer {
            status,
            connect_status,
            new_connections,
            body: std::fs::read(body_path).unwrap_or_default(),
        }
    }
}

/// Everything one curl run produced.
#[derive(Debug)]
pub struct CurlOutput {
    /// curl's exit status (non-zero on transport errors, timeouts, failed
    /// CONNECT…).
    pub status: ExitStatus,
    /// One entry per URL curl got to, in order.
    pub transfers: Vec<Transfer>,
    /// Every response head received (`-D`), concatenated.
    pub headers: String,
    /// curl's error messages.
    pub stderr: String,
    urls: Vec<String>,
}

impl CurlOutput {
    /// The only (or last) transfer; panics with the run's report if none.
    pub fn transfer(&self) -> &Transfer {
        self.transfers
            .last()
            .unwrap_or_else(|| panic!("curl reported no transfer\n{}", self.report()))
    }

    /// The HTTP status of the only (or last) transfer.
    pub fn code(&self) -> u16 {
        self.transfer().status
    }

    /// The CONNECT status of the only (or last) transfer.
    pub fn connect_code(&self) -> u16 {
        self.transfer().connect_status
    }

    /// The body of the only (or last) transfer.
    pub fn body(&self) -> &[u8] {
        &self.transfer().body
    }

    /// That body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    /// That body as an `/echo` reply.
    pub fn echo(&self) -> EchoReply {
        EchoReply::parse(self.body())
    }

    /// Whether curl exited 0.
    pub fn succeeded(&self) -> bool {
        self.status.success()
    }

    /// The value of header `name` (any case) in the last response head.
    pub fn header(&self, name: &str) -> Option<String> {
        let last_head = self
            .headers
            .split("\r\n\r\n")
            .filter(|h| !h.trim().is_empty())
            .last()?;
        last_head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// Statuses, heads, stderr and a body excerpt, for assertion messages.
    pub fn report(&self) -> String {
        let statuses: Vec<String> = self
            .transfers
            .iter()
            .map(|t| {
                format!(
                    "{} (connect {}, new conns {})",
                    t.status, t.connect_status, t.new_connections
                )
            })
            .collect();
        let body = self
            .transfers
            .last()
            .map(|t| String::from_utf8_lossy(&t.body[..t.body.len().min(2000)]).into_owned())
            .unwrap_or_default();
        format!(
            "curl {:?}: {}; statuses {statuses:?}\n--- heads ---\n{}\n--- stderr ---\n{}\n--- body (first 2000 bytes) ---\n{body}",
            self.urls, self.status, self.headers, self.stderr
        )
    }
}

/// `curl -x PROXY URL`: a plain GET through the proxy at `proxy`.
pub fn get(proxy: SocketAddr, url: &str) -> CurlOutput {
    Curl::via(proxy).url(url).run()
}
