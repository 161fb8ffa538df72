//! Request-smuggling defences: each request head is checked as bytes before
//! hyper parses it, and refused with 400 when two HTTP parsers could read it
//! differently.
//!
//! hyper's HTTP/1 parser is lenient where a proxy should be strict: it
//! accepts bare-LF line ends, and it reads a request that has both
//! `Content-Length` and `Transfer-Encoding` by the latter without a word. A
//! front end and a back end that disagree on where a request ends is how
//! requests get smuggled (RFC 9112 §11.2), so the bridge refuses, before
//! anything is forwarded:
//! - a LF not preceded by CR anywhere in the head (RFC 9112 §2.2);
//! - obs-fold, a field line starting with SP or HTAB (§5.2);
//! - both `Content-Length` and `Transfer-Encoding` (§6.3);
//! - `Content-Length` values that differ or are not numbers (§6.3);
//! - `Transfer-Encoding` other than exactly `chunked` (§6.3: the bridge
//!   cannot undo other codings, so it must not guess where such a body
//!   ends), or any `Transfer-Encoding` in HTTP/1.0 (§6.1).
//!
//! # How
//! [`HeadCheck`] sits between the client socket and hyper. It holds each
//! head back until the blank line that ends it, checks it, and only then
//! hands it on. To know where the next head starts it follows the framing
//! the head declared: it counts `Content-Length` bytes, or walks the
//! chunk-size lines of a chunked body and counts the chunk data. Body bytes
//! are read straight into hyper's buffer, and one read never hands hyper
//! bytes from two parts (a head, a body), so hyper cannot see a head before
//! it is checked. The cost is one copy and one scan of each head; body bytes
//! are only counted.
//!
//! A refused head never reaches hyper. hyper reads a stand-in request
//! instead ([`STAND_IN`]) and the reason goes into the connection's
//! [`Verdict`]; the service takes it when hyper hands it the stand-in, and
//! answers 400 with `Connection: close`. Answering through hyper keeps one
//! writer on the socket, so a 400 cannot cut into the answer to an earlier
//! pipelined request. The verdict meets the right call: hyper calls the
//! service for a head before it reads again, and the stand-in comes in a
//! read of its own, so every earlier request's call has already been made.
//! After the stand-in, whatever the client sends is read and dropped.
//!
//! After a CONNECT head bytes pass unchecked: they belong to the tunnel. The
//! connection closes if the CONNECT is refused, so no later head goes
//! unchecked. A head larger than the header limit also passes unchecked,
//! for hyper to answer 431 and close.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper reads in place of a refused head: a whole request without a
/// body that asks for the connection to close.
pub(crate) const STAND_IN: &[u8] =
    b"GET / HTTP/1.1\r\nHost: gangway.invalid\r\nConnection: close\r\n\r\n";

/// How much is read from the client at a time while a head is gathered.
const HEAD_READ: usize = 4096;
/// After a refused head, at most this much is dropped per poll, so a client
/// that keeps sending cannot hold the connection's task.
const DISCARD_PER_POLL: usize = 64 * 1024;
/// A chunk size has at most 16 hex digits (64 bits).
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Why a request head was refused. The text is the 400 page's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    BareLf = 1,
    ObsFold,
    LengthAndEncoding,
    ConflictingLength,
    InvalidLength,
    NotChunked,
    EncodingInHttp10,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::BareLf,
        Refusal::ObsFold,
        Refusal::LengthAndEncoding,
        Refusal::ConflictingLength,
        Refusal::InvalidLength,
        Refusal::NotChunked,
        Refusal::EncodingInHttp10,
    ];
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::BareLf => {
                "a line of the request head ends in a bare LF; lines must end in CRLF (RFC 9112 §2.2)"
            }
            Refusal::ObsFold => {
                "a header line starts with whitespace (obsolete line folding, RFC 9112 §5.2)"
            }
            Refusal::LengthAndEncoding => {
                "the request has both Content-Length and Transfer-Encoding (RFC 9112 §6.3)"
            }
            Refusal::ConflictingLength => "the request has differing Content-Length values",
            Refusal::InvalidLength => "the request's Content-Length is not a number",
            Refusal::NotChunked => "the request's Transfer-Encoding is not exactly `chunked`",
            Refusal::EncodingInHttp10 => {
                "an HTTP/1.0 request cannot have a Transfer-Encoding (RFC 9112 §6.1)"
            }
        })
    }
}

