//! Connection events: one per request and two per tunnel (opened, closed),
//! broadcast to whoever listens (the app's log window) and logged through
//! tracing. An event never carries a password, a `Proxy-Authorization`
//! value or an auth token: it is built from fields the engine chooses, not
//! from headers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::stats::Stats;

/// How many events a slow subscriber may fall behind before it starts
/// losing them (it is told how many, through `RecvError::Lagged`). The
/// engine never waits for a subscriber.
pub const EVENT_BUFFER: usize = 4096;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A tunnel was established and is carrying bytes.
    Open,
    /// A request finished, or a tunnel closed.
    Done,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Request,
    Tunnel,
    /// The bridge's own status page or PAC file.
    Local,
}

/// How the upstream authentication went for this request.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuthUse {
    /// `Basic`, `Digest`, `NTLM`.
    pub scheme: String,
    /// True when a handshake (a 407 round trip) happened for this request;
    /// false when credentials went up front or a pooled authenticated
    /// connection was reused.
    pub handshake: bool,
    /// True when the request rode a pooled, already-authenticated connection.
    pub reused: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConnectionEvent {
    pub id: u64,
    pub phase: Phase,
    pub kind: Kind,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub client: SocketAddr,
    pub method: String,
    /// The URL, or host:port for tunnels.
    pub target: String,
    /// `direct`, or the upstream's host:port.
    pub route: String,
    pub auth: Option<AuthUse>,
    pub status: Option<u16>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    /// Time to connect to the upstream or origin, when a new connection was made.
    pub connect_ms: Option<u64>,
    /// Time spent in authentication round trips.
    pub auth_ms: Option<u64>,
    /// Time until the response head arrived.
    pub first_byte_ms: Option<u64>,
    pub error: Option<String>,
    /// The client's request headers, with credentials masked. Captured only
    /// while detail is switched on ([`EventSink::set_detail`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers: Vec<(String, String)>,
    /// The response headers sent to the client, credentials masked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
}

impl ConnectionEvent {
    /// Whether this finished request or tunnel counts as an error: a
    /// failure in words, or a 5xx. The error counters and the log window
    /// share this one rule.
    pub fn is_error(&self) -> bool {
        self.phase == Phase::Done && (self.error.is_some() || self.status.is_some_and(|s| s >= 500))
    }
}

/// Where events go: a broadcast channel and the log.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: broadcast::Sender<Arc<ConnectionEvent>>,
    next_id: Arc<AtomicU64>,
    stats: Arc<Stats>,
    detail: Arc<AtomicBool>,
}

