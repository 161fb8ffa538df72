//! Sending one request to the next hop. For an upstream that wants
//! authentication this is the one 407 loop: pick a leg from the auth state
//! machine, send it, let the response decide. NTLM legs stay on their
//! connection; the request body is sent only on a leg that can complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::auth::{Attempt, AuthState, Leg, Verdict};
use super::connect;
use super::leg_body::{Gate, LegBody, UploadClock};
use super::pool::{Pool, PooledConn};
use super::Link;
use crate::body::{self, ReqBody};
use crate::error::ProxyError;
use crate::events::AuthUse;
use crate::settings::Timeouts;

/// Legs one request may take: probe, Type 1, Type 3, a stale retry and a
/// fresh connection leave room; more means the upstream is looping.
const MAX_LEGS: usize = 6;
/// A 407 body larger than this is not drained: the connection is dropped.
const MAX_DRAIN: usize = 256 * 1024;
/// Request bodies up to this size are held so they can be re-sent when the
/// upstream asks to authenticate (or a pooled connection turns out dead).
pub const REPLAY_LIMIT: u64 = 64 * 1024;
/// How long a request waits for one of an authenticating upstream's
/// connections to come free before it opens one beyond the pool size.
/// Short requests free theirs within milliseconds, so in practice the
/// handshake count stays at the pool size; the bound only matters when
/// every connection is held by a slow download or a long poll over plain
/// HTTP (tunnels give theirs back as soon as they are established).
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// How long a pooled connection may take to report ready before it is
/// treated as dead.
const READY_WAIT: Duration = Duration::from_millis(500);

/// A request body as the exchange sees it.
pub enum Payload {
    None,
    /// Small enough to keep: can be sent on any leg, any number of times.
    Buffered(Bytes),
    /// Streams through once. `None` after it was sent.
    Stream(Option<ReqBody>),
}

impl Payload {
    fn streams(&self) -> bool {
        matches!(self, Payload::Stream(_))
    }

    fn replayable(&self) -> bool {
        !self.streams()
    }

    fn take(&mut self) -> Option<ReqBody> {
        match self {
            Payload::None => Some(body::empty()),
            Payload::Buffered(b) => Some(body::full(b.clone())),
            Payload::Stream(s) => s.take(),
        }
    }

    fn has_body(&self) -> bool {
        !matches!(self, Payload::None)
    }
}

/// The next hop's response, and the connection to give back to the pool
/// once its body has been read.
pub struct Exchange {
    pub response: Response<Incoming>,
    pub conn: PooledConn,
    pub auth: Option<AuthUse>,
    pub connect_time: Option<Duration>,
    pub auth_time: Option<Duration>,
}

impl Exchange {
    /// Puts what the exchange learned on the request's event (response
    /// head arrival, connect and auth timings, auth use) and counts a
    /// handshake when one happened.
    pub fn record(&self, rec: &mut crate::events::Recorder, stats: &crate::stats::Stats) {
        rec.mark_first_byte();
        if let Some(t) = self.connect_time {
            rec.set_connect_time(t);
        }
        if let Some(t) = self.auth_time {
            rec.set_auth_time(t);
            stats
                .handshakes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        rec.set_auth(self.auth.clone());
    }
}

#[derive(Debug)]
pub struct Connector {
    pub pool: Pool,
}

impl Connector {
    pub fn new(pool: Pool) -> Self {
        Connector { pool }
    }