/// The refusal of the head hyper is about to read as [`STAND_IN`], if any:
/// shared by a connection's [`HeadCheck`] and its service.
#[derive(Debug, Default)]
pub(crate) struct Verdict(AtomicU8);

impl Verdict {
    fn set(&self, refusal: Refusal) {
        self.0.store(refusal as u8, Relaxed);
    }

    /// Takes the refusal; call once per request hyper hands the service.
    pub(crate) fn take(&self) -> Option<Refusal> {
        if self.0.load(Relaxed) == 0 {
            return None;
        }
        let code = self.0.swap(0, Relaxed);
        Refusal::ALL.into_iter().find(|r| *r as u8 == code)
    }
}

/// The client socket as hyper reads it: heads checked, bodies counted.
#[derive(Debug)]
pub(crate) struct HeadCheck<T> {
    io: T,
    /// Bytes read from the client and not handed on yet, from `start`.
    pending: Vec<u8>,
    start: usize,
    phase: Phase,
    scan: HeadScan,
    /// Past this many bytes without its end, a head passes unchecked.
    limit: usize,
    verdict: Arc<Verdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Gathering a head; none of it is handed on yet.
    Head,
    /// Handing on a checked head: `left` bytes of it, then its body.
    HeadOut {
        left: usize,
        framing: Framing,
    },
    /// A `Content-Length` body with this many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Passing bytes unchecked: a tunnel, or a head too large to check.
    Unchecked,
    /// Handing on the stand-in for a refused head: this many bytes left.
    StandIn(usize),
    /// After a refused head: what the client sends is read and dropped.
    Discard,
    /// A chunked body that could not be followed: reads fail.
    Broken,
}

/// What follows a checked head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    Unchecked,
}

impl Framing {
    fn phase(self) -> Phase {
        match self {
            Framing::Length(0) => Phase::Head,
            Framing::Length(n) => Phase::Length(n),
            Framing::Chunked => Phase::Chunked(Chunked::SIZE),
            Framing::Unchecked => Phase::Unchecked,
        }
    }
}

impl<T> HeadCheck<T> {
    /// Wraps a client socket. Heads longer than `limit` bytes pass unchecked
    /// (hyper refuses them with 431 at the same limit).
    pub(crate) fn new(io: T, limit: usize, verdict: Arc<Verdict>) -> Self {
        HeadCheck {
            io,
            pending: Vec::new(),
            start: 0,
            phase: Phase::Head,
            scan: HeadScan::default(),
            limit,
            verdict,
        }
    }

    /// The socket back, with the bytes read from it but not handed on
    /// yet. For a tunnel: after the CONNECT head everything passes
    /// unchecked, so these are the client's first tunnel bytes, and they
    /// come after whatever hyper itself has buffered.
    pub(crate) fn into_parts(mut self) -> (T, Vec<u8>) {
        if self.start > 0 {
            self.pending.drain(..self.start);
        }
        (self.io, self.pending)
    }

    /// Marks `n` pending bytes as handed on.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.pending.len() {
            self.start = 0;
            if self.phase == Phase::Unchecked {
                // A tunnel may idle for hours: hold no buffer for it.
                self.pending = Vec::new();
            } else {
                self.pending.clear();
            }
        }
    }
}

