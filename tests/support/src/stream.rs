//! Transfers too large to hold in memory: pattern bytes generated as they
//! are read, checked or hashed as they arrive, and curl driven through
//! pipes.
//!
//! A gigabyte upload is fed into curl's stdin from a [`PatternReader`] and
//! a gigabyte download is compared with the pattern straight off curl's
//! stdout, so neither the test nor the disk ever holds the whole body: only
//! the bridge is under test. Generating and comparing are memcpy/memcmp
//! work; SHA-256 in a debug build is not (about 20 MB/s), so large checks
//! compare bytes and hashing is kept for what the origin reports.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::pattern::pattern;
use crate::system::{Program, CURL};

/// The pattern's period (see [`crate::pattern::pattern_byte`]).
const PERIOD: usize = 251;
/// Length of the precomputed stretch of pattern: 65 KiB and a period.
const CYCLE_LEN: usize = PERIOD * 262;
/// Prefix of the `-w` line carrying the HTTP status (on stderr).
const CODE_PREFIX: &str = "gangway-testkit-code:";
/// Bytes per read when checking a stream.
const READ_CHUNK: usize = 256 * 1024;

/// The pattern repeated past one period, so that any window of up to
/// `CYCLE_LEN - PERIOD` bytes starting anywhere is one slice of it.
fn cycle() -> &'static [u8] {
    static CYCLE: OnceLock<Vec<u8>> = OnceLock::new();
    CYCLE.get_or_init(|| pattern(CYCLE_LEN))
}

/// Copies pattern bytes `offset..offset + buf.len()` into `buf`; a memcpy
/// per 64 KiB, so generating gigabytes costs nothing even in a debug build.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let window = CYCLE_LEN - PERIOD;
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let start = (at % PERIOD as u64) as usize;
        let n = (buf.len() - done).min(window);
        buf[done..done + n].copy_from_slice(&cycle()[start..start + n]);
        done += n;
    }
}

/// Reads the first `len` pattern bytes, generated as they are read.
pub struct PatternReader {
    offset: u64,
    len: u64,
}

impl PatternReader {
    /// A reader of `len` pattern bytes.
    pub fn new(len: u64) -> Self {
        PatternReader { offset: 0, len }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.offset;
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        fill_pattern(self.offset, &mut buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}

/// How a stream compared with the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternCheck {
    /// Bytes read.
    pub len: u64,
    /// Offset of the first byte that differs from the pattern, if any.
    pub first_mismatch: Option<u64>,
}

impl PatternCheck {
    /// Whether the stream was exactly the first `len` pattern bytes.
    pub fn is_pattern_of_len(&self, len: u64) -> bool {
        self.len == len && self.first_mismatch.is_none()
    }
}

/// Compares everything `reader` yields with the pattern, byte for byte
/// (a memcmp per read: fast even in a debug build, unlike hashing).
pub fn check_pattern_stream(mut reader: impl Read) -> io::Result<PatternCheck> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut expected = vec![0u8; READ_CHUNK];
    let mut check = PatternCheck {
        len: 0,
        first_mismatch: None,
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(check),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if check.first_mismatch.is_none() {
            fill_pattern(check.len, &mut expected[..n]);
            if buf[..n] != expected[..n] {
                let at = buf[..n]
                    .iter()
                    .zip(&expected[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                check.first_mismatch = Some(check.len + at as u64);
            }
        }
        check.len += n as u64;
    }
}

/// coreutils' `sha256sum`: optimised SHA-256 for gigabytes, where the
/// debug-built `sha2` crate would take a minute.
const SHA256SUM: Program = Program {
    name: "sha256sum",
    package: "coreutils",
};

/// Lowercase hex SHA-256 of the first `len` pattern bytes, computed by
/// `sha256sum` (an implementation independent of the origin's).
pub fn pattern_sha256(len: u64) -> String {
    let mut child = Command::new(SHA256SUM.require())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sha256sum");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || io::copy(&mut PatternReader::new(len), &mut stdin));
    let output = child.wait_with_output().expect("wait for sha256sum");
    let fed = feeder.join().expect("sha256sum feeder thread");
    assert!(
        output.status.success() && fed.is_ok(),
        "sha256sum failed ({}, fed {fed:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "unexpected sha256sum output {text:?}"
    );
    hex.to_ascii_lowercase()
}

/// What a streamed curl run produced.
#[derive(Debug)]
pub struct Streamed {
    /// curl's exit status.
    pub status: ExitStatus,
    /// The HTTP status curl reported (`0` when none).
    pub http_code: u16,
    /// Bytes of the body received.
    pub len: u64,
    /// The response body as text (upload: the origin's `/echo` JSON);
    /// empty for a download, which is checked as it streams instead.
    pub body: String,
    /// curl's error messages.
    pub stderr: String,
}

/// `curl -x http://PROXY URL`, the body compared with the pattern as it
/// arrives (for the origin's `/bytes/N`).
pub fn curl_download_pattern(
    proxy: SocketAddr,
    url: &str,
    max_time: Duration,
) -> (Streamed, PatternCheck) {
    let mut cmd = curl(proxy, max_time);
    cmd.arg("-o").arg("-").arg(url).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn curl");
    let stdout = child.stdout.take().expect("piped stdout");
    let checked = check_pattern_stream(stdout);
    let output = child.wait_with_output().expect("wait for curl");
    let check = checked.unwrap_or_else(|e| panic!("reading curl's stdout: {e}"));
    let (http_code, stderr) = split_stderr(&output.stderr);
    let streamed = Streamed {
        status: output.status,
        http_code,
        len: check.len,
        body: String::new(),
        stderr,
    };
    (streamed, check)
}

/// `curl -x http://PROXY -T - -X POST URL` with `len` pattern bytes on
/// stdin: curl does not know the length, so the body goes chunked, and it is
/// generated while curl sends it. The response body is kept (it is small).
pub fn curl_upload_pattern(proxy: SocketAddr, url: &str, len: u64, max_time: Duration) -> Streamed {
    let mut cmd = curl(proxy, max_time);
    cmd.arg("-T")
        .arg("-")
        .arg("-X")
        .arg("POST")
        .arg("-o")
        .arg("-")
        .arg(url)
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn curl");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || {
        // curl stops reading if the transfer fails; that shows in its exit
        // status and stderr, which the test checks.
        let copied = io::copy(&mut PatternReader::new(len), &mut stdin);
        drop(stdin.flush());
        copied
    });
    let output = child.wait_with_output().expect("wait for curl");
    if let Ok(Err(e)) = feeder.join() {
        eprintln!("testkit: curl took only part of its stdin: {e}");
    }
    let (http_code, stderr) = split_stderr(&output.stderr);
    Streamed {
        status: output.status,
        http_code,
        len: output.stdout.len() as u64,
        body: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    }
}

