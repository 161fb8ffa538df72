//! One client connection: HTTP/1.1 with hyper, bounded by the idle/head
//! timeout and the header size limit, refused with 403 when the client is
//! outside the gateway allow list, shut down gracefully on request. hyper
//! reads the socket through [`HeadCheck`], and request heads it refuses
//! are answered here with 400.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::ResBody;
use crate::error::ProxyError;
use crate::events::Kind;
use crate::head_check::{HeadCheck, Refusal, Verdict};
use crate::net::tune_socket;
use crate::router;
use crate::server::Engine;
use crate::settings::Settings;

/// The live-connection permit, shared with tunnels that outlive the
/// request that opened them.
pub(crate) type Permit = Arc<OwnedSemaphorePermit>;

pub(crate) async fn serve(
    engine: Arc<Engine>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    tune_socket(&stream);
    let routing = engine.routing();
    let settings = &routing.settings;
    // Without gateway mode the listener is on loopback and every client is
    // local. In gateway mode the allow list decides for everyone, this
    // machine included: an explicit list is easier to reason about than an
    // implicit exception.
    let allowed = !settings.gateway || settings.allow.iter().any(|net| net.contains(peer.ip()));
    let permit: Permit = Arc::new(permit);

    let builder = http1_builder(settings);
    let idle = settings.timeouts.idle;
    let verdict = Arc::new(Verdict::default());
    let io = HeadCheck::new(stream, settings.limits.max_header_bytes, verdict.clone());
    drop(routing);

    engine.connection_opened();
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let service = {
        let engine = engine.clone();
        let served = served.clone();
        let permit = permit.clone();
        service_fn(move |req| {
            let engine = engine.clone();
            let permit = permit.clone();
            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Taken now, as hyper hands over the request: the verdict
            // belongs to this request and no other (see `head_check`).
            let refused = verdict.take();
            async move {
                if let Some(refusal) = refused {
                    return Ok::<_, Infallible>(refuse_head(&engine, peer, refusal));
                }
                if !allowed {
                    let err = ProxyError::Forbidden(peer.ip());
                    return Ok(router::refuse(&engine, peer, &req, err));
                }
                let connect = req.method() == Method::CONNECT;
                let mut res = router::handle(engine, peer, permit, req).await;
                if connect && !res.status().is_success() {
                    // After a CONNECT head the client's bytes pass
                    // unchecked; a refused CONNECT must not leave a
                    // connection whose next heads go unchecked.
                    close(&mut res);
                }
                Ok(res)
            }
        })
    };
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = engine.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        report(
            &engine,
            peer,
            &e,
            served.load(std::sync::atomic::Ordering::Relaxed),
            idle,
        );
    }
    engine.connection_closed();
}

/// The HTTP/1.1 server configuration for client connections: one place, so
/// the request-head fuzz target (`fuzzing`) reads bytes exactly as the
/// bridge does.
pub(crate) fn http1_builder(settings: &Settings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper starts this timer whenever it waits for a request head, so
        // it bounds idle keep-alive time and slow heads alike.
        .header_read_timeout(settings.timeouts.idle)
        .max_header_size(settings.limits.max_header_bytes)
        .max_buf_size(settings.limits.max_header_bytes.max(8192) * 2)
        .preserve_header_case(true)
        .title_case_headers(false)
        .half_close(false);
    builder
}

/// The 400 for a request head [`HeadCheck`] refused, recorded like any
/// other error. Nothing of the request was forwarded.
fn refuse_head(engine: &Engine, peer: SocketAddr, refusal: Refusal) -> Response<ResBody> {
    let mut rec = engine.events.start(Kind::Request, peer, "-", "-".into());
    let mut res = ProxyError::BadRequest(refusal.to_string()).answer(&mut rec);
    close(&mut res);
    res
}

fn close(res: &mut Response<ResBody>) {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// hyper answered 400/431 itself, or the client timed out or vanished:
/// make the failures that matter visible as events.
fn report(
    engine: &Engine,
    peer: SocketAddr,
    e: &hyper::Error,
    served: u32,
    idle: std::time::Duration,
) {
    let (status, text) = if e.is_parse_too_large() {
        (Some(431), "request header fields too large".to_owned())
    } else if e.is_parse() || e.is_parse_status() {
        (Some(400), format!("malformed request: {e}"))
    } else if e.is_timeout() {
        if served > 0 {
            // An idle keep-alive connection timing out is routine.
            tracing::debug!("closed idle connection from {peer}");
            return;
        }
        (
            None,
            format!(
                "no complete request within {}s; connection closed",
                idle.as_secs()
            ),
        )
    } else {
        tracing::debug!("connection from {peer} ended: {e}");
        return;
    };
    let mut rec = engine.events.start(Kind::Request, peer, "-", "-".into());
    if let Some(s) = status {
        rec.set_status(s);
    }
    rec.set_error(text);
}