impl<T: AsyncRead + Unpin> HeadCheck<T> {
    /// Reads more of a head into `pending`; `Ok(0)` at EOF.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.start > 0 {
            // The scan's offsets are relative to `start`, so they survive.
            self.pending.drain(..self.start);
            self.start = 0;
        }
        // Into the spare capacity, unzeroed: a keep-alive connection
        // comes here at least twice per request (once to find nothing).
        self.pending.reserve(HEAD_READ);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.pending)
    }

    /// Reads and drops what the client sends; ready only at EOF or error.
    fn discard(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        let mut dropped = 0;
        while dropped < DISCARD_PER_POLL {
            let mut buf = ReadBuf::new(&mut scratch);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            dropped += buf.filled().len();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadCheck<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.phase {
                Phase::Head => match this.scan.scan(&this.pending[this.start..]) {
                    Scan::Partial if this.pending.len() - this.start > this.limit => {
                        this.phase = Phase::Unchecked;
                    }
                    Scan::Partial => {
                        if ready!(this.fill(cx))? == 0 {
                            if this.start == this.pending.len() {
                                return Poll::Ready(Ok(()));
                            }
                            // Let hyper see the cut-off head and say so.
                            this.phase = Phase::Unchecked;
                        }
                    }
                    Scan::Done { len, framing } => {
                        this.scan = HeadScan::default();
                        this.phase = Phase::HeadOut { left: len, framing };
                    }
                    Scan::Refused(refusal) => {
                        this.verdict.set(refusal);
                        this.pending = Vec::new();
                        this.start = 0;
                        this.phase = Phase::StandIn(STAND_IN.len());
                    }
                },
                Phase::HeadOut { left, framing } => {
                    let n = left.min(out.remaining());
                    out.put_slice(&this.pending[this.start..this.start + n]);
                    this.phase = if n == left {
                        framing.phase()
                    } else {
                        Phase::HeadOut {
                            left: left - n,
                            framing,
                        }
                    };
                    this.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Phase::StandIn(left) => {
                    let from = STAND_IN.len() - left;
                    let n = left.min(out.remaining());
                    out.put_slice(&STAND_IN[from..from + n]);
                    this.phase = if n == left {
                        Phase::Discard
                    } else {
                        Phase::StandIn(left - n)
                    };
                    return Poll::Ready(Ok(()));
                }
                Phase::Discard => return this.discard(cx),
                Phase::Broken => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed chunked request body",
                    )))
                }
                Phase::Length(_) | Phase::Chunked(_) | Phase::Unchecked => {
                    if this.start < this.pending.len() {
                        let end = this.pending.len().min(this.start + out.remaining());
                        let k = walk(&mut this.phase, &this.pending[this.start..end]);
                        out.put_slice(&this.pending[this.start..this.start + k]);
                        this.consume(k);
                        if k > 0 {
                            return Poll::Ready(Ok(()));
                        }
                    } else {
                        // Straight into hyper's buffer; whatever lies past
                        // the body's end is taken back for the next head.
                        let before = out.filled().len();
                        ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
                        let read = &out.filled()[before..];
                        if read.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        let k = walk(&mut this.phase, read);
                        if k < read.len() {
                            this.pending.extend_from_slice(&read[k..]);
                            out.set_filled(before + k);
                        }
                        if k > 0 {
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadCheck<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Moves a body phase over `bytes`: returns how many of them belong to the
/// body. When the body ends there the phase becomes [`Phase::Head`]; when
/// its framing breaks, [`Phase::Broken`].
fn walk(phase: &mut Phase, bytes: &[u8]) -> usize {
    match phase {
        Phase::Length(left) => {
            let n = (*left).min(bytes.len() as u64);
            *left -= n;
            if *left == 0 {
                *phase = Phase::Head;
            }
            // `n` is at most `bytes.len()`, so it fits.
            n as usize
        }
        Phase::Chunked(chunked) => match chunked.walk(bytes) {
            Step::More(n) => n,
            Step::End(n) => {
                *phase = Phase::Head;
                n
            }
            Step::Broken(n) => {
                *phase = Phase::Broken;
                n
            }
        },
        Phase::Unchecked => bytes.len(),
        _ => 0,
    }
}

/// Where a chunked body (RFC 9112 §7.1) is: only the chunk-size lines and
/// the trailer section are looked at byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// In a chunk-size line: the size so far, its digit count, whether the
    /// digits ended (extensions follow), whether the last byte was CR.
    Size {
        size: u64,
        digits: u8,
        ended: bool,
        cr: bool,
    },
    /// In chunk data: this many bytes left.
    Data(u64),
    /// After chunk data, before its CRLF; `cr` once the CR is seen.
    DataEnd { cr: bool },
    /// In the trailer section: the current line's length so far, and
    /// whether the last byte was CR. An empty line ends the body.
    Trailer { len: usize, cr: bool },
}

enum Step {
    /// All bytes belong to the body, which goes on.
    More(usize),
    /// The body ends after this many bytes.
    End(usize),
    /// The framing breaks at this byte; the ones before it are the body's.
    Broken(usize),
}

impl Chunked {
    const SIZE: Chunked = Chunked::Size {
        size: 0,
        digits: 0,
        ended: false,
        cr: false,
    };

    fn walk(&mut self, bytes: &[u8]) -> Step {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunked::Data(left) = self {
                let n = (*left).min((bytes.len() - i) as u64);
                *left -= n;
                i += n as usize;
                if *left == 0 {
                    *self = Chunked::DataEnd { cr: false };
                }
                continue;
            }
            let b = bytes[i];
            let next = match *self {
                Chunked::Size {
                    size, digits, cr, ..
                } if cr => match b {
                    b'\n' if digits == 0 => None,
                    b'\n' if size == 0 => Some(Chunked::Trailer { len: 0, cr: false }),
                    b'\n' => Some(Chunked::Data(size)),
                    _ => None,
                },
                Chunked::Size {
                    size,
                    digits,
                    ended,
                    ..
                } => match b {
                    b'\r' => Some(Chunked::Size {
                        size,
                        digits,
                        ended,
                        cr: true,
                    }),
                    b'\n' => None,
                    _ => match (ended, (b as char).to_digit(16)) {
                        (false, Some(_)) if digits == MAX_CHUNK_SIZE_DIGITS => None,
                        (false, Some(v)) => Some(Chunked::Size {
                            size: size << 4 | u64::from(v),
                            digits: digits + 1,
                            ended,
                            cr: false,
                        }),
                        // Whitespace or an extension: not ours to judge.
                        _ => Some(Chunked::Size {
                            size,
                            digits,
                            ended: true,
                            cr: false,
                        }),
                    },
                },
                Chunked::DataEnd { cr: false } if b == b'\r' => Some(Chunked::DataEnd { cr: true }),
                Chunked::DataEnd { cr: true } if b == b'\n' => Some(Chunked::SIZE),
                Chunked::DataEnd { .. } => None,
                Chunked::Trailer { len: 0, cr: true } if b == b'\n' => return Step::End(i + 1),
                Chunked::Trailer { cr: true, .. } if b == b'\n' => {
                    Some(Chunked::Trailer { len: 0, cr: false })
                }
                Chunked::Trailer { cr: true, .. } => None,
                Chunked::Trailer { len, .. } => match b {
                    b'\r' => Some(Chunked::Trailer { len, cr: true }),
                    b'\n' => None,
                    _ => Some(Chunked::Trailer {
                        len: len + 1,
                        cr: false,
                    }),
                },
                Chunked::Data(_) => unreachable!("chunk data is counted above"),
            };
            match next {
                Some(state) => *self = state,
                None => return Step::Broken(i),
            }
            i += 1;
        }
        Step::More(i)
    }
}

/// The scan of the head being gathered, kept across reads so that no byte
/// is scanned twice. Offsets are relative to the head's first byte.
#[derive(Debug, Default)]
struct HeadScan {
    /// Bytes scanned so far.
    scanned: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    /// The request line was seen (empty lines before it are skipped, as
    /// RFC 9112 §2.2 allows and hyper does).
    started: bool,
    connect: bool,
    http10: bool,
    has_length: bool,
    length: Option<u64>,
    has_encoding: bool,
    /// Transfer codings listed, and whether any was not `chunked`.
    codings: usize,
    other_coding: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Partial,
    Done { len: usize, framing: Framing },
    Refused(Refusal),
}

impl HeadScan {
    /// Scans the head gathered so far (`head` starts where it starts and
    /// only grows between calls).
    fn scan(&mut self, head: &[u8]) -> Scan {
        while let Some(at) = head[self.scanned..].iter().position(|&b| b == b'\n') {
            let lf = self.scanned + at;
            self.scanned = lf + 1;
            if lf == 0 || head[lf - 1] != b'\r' {
                return Scan::Refused(Refusal::BareLf);
            }
            // CR is at lf - 1, and lf - 1 >= line_start (a LF there would
            // have failed the check above).
            let line = &head[self.line_start..lf - 1];
            self.line_start = lf + 1;
            if line.is_empty() {
                if self.started {
                    return self.finish(lf + 1);
                }
            } else if !self.started {
                self.started = true;
                self.request_line(line);
            } else if let Err(refusal) = self.field_line(line) {
                return Scan::Refused(refusal);
            }
        }
        Scan::Partial
    }

    fn request_line(&mut self, line: &[u8]) {
        let method = line.split(|&b| b == b' ').next().unwrap_or_default();
        let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
        self.connect = method == b"CONNECT";
        self.http10 = version == b"HTTP/1.0";
    }

    fn field_line(&mut self, line: &[u8]) -> Result<(), Refusal> {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(Refusal::ObsFold);
        }
        // A line without a colon is hyper's to refuse.
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Ok(());
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.has_length = true;
            for item in list(value) {
                let n = parse_length(item).ok_or(Refusal::InvalidLength)?;
                if self.length.is_some_and(|m| m != n) {
                    return Err(Refusal::ConflictingLength);
                }
                self.length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.has_encoding = true;
            for coding in list(value) {
                self.codings += 1;
                self.other_coding |= !coding.eq_ignore_ascii_case(b"chunked");
            }
        }
        Ok(())
    }

    fn finish(&self, len: usize) -> Scan {
        let refusal = if self.has_length && self.has_encoding {
            Some(Refusal::LengthAndEncoding)
        } else if self.has_length && self.length.is_none() {
            Some(Refusal::InvalidLength)
        } else if self.has_encoding && self.http10 {
            Some(Refusal::EncodingInHttp10)
        } else if self.has_encoding && (self.codings != 1 || self.other_coding) {
            Some(Refusal::NotChunked)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Scan::Refused(refusal);
        }
        let framing = if self.connect {
            Framing::Unchecked
        } else if self.has_encoding {
            Framing::Chunked
        } else {
            Framing::Length(self.length.unwrap_or(0))
        };
        Scan::Done { len, framing }
    }
}

