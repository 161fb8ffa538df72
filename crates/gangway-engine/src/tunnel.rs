//! CONNECT: open the way to host:port (directly, or through the upstream's
//! own CONNECT with authentication), answer 200, then relay bytes both ways
//! until either side closes. A refused upstream CONNECT reaches the client
//! as the upstream's status and body, not as a reset.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{self, Metered, ResBody};
use crate::connection::Permit;
use crate::error::ProxyError;
use crate::events::{Kind, Recorder};
use crate::router::upstream_for;
use crate::server::{Engine, Routing};
use crate::upstream::connect::{self, PeerKind};
use crate::upstream::Payload;

/// Relay buffer per direction. Large enough for full-speed TLS records,
/// small enough that a thousand idle tunnels stay cheap.
const RELAY_BUFFER: usize = 32 * 1024;

/// The far end of a tunnel.
enum Far {
    Direct(tokio::net::TcpStream),
    Upstream(Upgraded),
}

pub(crate) async fn handle(
    engine: Arc<Engine>,
    routing: Arc<Routing>,
    client: SocketAddr,
    permit: Permit,
    req: Request<Incoming>,
) -> Response<ResBody> {
    let target = req.uri().to_string();
    let mut rec = engine.events.start(Kind::Tunnel, client, "CONNECT", target);
    let Some((host, port)) = target_of(req.uri()) else {
        let err = ProxyError::BadRequest("CONNECT needs host:port".into());
        rec.set_status(err.status().as_u16());
        rec.set_error(err.to_string());
        return err.to_response();
    };
    let far = match open(&engine, &routing, &host, port, &req, &mut rec).await {
        Ok(Ok(far)) => far,
        Ok(Err(refusal)) => return refusal,
        Err(err) => {
            rec.set_status(err.status().as_u16());
            rec.set_error(err.to_string());
            return err.to_response();
        }
    };
    rec.set_status(200);
    engine.stats.tunnels.fetch_add(1, Relaxed);
    let tunnel_engine = engine.clone();
    engine.tasks.spawn(async move {
        let force_close = tunnel_engine.force_close.clone();
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                tunnel_engine.stats.tunnels_open.fetch_add(1, Relaxed);
                rec.opened();
                let client_io = TokioIo::new(upgraded);
                tokio::select! {
                    _ = relay(client_io, far, &mut rec) => {}
                    _ = force_close.cancelled() => {
                        rec.set_error("closed by bridge shutdown");
                    }
                }
                tunnel_engine.stats.tunnels_open.fetch_sub(1, Relaxed);
            }
            Err(e) => rec.set_error(format!("client upgrade failed: {e}")),
        }
        drop(permit);
        rec.finish();
    });
    let mut res = Response::new(body::empty());
    *res.status_mut() = StatusCode::OK;
    res
}

/// host and port from an authority-form target.
fn target_of(uri: &Uri) -> Option<(String, u16)> {
    let auth = uri.authority()?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), auth.port_u16()?))
}

/// Opens the far end. `Ok(Err(response))` is the upstream's refusal,
/// passed on to the client.
async fn open(
    engine: &Arc<Engine>,
    routing: &Routing,
    host: &str,
    port: u16,
    req: &Request<Incoming>,
    rec: &mut Recorder,
) -> Result<Result<Far, Response<ResBody>>, ProxyError> {
    let timeouts = routing.settings.timeouts;
    let Some(up) = upstream_for(routing, host) else {
        let started = std::time::Instant::now();
        let stream = connect::tcp(host, port, timeouts.connect, PeerKind::Origin).await?;
        rec.set_connect_time(started.elapsed());
        return Ok(Ok(Far::Direct(stream)));
    };
    rec.set_route(&up.link.authority());
    let authority = connect::authority(host, port);
    let mut builder = Request::builder()
        .method(Method::CONNECT)
        .uri(authority.as_str())
        .header(header::HOST, authority.as_str());
    if let Some(ua) = req.headers().get(header::USER_AGENT) {
        builder = builder.header(header::USER_AGENT, ua.clone());
    }
    let (mut head, ()) = builder
        .body(())
        .map_err(|e| ProxyError::BadRequest(format!("CONNECT target: {e}")))?
        .into_parts();
    engine.via.append(&mut head.headers, http::Version::HTTP_11);
    let exchange = engine
        .connector
        .exchange(
            &up.link,
            Some(&up.auth),
            &head,
            Payload::None,
            &authority,
            &timeouts,
        )
        .await?;
    rec.mark_first_byte();
    if let Some(t) = exchange.connect_time {
        rec.set_connect_time(t);
    }
    if let Some(t) = exchange.auth_time {
        rec.set_auth_time(t);
        engine.stats.handshakes.fetch_add(1, Relaxed);
    }
    rec.set_auth(exchange.auth.clone());
    let response = exchange.response;
    if !response.status().is_success() {
        // The upstream said no (403 by policy, 502 for a dead target...):
        // the client gets its words.
        rec.set_status(response.status().as_u16());
        rec.set_error(format!(
            "upstream refused the tunnel: {}",
            response.status()
        ));
        let (mut parts, incoming) = response.into_parts();
        crate::headers::strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let (_, down) = rec.counters();
        let body = Metered::new(incoming, down)
            .map_err(Into::into)
            .boxed_unsync();
        return Ok(Err(Response::from_parts(parts, body)));
    }
    // The connection becomes the tunnel: it never returns to the pool.
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| ProxyError::PeerProtocol {
            peer: up.link.authority(),
            reason: format!("tunnel setup failed: {e}"),
        })?;
    Ok(Ok(Far::Upstream(upgraded)))
}

async fn relay<C>(client: C, far: Far, rec: &mut Recorder)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let result = match far {
        Far::Direct(stream) => copy(client, stream).await,
        Far::Upstream(upgraded) => copy(client, TokioIo::new(upgraded)).await,
    };
    let (up, down) = rec.counters();
    match result {
        Ok((a, b)) => {
            up.fetch_add(a, Relaxed);
            down.fetch_add(b, Relaxed);
        }
        Err(e) => {
            // Resets at the end of a TLS session are routine; keep the
            // reason for the log, not as an error the user must read.
            tracing::debug!("tunnel #{} ended: {e}", rec.id());
        }
    }
}

async fn copy<A, B>(mut a: A, mut b: B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, RELAY_BUFFER, RELAY_BUFFER).await
}