impl EventSink {
    pub fn new(stats: Arc<Stats>) -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        EventSink {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
            detail: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether events carry (masked) headers. Off by default: copying
    /// headers costs time on every request, worth it only while someone
    /// is looking (the app's connection log window).
    pub fn set_detail(&self, on: bool) {
        self.detail.store(on, Relaxed);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ConnectionEvent>> {
        self.tx.subscribe()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Starts recording one request or tunnel.
    pub fn start(&self, kind: Kind, client: SocketAddr, method: &str, target: String) -> Recorder {
        Recorder {
            sink: self.clone(),
            event: Some(ConnectionEvent {
                id: self.next_id.fetch_add(1, Relaxed),
                phase: Phase::Done,
                kind,
                started_ms: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                client,
                method: method.to_owned(),
                target,
                route: "direct".to_owned(),
                auth: None,
                status: None,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
                connect_ms: None,
                auth_ms: None,
                first_byte_ms: None,
                error: None,
                request_headers: Vec::new(),
                response_headers: Vec::new(),
            }),
            detail: self.detail.load(Relaxed),
            started: Instant::now(),
            up: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicU64::new(0)),
        }
    }

    fn emit(&self, event: ConnectionEvent) {
        log_event(&event);
        if event.phase == Phase::Done {
            self.stats.bytes_up.fetch_add(event.bytes_up, Relaxed);
            self.stats.bytes_down.fetch_add(event.bytes_down, Relaxed);
            if let Some(err) = &event.error {
                self.stats.record_error(err);
            } else if event.status.is_some_and(|s| s >= 500) {
                self.stats.record_error(&format!(
                    "{} {}: status {}",
                    event.method,
                    event.target,
                    event.status.unwrap_or(0)
                ));
            }
        }
        // No receivers is normal (the CLI has none): not an error.
        let _unheard = self.tx.send(Arc::new(event));
    }
}

fn log_event(e: &ConnectionEvent) {
    let status = e
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    let auth = match &e.auth {
        None => "-".to_owned(),
        Some(a) if a.reused => format!("{}(pooled)", a.scheme),
        Some(a) if a.handshake => format!("{}(handshake)", a.scheme),
        Some(a) => a.scheme.clone(),
    };
    let phase = match e.phase {
        Phase::Open => "open",
        Phase::Done => "done",
    };
    match &e.error {
        Some(err) => tracing::warn!(
            target: "gangway::conn",
            "#{} {phase} {} {} {} via {} auth={auth} status={status} up={} down={} {}ms error: {err}",
            e.id, e.client, e.method, e.target, e.route, e.bytes_up, e.bytes_down, e.duration_ms
        ),
        None => tracing::info!(
            target: "gangway::conn",
            "#{} {phase} {} {} {} via {} auth={auth} status={status} up={} down={} {}ms",
            e.id, e.client, e.method, e.target, e.route, e.bytes_up, e.bytes_down, e.duration_ms
        ),
    }
}

/// Collects one event's fields as a request moves along, and emits the
/// event exactly once: on [`Recorder::finish`], or when dropped (a client
/// that vanished mid-response still leaves a record).
#[derive(Debug)]
pub struct Recorder {
    sink: EventSink,
    event: Option<ConnectionEvent>,
    detail: bool,
    started: Instant,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Recorder {
    fn with(&mut self, f: impl FnOnce(&mut ConnectionEvent)) {
        if let Some(e) = self.event.as_mut() {
            f(e);
        }
    }

    pub fn id(&self) -> u64 {
        self.event.as_ref().map(|e| e.id).unwrap_or(0)
    }

    pub fn set_route(&mut self, route: &str) {
        self.with(|e| route.clone_into(&mut e.route));
    }

    pub fn set_auth(&mut self, auth: Option<AuthUse>) {
        self.with(|e| e.auth = auth);
    }

    pub fn set_status(&mut self, status: u16) {
        self.with(|e| e.status = Some(status));
    }

    /// Records an error in words; the first one wins.
    pub fn set_error(&mut self, error: impl Into<String>) {
        let error = error.into();
        self.with(|e| {
            if e.error.is_none() {
                e.error = Some(error);
            }
        });
    }

    pub fn has_error(&self) -> bool {
        self.event.as_ref().is_some_and(|e| e.error.is_some())
    }

    pub fn set_connect_time(&mut self, d: Duration) {
        self.with(|e| e.connect_ms = Some(d.as_millis() as u64));
    }

    pub fn set_auth_time(&mut self, d: Duration) {
        self.with(|e| e.auth_ms = Some(d.as_millis() as u64));
    }

    /// Keeps a masked copy of the request headers when detail is on.
    pub fn set_request_headers(&mut self, headers: &http::HeaderMap) {
        if self.detail {
            let copy = masked(headers);
            self.with(|e| e.request_headers = copy);
        }
    }

    /// Keeps a masked copy of the response headers when detail is on.
    pub fn set_response_headers(&mut self, headers: &http::HeaderMap) {
        if self.detail {
            let copy = masked(headers);
            self.with(|e| e.response_headers = copy);
        }
    }

    /// Marks the response head's arrival.
    pub fn mark_first_byte(&mut self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.with(|e| e.first_byte_ms = Some(ms));
    }

    /// Counters the relays add to as bytes flow.
    pub fn counters(&self) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
        (self.up.clone(), self.down.clone())
    }

    /// Emits an `Open` event for a tunnel that is now carrying bytes.
    pub fn opened(&mut self) {
        if let Some(e) = self.event.as_ref() {
            let mut open = e.clone();
            open.phase = Phase::Open;
            open.duration_ms = self.started.elapsed().as_millis() as u64;
            self.sink.emit(open);
        }
    }

    pub fn finish(mut self) {
        self.emit_done();
    }

    fn emit_done(&mut self) {
        if let Some(mut e) = self.event.take() {
            e.bytes_up = self.up.load(Relaxed);
            e.bytes_down = self.down.load(Relaxed);
            e.duration_ms = self.started.elapsed().as_millis() as u64;
            self.sink.emit(e);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.emit_done();
    }
}

/// Headers as (name, value) text with every credential masked: the
/// scheme of an `Authorization`/`Proxy-Authorization` stays visible (it
/// tells what was tried), its value never; challenges keep their scheme and
/// drop tokens; cookies are masked whole.
pub fn masked(headers: &http::HeaderMap) -> Vec<(String, String)> {
    use http::header;
    headers
        .iter()
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let shown = if name == header::AUTHORIZATION
                || name == header::PROXY_AUTHORIZATION
                || name == header::PROXY_AUTHENTICATE
                || name == header::WWW_AUTHENTICATE
            {
                match text.split_once(' ') {
                    Some((scheme, rest)) if !rest.trim().is_empty() => format!("{scheme} ****"),
                    _ if name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION => {
                        "****".to_owned()
                    }
                    _ => text.into_owned(),
                }
            } else if name == header::COOKIE || name == header::SET_COOKIE {
                "****".to_owned()
            } else {
                text.into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_event_per_recorder_with_counted_bytes() {
        let sink = EventSink::new(Arc::new(Stats::default()));
        let mut rx = sink.subscribe();
        let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut rec = sink.start(Kind::Request, client, "GET", "http://a/".into());
        rec.set_status(200);
        let (up, down) = rec.counters();
        up.fetch_add(3, Relaxed);
        down.fetch_add(5, Relaxed);
        drop(rec);
        let e = rx.recv().await.expect("event");
        assert_eq!((e.status, e.bytes_up, e.bytes_down), (Some(200), 3, 5));
        assert!(rx.try_recv().is_err(), "exactly one event");
        assert_eq!(sink.stats().snapshot().bytes_down, 5);
    }

    #[test]
    fn credentials_are_masked() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "proxy-authorization",
            "Basic YWxpY2U6c2VjcmV0".parse().expect("v"),
        );
        h.insert("authorization", "Bearer abc.def".parse().expect("v"));
        h.insert(
            "proxy-authenticate",
            "NTLM TlRMTVNTUAACAAAA".parse().expect("v"),
        );
        h.insert("cookie", "session=xyz".parse().expect("v"));
        h.insert("accept", "*/*".parse().expect("v"));
        let m = masked(&h);
        let text = format!("{m:?}");
        for secret in ["YWxpY2U6c2VjcmV0", "abc.def", "TlRMTVNTUAACAAAA", "xyz"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(m.contains(&("proxy-authorization".into(), "Basic ****".into())));
        assert!(m.contains(&("accept".into(), "*/*".into())));
    }

    #[tokio::test]
    async fn headers_only_with_detail() {
        let sink = EventSink::new(Arc::new(Stats::default()));
        let mut rx = sink.subscribe();
        let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut h = http::HeaderMap::new();
        h.insert("accept", "*/*".parse().expect("v"));
        let mut rec = sink.start(Kind::Request, client, "GET", "http://a/".into());
        rec.set_request_headers(&h);
        drop(rec);
        assert!(rx.recv().await.expect("event").request_headers.is_empty());
        sink.set_detail(true);
        let mut rec = sink.start(Kind::Request, client, "GET", "http://a/".into());
        rec.set_request_headers(&h);
        drop(rec);
        assert_eq!(rx.recv().await.expect("event").request_headers.len(), 1);
    }
}