    /// A live pooled connection, or a new one. The flag says it was pooled.
    /// `fresh` skips the pool: a pooled connection just died under a
    /// request, and its idle siblings may be as dead (the upstream
    /// restarted, or closes idle connections in bulk).
    async fn conn(
        &self,
        link: &Link,
        timeouts: &Timeouts,
        connect_time: &mut Option<Duration>,
        fresh: bool,
    ) -> Result<(PooledConn, bool), ProxyError> {
        let deadline = tokio::time::Instant::now() + SLOT_WAIT;
        let slot = loop {
            let returned = self.pool.returned();
            tokio::pin!(returned);
            returned.as_mut().enable();
            while let Some(mut c) = (!fresh).then(|| self.pool.checkout(&link.key)).flatten() {
                if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, c.sender.ready()).await {
                    return Ok((c, true));
                }
            }
            let Some(slots) = &link.slots else {
                break None;
            };
            if let Ok(permit) = slots.clone().try_acquire_owned() {
                break Some(permit);
            }
            // Every allowed connection is busy: wait a moment for one to come
            // back rather than pay for another handshake. A connection held
            // by a long poll must not stall everyone, hence the deadline.
            tokio::select! {
                _ = returned => continue,
                permit = slots.clone().acquire_owned() => break permit.ok(),
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        let (mut c, took) =
            connect::http(&link.host, link.port, timeouts.connect, link.kind).await?;
        c.slot = slot;
        *connect_time = Some(took);
        Ok((c, false))
    }

    /// Gives a connection back after its response body was read to the end.
    pub fn release(&self, link_key: &str, conn: PooledConn) {
        self.pool.put(link_key, conn);
    }

    /// Sends `head` (already cleaned of hop-by-hop headers, URI in the form
    /// the peer expects) with `payload`, authenticating with `auth` when the
    /// peer is an upstream that asks. `digest_uri` is the request-target as
    /// sent.
    pub async fn exchange(
        &self,
        link: &Link,
        auth: Option<&AuthState>,
        head: &Parts,
        mut payload: Payload,
        digest_uri: &str,
        timeouts: &Timeouts,
    ) -> Result<Exchange, ProxyError> {
        let mut attempt = Attempt::default();
        let mut connect_time = None;
        let mut auth_time = None;
        let started = Instant::now();
        let mut current: Option<PooledConn> = None;
        let mut started_authenticated = None;
        let mut dead_pooled_retry = false;
        // The next leg must use the connection the last one came back on.
        let mut same_connection = false;

        for _ in 0..MAX_LEGS {
            let (mut conn, pooled) = match current.take() {
                // hyper takes a moment after a response to accept the next
                // request on the same connection: wait for it to be ready.
                Some(mut c) => match tokio::time::timeout(timeouts.read, c.sender.ready()).await {
                    Ok(Ok(())) => (c, false),
                    _ if same_connection && !attempt.restart_ntlm() => {
                        return Err(closed_mid_handshake(link))
                    }
                    _ => {
                        same_connection = false;
                        self.conn(link, timeouts, &mut connect_time, dead_pooled_retry)
                            .await?
                    }
                },
                None => {
                    self.conn(link, timeouts, &mut connect_time, dead_pooled_retry)
                        .await?
                }
            };
            if started_authenticated.is_none() {
                started_authenticated = Some(conn.authenticated && pooled);
            }
            let leg = match auth {
                Some(a) => {
                    a.next_leg(
                        &mut attempt,
                        conn.authenticated,
                        head.method.as_str(),
                        digest_uri,
                        payload.streams(),
                    )
                    .await?
                }
                None => Leg::Plain { probe: false },
            };
            // A Digest nonce may turn stale on any request: hold a streamed
            // body back until the upstream agrees to take it.
            let gate_body = payload.streams()
                && matches!(
                    leg,
                    Leg::Credentials {
                        scheme: gangway_auth::Scheme::Digest,
                        ..
                    }
                );
            let (request, gate, clock) = build_leg(head, &leg, &mut payload, gate_body)
                .ok_or_else(|| ProxyError::BodyNotReplayable {
                    upstream: link.authority(),
                })?;
            let sent = tokio::select! {
                r = conn.sender.send_request(request) => Some(r),
                _ = clock.expired(timeouts.read) => None,
            };
            let response = match sent {
                None => {
                    return Err(ProxyError::ResponseTimeout {
                        peer: link.authority(),
                        after: timeouts.read,
                    })
                }
                Some(Err(e)) => {
                    // A pooled connection the peer closed just as we sent:
                    // retry once on a new connection (not another pooled
                    // one) if the body allows it.
                    let body_intact = payload.replayable() || !leg.carries_body();
                    if pooled && !dead_pooled_retry && body_intact && is_idempotent(&head.method) {
                        dead_pooled_retry = true;
                        tracing::debug!(
                            "pooled connection to {} failed ({e}); retrying on a new one",
                            link.authority()
                        );
                        continue;
                    }
                    return Err(ProxyError::PeerProtocol {
                        peer: link.authority(),
                        reason: e.to_string(),
                    });
                }
                Some(Ok(r)) => r,
            };
            if let Some(body) = gate.and_then(|g| g.reclaim()) {
                // Answered before the body went out: keep it for the next
                // leg; this connection's request is unfinished.
                payload = Payload::Stream(Some(body));
                conn.poisoned = true;
            }
            let verdict = match auth {
                Some(a) => a.on_response(&mut attempt, response.status(), response.headers())?,
                None => Verdict::Done,
            };
            match verdict {
                Verdict::Done => {
                    if matches!(leg, Leg::NtlmAuthenticate { .. }) {
                        conn.authenticated = true;
                    }
                    conn.uses += 1;
                    if attempt.round_trips > 0 {
                        auth_time = Some(started.elapsed());
                    }
                    let reused = started_authenticated.unwrap_or(false);
                    let scheme = attempt
                        .scheme
                        .clone()
                        .or_else(|| reused.then_some(gangway_auth::Scheme::Ntlm));
                    let auth_use = scheme.filter(|_| auth.is_some()).map(|scheme| AuthUse {
                        scheme: scheme.to_string(),
                        handshake: attempt.round_trips > 0,
                        reused,
                    });
                    return Ok(Exchange {
                        response,
                        conn,
                        auth: auth_use,
                        connect_time,
                        auth_time,
                    });
                }
                Verdict::Again {
                    same_connection: bound,
                } => {
                    same_connection = bound;
                    let keep = !conn.poisoned
                        && wants_keep_alive(&response)
                        && drain(response, timeouts.read).await;
                    if keep {
                        current = Some(conn);
                    } else if bound {
                        if !attempt.restart_ntlm() {
                            return Err(closed_mid_handshake(link));
                        }
                        tracing::debug!(
                            "{} closed the connection after its NTLM challenge; starting over on another",
                            link.authority()
                        );
                        same_connection = false;
                    }
                }
            }
        }
        Err(ProxyError::AuthFailed {
            upstream: link.authority(),
            reason: format!("no answer after {MAX_LEGS} authentication round trips"),
        })
    }
}

fn closed_mid_handshake(link: &Link) -> ProxyError {
    ProxyError::AuthFailed {
        upstream: link.authority(),
        reason: "the upstream closed the connection in the middle of the NTLM handshake".into(),
    }
}

/// RFC 9110 §9.2.2: safe to send twice.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || method == "CONNECT"
}

/// One leg ready to send: the request, its body's gate and upload clock.
type LegRequest = (Request<ReqBody>, Option<Arc<Gate>>, Arc<UploadClock>);

/// The request for one leg, with its gate (when `gate_body`) and upload
/// clock. `None` when the leg needs the body and the body has already been
/// sent.
fn build_leg(
    head: &Parts,
    leg: &Leg,
    payload: &mut Payload,
    gate_body: bool,
) -> Option<LegRequest> {
    let mut builder = Request::builder()
        .method(if leg.is_probe() {
            Method::HEAD
        } else {
            head.method.clone()
        })
        .uri(head.uri.clone())
        .version(Version::HTTP_11);
    if let Some(h) = builder.headers_mut() {
        *h = head.headers.clone();
        if let Some(mut value) = leg.header().and_then(|v| HeaderValue::from_str(v).ok()) {
            value.set_sensitive(true);
            h.insert(header::PROXY_AUTHORIZATION, value);
        }
    }
    if let Some(ext) = builder.extensions_mut() {
        *ext = head.extensions.clone();
    }
    let clock = UploadClock::new();
    let mut gate = None;
    let body = if leg.carries_body() {
        let body = payload.take()?;
        if gate_body {
            let hint = body.size_hint();
            let g = Gate::new(body);
            if let Some(h) = builder.headers_mut() {
                h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
            }
            gate = Some(g.clone());
            LegBody::gated(g, hint, clock.clone())
        } else {
            LegBody::new(body, clock.clone())
        }
    } else {
        if let Some(h) = builder.headers_mut() {
            h.remove(header::CONTENT_LENGTH);
            h.remove(header::EXPECT);
            if payload.has_body() && !leg.is_probe() {
                // NTLM's Type 1 leg: announce an empty body, as curl does.
                h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
        }
        LegBody::new(body::empty(), clock.clone())
    };
    let mut request = builder.body(body.boxed_unsync()).ok()?;
    if let Some(g) = gate.clone() {
        hyper::ext::on_informational(&mut request, move |res| {
            if res.status() == http::StatusCode::CONTINUE {
                g.open();
            }
        });
    }
    Some((request, gate, clock))
}

/// Whether the peer keeps the connection open after this response (RFC
/// 9112 §9.3; modern Squid says `Connection: keep-alive`, never
/// `Proxy-Connection`, and HTTP/1.1 is persistent by default).
fn wants_keep_alive<B>(res: &Response<B>) -> bool {
    let tokens = |name: &str| {
        res.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let conn = tokens("connection");
    let proxy_conn = tokens("proxy-connection");
    if conn.iter().chain(&proxy_conn).any(|t| t == "close") {
        return false;
    }
    match res.version() {
        Version::HTTP_10 => conn.iter().chain(&proxy_conn).any(|t| t == "keep-alive"),
        _ => true,
    }
}

/// Reads and discards a 407 body so the connection can carry the next leg.
/// False when it is too large, too slow or broken.
async fn drain(res: Response<Incoming>, timeout: Duration) -> bool {
    let mut body = res.into_body();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    seen += f.data_ref().map(|d| d.len()).unwrap_or(0);
                    if seen > MAX_DRAIN {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(version: Version, headers: &[(&str, &str)]) -> Response<()> {
        let mut b = Response::builder().version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("response")
    }

    #[test]
    fn keep_alive_follows_http11_rules() {
        assert!(wants_keep_alive(&res(Version::HTTP_11, &[])));
        assert!(wants_keep_alive(&res(
            Version::HTTP_11,
            &[("Connection", "keep-alive")]
        )));
        assert!(!wants_keep_alive(&res(
            Version::HTTP_11,
            &[("Connection", "close")]
        )));
        assert!(!wants_keep_alive(&res(
            Version::HTTP_11,
            &[("Proxy-Connection", "close")]
        )));
        assert!(!wants_keep_alive(&res(Version::HTTP_10, &[])));
        assert!(wants_keep_alive(&res(
            Version::HTTP_10,
            &[("Proxy-Connection", "keep-alive")]
        )));
    }
}
