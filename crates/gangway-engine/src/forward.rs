//! Forwarding an absolute-form request: clean the head, pick the route,
//! send it through the connector (which authenticates upstream), and relay
//! the response body as it streams, counting bytes for the event.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use http::uri::{PathAndQuery, Uri};
use http::{header, HeaderValue, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{Metered, ResBody};
use crate::error::ProxyError;
use crate::events::{Kind, Recorder};
use crate::headers::strip_hop_by_hop;
use crate::router::upstream_for;
use crate::server::{Engine, Routing};
use crate::upstream::exchange::REPLAY_LIMIT;
use crate::upstream::pool::PooledConn;
use crate::upstream::{Link, Payload, PeerKind};

pub(crate) async fn handle(
    engine: Arc<Engine>,
    routing: Arc<Routing>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResBody> {
    engine.stats.requests.fetch_add(1, Relaxed);
    let mut rec = engine.events.start(
        Kind::Request,
        client,
        req.method().as_str(),
        req.uri().to_string(),
    );
    match forward(&engine, &routing, req, &mut rec).await {
        Ok(relay) => relay.respond(&engine, rec),
        Err(err) => {
            tracing::debug!("request #{} failed: {err}", rec.id());
            err.answer(&mut rec)
        }
    }
}

async fn forward(
    engine: &Arc<Engine>,
    routing: &Routing,
    req: Request<Incoming>,
    rec: &mut Recorder,
) -> Result<Relay, ProxyError> {
    rec.set_request_headers(req.headers());
    let (mut head, body) = req.into_parts();
    let host = head.uri.host().unwrap_or_default().to_owned();
    let port = head.uri.port_u16().unwrap_or(80);
    let authority = head
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());

    strip_hop_by_hop(&mut head.headers);
    head.headers.remove(header::EXPECT);
    if !head.headers.contains_key(header::HOST) {
        // HTTP/1.0 clients may omit Host; the URL has it.
        if let Ok(v) = HeaderValue::from_str(&authority) {
            head.headers.insert(header::HOST, v);
        }
    }
    engine.via.append(&mut head.headers, head.version);

    let (up_counter, down_counter) = rec.counters();
    let payload = payload(body, up_counter, routing.settings.timeouts.idle).await?;

    let upstream = upstream_for(routing, &host).cloned();
    let timeouts = routing.settings.timeouts;
    let (link, digest_uri) = match &upstream {
        Some(up) => {
            rec.set_route(&up.link.authority());
            (up.link.clone(), head.uri.to_string())
        }
        None => {
            // Origin-form for the origin itself (RFC 9112 §3.2.1).
            let path = head
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            head.uri = Uri::from(path);
            (Link::new(&host, port, PeerKind::Origin), String::new())
        }
    };
    let exchange = engine
        .connector
        .exchange(
            &link,
            upstream.as_ref().map(|u| &u.auth),
            &head,
            payload,
            &digest_uri,
            &timeouts,
        )
        .await?;
    exchange.record(rec, &engine.stats);

    let (mut parts, incoming) = exchange.response.into_parts();
    rec.set_status(parts.status.as_u16());
    strip_hop_by_hop(&mut parts.headers);
    engine.via.append(&mut parts.headers, parts.version);
    rec.set_response_headers(&parts.headers);

    Ok(Relay {
        head: parts,
        body: incoming,
        conn: exchange.conn,
        key: link.key,
        down: down_counter,
    })
}

/// A response on its way back to the client.
struct Relay {
    head: http::response::Parts,
    body: Incoming,
    conn: PooledConn,
    key: String,
    down: Arc<AtomicU64>,
}

impl Relay {
    /// Streams the body to the client; when it has been read to the end the
    /// connection goes back to the pool, and the event is emitted.
    fn respond(self, engine: &Arc<Engine>, rec: Recorder) -> Response<ResBody> {
        let engine = engine.clone();
        let (conn, key) = (self.conn, self.key);
        let body = Metered::new(self.body, self.down)
            .on_end(Box::new(move |complete| {
                if complete {
                    engine.connector.release(&key, conn);
                }
            }))
            .recorder(rec);
        Response::from_parts(self.head, body.map_err(Into::into).boxed_unsync())
    }
}

/// Small bodies are read into memory (so a 407 can be answered by sending
/// them again); larger or unsized ones stream through exactly once.
async fn payload(
    body: Incoming,
    up: Arc<AtomicU64>,
    timeout: std::time::Duration,
) -> Result<Payload, ProxyError> {
    if body.is_end_stream() {
        return Ok(Payload::None);
    }
    match body.size_hint().exact() {
        Some(n) if n <= REPLAY_LIMIT => {
            let bytes = tokio::time::timeout(timeout, body.collect())
                .await
                .map_err(|_| {
                    ProxyError::BadRequest(format!(
                        "the client did not send its {n}-byte request body within {}s",
                        timeout.as_secs()
                    ))
                })?
                .map_err(|e| {
                    ProxyError::BadRequest(format!("reading the request body failed: {e}"))
                })?
                .to_bytes();
            up.fetch_add(bytes.len() as u64, Relaxed);
            Ok(Payload::Buffered(bytes))
        }
        _ => Ok(Payload::Stream(Some(
            Metered::new(body, up).map_err(Into::into).boxed_unsync(),
        ))),
    }
}