/// A curl command through `proxy` whose `-w` status line goes to stderr
/// (stdout carries the body).
fn curl(proxy: SocketAddr, max_time: Duration) -> Command {
    let mut cmd = Command::new(CURL.require());
    // -q first: ignore ~/.curlrc. An empty --noproxy overrides NO_PROXY.
    cmd.arg("-q")
        .arg("-sS")
        .arg("--max-time")
        .arg(max_time.as_secs().max(1).to_string())
        .arg("--connect-timeout")
        .arg("10")
        .arg("-x")
        .arg(format!("http://{proxy}"))
        .arg("--noproxy")
        .arg("")
        .arg("-w")
        .arg(format!("%{{stderr}}{CODE_PREFIX}%{{http_code}}\\n"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
    cmd
}

/// The HTTP status from our `-w` line, and stderr without that line.
fn split_stderr(stderr: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(stderr);
    let mut code = 0;
    let mut rest = String::new();
    for line in text.lines() {
        match line.strip_prefix(CODE_PREFIX) {
            Some(c) => code = c.trim().parse().unwrap_or(0),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    (code, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::sha256_hex;

    #[test]
    fn fill_pattern_matches_pattern_at_any_offset() {
        let whole = pattern(300_000);
        for (offset, len) in [(0, 10), (250, 251), (1, 200_000), (65_000, 70_000)] {
            let mut buf = vec![0u8; len];
            fill_pattern(offset as u64, &mut buf);
            assert_eq!(buf, whole[offset..offset + len], "offset {offset}");
        }
    }

    #[test]
    fn check_pattern_stream_finds_the_first_wrong_byte() {
        let mut data = pattern(300_000);
        let ok = check_pattern_stream(&data[..]).unwrap();
        assert!(ok.is_pattern_of_len(300_000));
        data[280_001] ^= 1;
        let bad = check_pattern_stream(&data[..]).unwrap();
        assert_eq!(bad.first_mismatch, Some(280_001));
        assert!(!bad.is_pattern_of_len(300_000));
    }

    #[test]
    fn pattern_reader_matches_pattern() {
        let mut got = Vec::new();
        let mut reader = PatternReader::new(200_003);
        let mut buf = [0u8; 7919];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, pattern(200_003));
        assert_eq!(pattern_sha256(200_003), sha256_hex(&got));
    }
}
