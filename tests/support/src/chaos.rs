//! A byte-level TCP relay that breaks upstream connections on purpose.
//!
//! [`Chaos`] sits between the bridge and a real upstream proxy (a Squid or
//! the NTLM peer, which keep doing the authenticating): it forwards bytes
//! unchanged both ways, but for a seeded share of the connections it
//! accepts it plays an upstream that gives up on a keep-alive connection
//! after `N` responses. What it does then is the connection's [`Cut`]:
//!
//! - [`Cut::BeforeRequest`]: the first byte of request `N + 1` arrives and
//!   the relay closes both sides without forwarding any of it: the race in
//!   which an upstream closes an idle connection just as the bridge reuses
//!   it. The upstream never sees that request.
//! - [`Cut::AfterRequest`]: request `N + 1` is forwarded whole, the relay
//!   waits (bounded) for the upstream to start answering, then closes both
//!   sides without relaying a byte of the answer: an upstream that died
//!   while working on a request. The upstream *did* see that request.
//!
//! Requests are counted in the client-to-upstream direction only: a new
//! request head starts once the previous request's body (by
//! `Content-Length`) has gone through, and since HTTP/1.1 clients such as
//! the bridge do not pipeline, `N` requests started means `N` responses
//! finished. After a `CONNECT` head, or a request framed some other way
//! (chunked, unparsable), the connection is relayed as opaque bytes and
//! never cut.
//!
//! Decisions are deterministic: the k-th accepted connection's fate comes
//! from a splitmix64 generator seeded with `(seed, k)`, so a failing run
//! can be replayed with the same seed (accept order under concurrency is
//! the only thing left to chance).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::ports::LOOPBACK;
use crate::runtime::{server_runtime, SHUTDOWN_GRACE};

/// A request head larger than this is not parsed: the connection turns opaque.
const MAX_HEAD: usize = 64 * 1024;
/// Relay buffer per read.
const CHUNK: usize = 16 * 1024;
/// How long an [`Cut::AfterRequest`] cut waits for the upstream's answer
/// to begin before closing anyway.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What a doomed connection does once its `N` responses are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close when request `N + 1` starts to arrive, forwarding none of it.
    BeforeRequest,
    /// Forward request `N + 1`, then close without relaying its answer.
    AfterRequest,
}

/// Which connections the relay breaks, and how.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seeds the per-connection decisions.
    pub seed: u64,
    /// Share of connections that are doomed, 0.0 to 1.0.
    pub share: f64,
    /// A doomed connection serves between `after.0` and `after.1`
    /// responses (inclusive, at least 1) before its cut.
    pub after: (u32, u32),
    /// Share of doomed connections cut with [`Cut::AfterRequest`]; the rest
    /// get [`Cut::BeforeRequest`].
    pub after_request_share: f64,
}

impl ChaosConfig {
    /// Dooms `share` of the connections, each after 1 to 4 responses,
    /// cutting half of them before and half after the next request.
    pub fn new(seed: u64, share: f64) -> Self {
        ChaosConfig {
            seed,
            share,
            after: (1, 4),
            after_request_share: 0.5,
        }
    }

    /// Only [`Cut::BeforeRequest`] (`false`) or only
    /// [`Cut::AfterRequest`] (`true`).
    pub fn only(mut self, after_request: bool) -> Self {
        self.after_request_share = if after_request { 1.0 } else { 0.0 };
        self
    }

    /// The fate of the `index`-th accepted connection (0-based): `None`
    /// when it is left alone.
    pub fn plan(&self, index: u64) -> Option<(u32, Cut)> {
        let mut rng = SplitMix64::new(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if rng.unit() >= self.share {
            return None;
        }
        let (lo, hi) = (self.after.0.max(1), self.after.1.max(self.after.0.max(1)));
        let n = lo + (rng.next() % u64::from(hi - lo + 1)) as u32;
        let cut = if rng.unit() < self.after_request_share {
            Cut::AfterRequest
        } else {
            Cut::BeforeRequest
        };
        Some((n, cut))
    }
}

/// What the relay did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections that were cut before a request reached the upstream.
    pub cut_before: u64,
    /// Connections that were cut after a request reached the upstream.
    pub cut_after: u64,
    /// Request heads forwarded to the upstream.
    pub requests: u64,
}

