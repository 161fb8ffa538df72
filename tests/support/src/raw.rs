//! A raw TCP client, for what curl will not send: garbage, oversized heads,
//! request heads that never end, hand-written CONNECTs whose error body the
//! test wants to read.
//!
//! Every read is bounded by a timeout (10 s unless changed), and every loop by
//! a deadline, so a bridge that neither answers nor closes fails the test
//! instead of hanging it.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default limit for connecting and for each read or write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response head accepted before giving up.
const MAX_HEAD: usize = 256 * 1024;

/// How a connection ended while we waited on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The peer closed it cleanly (FIN).
    Eof,
    /// The peer reset it (RST), or it broke otherwise.
    Reset,
    /// Still open when the wait ran out.
    StillOpen,
}

impl Closed {
    /// Whether the peer ended the connection one way or another.
    pub fn is_closed(self) -> bool {
        self != Closed::StillOpen
    }
}

/// A parsed response status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// e.g. `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// Parses a head (status line and header lines, without the blank line).
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.split("\r\n");
        let status_line = lines.next()?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next()?.to_owned();
        if !version.starts_with("HTTP/") {
            return None;
        }
        let status = parts.next()?.parse().ok()?;
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.split_once(':')?;
                Some((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect();
        Some(ResponseHead {
            version,
            status,
            reason,
            headers,
        })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if present and numeric.
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }

    /// Whether the body is sent chunked.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    }
}

/// One raw client connection.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read past the part already handed out.
    buf: Vec<u8>,
    timeout: Duration,
}

impl RawConn {
    /// Connects to `addr` (10 s limit).
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, DEFAULT_TIMEOUT)?;
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        stream.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes the limit for each read and for [`RawConn::read_head`].
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
    }

    /// Sends all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends as much of `bytes` as the peer takes, stopping at the first
    /// error (a server may answer and close before reading everything).
    /// Returns how many bytes went out.
    pub fn send_lossy(&mut self, bytes: &[u8]) -> usize {
        let mut sent = 0;
        for chunk in bytes.chunks(16 * 1024) {
            match self.stream.write_all(chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        sent
    }

    /// Half-closes our side (no more requests).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Reads one response head. Errors with `UnexpectedEof` (carrying what
    /// did arrive) if the peer closes first, `TimedOut` if it stays silent.
    pub fn read_head(&mut self) -> io::Result<ResponseHead> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return ResponseHead::parse(&text).ok_or_else(|| {
                    io::Error::new(
                        ErrorKind::InvalidData,
                        format!("not an HTTP response head: {text:?}"),
                    )
                });
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "response head over 256 KiB",
                ));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "no complete response head in time",
                ));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Reads the body that follows `head`: by `Content-Length`, chunked, or
    /// (with neither) until the peer closes. Use only for responses that
    /// have a body (not HEAD, 204, 304, or a 2xx answer to CONNECT).
    pub fn read_body(&mut self, head: &ResponseHead) -> io::Result<Vec<u8>> {
        if head.is_chunked() {
            self.read_chunked()
        } else if let Some(len) = head.content_length() {
            self.read_exact_bytes(len)
        } else {
            let mut body = std::mem::take(&mut self.buf);
            self.stream.read_to_end(&mut body)?;
            Ok(body)
        }
    }

    /// Reads exactly `len` bytes.
    pub fn read_exact_bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < len {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("closed after {} of {len} body bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// Waits up to `timeout` for the peer to close, collecting whatever it
    /// sends meanwhile (an error response, typically).
    pub fn wait_closed(&mut self, timeout: Duration) -> (Closed, Vec<u8>) {
        let deadline = Instant::now() + timeout;
        let mut received = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 16 * 1024];
        let outcome = loop {
            let now = Instant::now();
            if now >= deadline {
                break Closed::StillOpen;
            }
            let slice = (deadline - now).max(Duration::from_millis(1));
            self.stream
                .set_read_timeout(Some(slice))
                .expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => break Closed::Eof,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Closed::Reset,
            }
        };
        self.stream
            .set_read_timeout(Some(self.timeout))
            .expect("restore read timeout");
        (outcome, received)
    }

    /// The socket itself, for anything else.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads more bytes into `buf`; returns how many (0 at EOF).
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one line ending in CRLF (without it).
    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::new(ErrorKind::InvalidData, "line over 256 KiB"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed inside a chunked body",
                ));
            }
        }
    }

    /// Decodes a chunked body (RFC 9112 §7.1), discarding trailers.
    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = self.read_line()?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("bad chunk size line {size_line:?}"),
                )
            })?;
            if size == 0 {
                // Trailer section: lines until an empty one.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_bytes(size)?);
            let crlf = self.read_line()?;
            if !crlf.is_empty() {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
        }
    }
}

/// Connects, sends `request`, and reads the response head and body.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<(ResponseHead, Vec<u8>)> {
    let mut conn = RawConn::connect(addr)?;
    conn.send(request)?;
    let head = conn.read_head()?;
    let body = conn.read_body(&head)?;
    Ok((head, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let head = ResponseHead::parse(
            "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 12\r\nProxy-Authenticate: Basic realm=\"x\"",
        )
        .unwrap();
        assert_eq!(head.status, 407);
        assert_eq!(head.reason, "Proxy Authentication Required");
        assert_eq!(head.content_length(), Some(12));
        assert_eq!(head.header("proxy-authenticate"), Some("Basic realm=\"x\""));
        assert!(!head.is_chunked());
    }

    #[test]
    fn rejects_a_non_http_head() {
        assert_eq!(ResponseHead::parse("garbage"), None);
    }
}