/// The non-empty elements of a comma-separated field value (RFC 9110 §5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const LIMIT: usize = 8192;

    /// A client that sends `step` bytes at a time.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.step.min(self.data.len()).min(buf.remaining());
            buf.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }

    /// What hyper would read from `input`, each read as a separate piece,
    /// with the refusal the service would take at the end.
    async fn reads(input: &[u8], step: usize) -> (Vec<Vec<u8>>, Option<Refusal>) {
        let verdict = Arc::new(Verdict::default());
        let mut check = HeadCheck::new(Trickle { data: input, step }, LIMIT, verdict.clone());
        let mut pieces = Vec::new();
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match check.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => pieces.push(buf[..n].to_vec()),
            }
            if check.phase == Phase::Discard {
                break;
            }
        }
        (pieces, verdict.take())
    }

    async fn passed(input: &[u8]) -> Vec<u8> {
        for step in [1, 7, 64 * 1024] {
            let (pieces, refusal) = reads(input, step).await;
            assert_eq!(refusal, None, "step {step}");
            assert_eq!(pieces.concat(), input, "step {step}");
        }
        reads(input, 64 * 1024).await.0.concat()
    }

    async fn refused(input: &[u8]) -> (Vec<u8>, Refusal) {
        let mut seen = None;
        for step in [1, 5, 64 * 1024] {
            let (pieces, refusal) = reads(input, step).await;
            let refusal = refusal.unwrap_or_else(|| panic!("not refused (step {step})"));
            let all = pieces.concat();
            assert!(all.ends_with(STAND_IN), "step {step}: {all:?}");
            let before = all[..all.len() - STAND_IN.len()].to_vec();
            if let Some((b, r)) = &seen {
                assert_eq!((b, r), (&before, &refusal));
            }
            seen = Some((before, refusal));
        }
        seen.expect("at least one step")
    }

    const GET: &[u8] = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n";

    #[tokio::test]
    async fn well_formed_pipelines_pass_unchanged() {
        let input = [
            &b"\r\n"[..],
            GET,
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\ncontent-length: 3, 3\r\n\r\nabc",
            b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
            b"5;ext=1\r\nhe\nlo\r\n10 \r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n",
            GET,
        ]
        .concat();
        passed(&input).await;
    }

    #[tokio::test]
    async fn no_read_crosses_a_head_or_body_end() {
        let input = [
            GET,
            b"POST http://a/ HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
            GET,
        ]
        .concat();
        let (pieces, _) = reads(&input, input.len()).await;
        assert_eq!(pieces[0], GET);
        assert_eq!(pieces[2], b"hi");
        assert_eq!(pieces[4], b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(pieces[5], GET);
    }

    #[tokio::test]
    async fn bare_lf_anywhere_in_a_head_is_refused() {
        for head in [
            &b"GET http://a/ HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET http://a/ HTTP/1.1\r\nHost: a\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\n",
            b"\nGET http://a/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(refused(head).await, (vec![], Refusal::BareLf), "{head:?}");
        }
    }

    #[tokio::test]
    async fn a_bad_second_head_is_refused_after_the_first_request() {
        let first =
            b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let input = [&first[..], b"GET / HTTP/1.1\nHost: a\n\n"].concat();
        assert_eq!(refused(&input).await, (first.to_vec(), Refusal::BareLf));
    }

    #[tokio::test]
    async fn smuggling_heads_are_refused() {
        let cases: [(&[u8], Refusal); 9] = [
            (
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
                Refusal::LengthAndEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                Refusal::LengthAndEncoding,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                Refusal::ConflictingLength,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 4, 5\r\n\r\n", Refusal::ConflictingLength),
            (b"POST / HTTP/1.1\r\nContent-Length: -4\r\n\r\n", Refusal::InvalidLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", Refusal::ObsFold),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Refusal::NotChunked),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::NotChunked,
            ),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Refusal::EncodingInHttp10),
        ];
        for (head, why) in cases {
            assert_eq!(refused(head).await, (vec![], why), "{head:?}");
        }
    }

    #[tokio::test]
    async fn a_head_inside_a_body_is_not_a_head() {
        let input = [
            &b"POST http://a/ HTTP/1.1\r\nContent-Length: 25\r\n\r\n"[..],
            b"GET / HTTP/1.1\nX: 1\n\n\n\n\n",
            GET,
        ]
        .concat();
        passed(&input).await;
    }

    #[tokio::test]
    async fn a_tunnel_passes_unchecked() {
        let input = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01\n\n\n";
        passed(input).await;
    }

    #[tokio::test]
    async fn into_parts_gives_back_what_was_not_handed_on() {
        let head = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";
        let input = [&head[..], b"\x16\x03\x01tunnel"].concat();
        let verdict = Arc::new(Verdict::default());
        let mut check = HeadCheck::new(&input[..], LIMIT, verdict);
        let mut buf = vec![0u8; 1024];
        let n = check.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], head, "the head is handed on alone");
        let (rest_of_io, unread) = check.into_parts();
        assert_eq!(unread, b"\x16\x03\x01tunnel");
        assert!(rest_of_io.is_empty());
    }

    #[tokio::test]
    async fn broken_chunk_framing_fails_the_read() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let verdict = Arc::new(Verdict::default());
        let mut check = HeadCheck::new(&input[..], LIMIT, verdict);
        let mut all = Vec::new();
        assert!(check.read_to_end(&mut all).await.is_err());
    }

    #[tokio::test]
    async fn an_oversized_head_passes_for_hyper_to_refuse() {
        let mut input = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        input.extend(vec![b'a'; 3 * LIMIT]);
        input.extend_from_slice(b"\n\r\n");
        passed(&input).await;
    }

    #[test]
    fn every_refusal_survives_the_verdict() {
        let verdict = Verdict::default();
        for refusal in Refusal::ALL {
            verdict.set(refusal);
            assert_eq!(verdict.take(), Some(refusal));
            assert_eq!(verdict.take(), None);
        }
    }
}