impl ChaosStats {
    /// Connections cut either way.
    pub fn cuts(&self) -> u64 {
        self.cut_before + self.cut_after
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    cut_before: AtomicU64,
    cut_after: AtomicU64,
    requests: AtomicU64,
}

/// A running chaos relay. Dropping it closes every connection it relays.
pub struct Chaos {
    addr: SocketAddr,
    counters: Arc<Counters>,
    runtime: Option<Runtime>,
}

impl Chaos {
    /// Starts a relay on a free loopback port in front of `upstream`.
    pub fn start(upstream: SocketAddr, config: ChaosConfig) -> Self {
        let runtime = server_runtime("chaos");
        let listener = runtime
            .block_on(TcpListener::bind((LOOPBACK, 0)))
            .expect("bind the chaos relay on 127.0.0.1:0");
        let addr = listener.local_addr().expect("chaos relay local address");
        let counters = Arc::new(Counters::default());
        runtime.spawn(accept_loop(listener, upstream, config, counters.clone()));
        Chaos {
            addr,
            counters,
            runtime: Some(runtime),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, to give the bridge as its upstream.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters now.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.counters;
        ChaosStats {
            connections: c.connections.load(Ordering::SeqCst),
            cut_before: c.cut_before.load(Ordering::SeqCst),
            cut_after: c.cut_after.load(Ordering::SeqCst),
            requests: c.requests.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    config: ChaosConfig,
    counters: Arc<Counters>,
) {
    let mut index = 0u64;
    loop {
        let client = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let plan = config.plan(index);
        index += 1;
        counters.connections.fetch_add(1, Ordering::SeqCst);
        let counters = counters.clone();
        tokio::spawn(async move {
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await;
            if let Ok(Ok(up)) = connected {
                relay(client, up, plan, &counters).await;
            }
            // Otherwise dropping `client` closes it: the bridge sees the
            // upstream as down, which is what it is.
        });
    }
}

/// How the client-to-upstream direction ended.
enum Ended {
    /// The client closed (or a socket broke): relay the rest of the answer.
    Closed,
    /// This connection's cut.
    Cut(Cut),
}

async fn relay(client: TcpStream, up: TcpStream, plan: Option<(u32, Cut)>, counters: &Counters) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let ended = {
        let upward = forward_requests(&mut client_r, &mut up_w, plan, counters);
        let downward = tokio::io::copy(&mut up_r, &mut client_w);
        tokio::select! {
            ended = upward => ended,
            // The upstream closed (or broke): nothing more to relay.
            _ = downward => return,
        }
    };
    match ended {
        Ended::Closed => {
            // The client is done sending; let the answer in flight finish.
            let _closing = up_w.shutdown().await;
            let _bounded =
                tokio::time::timeout(ANSWER_WAIT, tokio::io::copy(&mut up_r, &mut client_w)).await;
        }
        Ended::Cut(Cut::BeforeRequest) => {
            counters.cut_before.fetch_add(1, Ordering::SeqCst);
        }
        Ended::Cut(Cut::AfterRequest) => {
            counters.cut_after.fetch_add(1, Ordering::SeqCst);
            // Close towards the bridge first, then make sure the upstream
            // got far enough to answer (so it did act on the request).
            drop(client_w);
            drop(client_r);
            let mut sink = [0u8; 1];
            let _answer_began = tokio::time::timeout(ANSWER_WAIT, up_r.read(&mut sink)).await;
        }
    }
    // Dropping the halves closes both sockets.
}

/// Where the client-to-upstream parser stands.
enum State {
    /// Between requests, or inside a head (`started`: its first byte came).
    Head { started: bool },
    /// Inside a body with this many bytes left.
    Body(u64),
    /// Not HTTP we follow any more: bytes pass as they are.
    Opaque,
}

/// Relays requests upward, counting them, until the client closes or the
/// plan says to cut.
async fn forward_requests(
    client: &mut OwnedReadHalf,
    up: &mut OwnedWriteHalf,
    plan: Option<(u32, Cut)>,
    counters: &Counters,
) -> Ended {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut state = State::Head { started: false };
    let mut done: u32 = 0;
    loop {
        // Handle what is buffered; `None` means: read more.
        loop {
            match &mut state {
                State::Opaque | State::Body(_) | State::Head { .. } if pending.is_empty() => break,
                State::Opaque => {
                    if up.write_all(&pending).await.is_err() {
                        return Ended::Closed;
                    }
                    pending.clear();
                }
                State::Head { started } => {
                    if !*started {
                        if plan == Some((done, Cut::BeforeRequest)) {
                            return Ended::Cut(Cut::BeforeRequest);
                        }
                        *started = true;
                    }
                    let Some(end) = find(&pending, b"\r\n\r\n") else {
                        if pending.len() > MAX_HEAD {
                            state = State::Opaque;
                            continue;
                        }
                        break;
                    };
                    let head: Vec<u8> = pending.drain(..end + 4).collect();
                    if up.write_all(&head).await.is_err() {
                        return Ended::Closed;
                    }
                    counters.requests.fetch_add(1, Ordering::SeqCst);
                    state = match framing(&head) {
                        Framing::Length(0) => State::Body(0),
                        Framing::Length(n) => State::Body(n),
                        Framing::Opaque => State::Opaque,
                    };
                    if let State::Body(0) = state {
                        done += 1;
                        state = State::Head { started: false };
                        if plan == Some((done - 1, Cut::AfterRequest)) {
                            return Ended::Cut(Cut::AfterRequest);
                        }
                    }
                }
                State::Body(left) => {
                    let take = (*left).min(pending.len() as u64) as usize;
                    if up.write_all(&pending[..take]).await.is_err() {
                        return Ended::Closed;
                    }
                    pending.drain(..take);
                    *left -= take as u64;
                    if *left == 0 {
                        done += 1;
                        state = State::Head { started: false };
                        if plan == Some((done - 1, Cut::AfterRequest)) {
                            return Ended::Cut(Cut::AfterRequest);
                        }
                    }
                }
            }
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return Ended::Closed,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// How a request's body is framed, as far as the relay follows it.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Opaque,
}

fn framing(head: &[u8]) -> Framing {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let method = lines
        .next()
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default();
    if method.eq_ignore_ascii_case("CONNECT") {
        return Framing::Opaque;
    }
    let mut length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Framing::Opaque;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse() {
                Ok(n) => length = n,
                Err(_) => return Framing::Opaque,
            }
        }
    }
    Framing::Length(length)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// splitmix64 (Steele, Lea, Flood 2014): small, seedable, good enough to
/// spread connection fates.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_and_near_the_share() {
        let config = ChaosConfig::new(7, 0.3);
        let plans: Vec<_> = (0..1000).map(|i| config.plan(i)).collect();
        let again: Vec<_> = (0..1000).map(|i| config.plan(i)).collect();
        assert_eq!(plans, again);
        let doomed = plans.iter().filter(|p| p.is_some()).count();
        assert!((230..370).contains(&doomed), "{doomed} of 1000 doomed");
        assert!(plans.iter().flatten().all(|(n, _)| (1..=4).contains(n)));
        let after = plans
            .iter()
            .flatten()
            .filter(|(_, c)| *c == Cut::AfterRequest)
            .count();
        assert!(after > doomed / 4 && after < doomed * 3 / 4);
    }

    #[test]
    fn reads_request_framing() {
        assert_eq!(
            framing(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Framing::Length(0)
        );
        assert_eq!(
            framing(b"POST http://a/ HTTP/1.1\r\ncontent-length: 12\r\n\r\n"),
            Framing::Length(12)
        );
        assert_eq!(
            framing(b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Framing::Opaque
        );
        assert_eq!(
            framing(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Framing::Opaque
        );
    }
}
