//! The session: every request is one of CONNECT (a tunnel), absolute-form
//! (forwarded), or origin-form (the bridge's own pages). Failures become
//! responses here; this function never errors.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::body::ResBody;
use crate::connection::Permit;
use crate::error::ProxyError;
use crate::events::Kind;
use crate::headers::without_userinfo;
use crate::server::{Engine, Routing};
use crate::{forward, pages, tunnel};

pub(crate) async fn handle(
    engine: Arc<Engine>,
    client: SocketAddr,
    permit: Permit,
    mut req: Request<Incoming>,
) -> Response<ResBody> {
    let routing = engine.routing();
    *req.uri_mut() = without_userinfo(req.uri());
    if engine.via.seen_in(req.headers()) {
        return refuse(&engine, client, &req, ProxyError::Loop);
    }
    if req.method() == Method::CONNECT {
        return tunnel::handle(engine, routing, client, permit, req).await;
    }
    let uri = req.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        if uri.scheme_str() != Some("http") {
            let err = ProxyError::BadRequest(format!(
                "only http:// URLs can be forwarded (use CONNECT for {})",
                uri.scheme_str().unwrap_or("this scheme")
            ));
            return refuse(&engine, client, &req, err);
        }
        if uri.host().is_none_or(str::is_empty) {
            let err = ProxyError::BadRequest("the URL has no host".into());
            return refuse(&engine, client, &req, err);
        }
        return forward::handle(engine, routing, client, req).await;
    }
    if req.uri().path().starts_with('/') {
        return pages::handle(&engine, &routing, client, req);
    }
    let err = ProxyError::BadRequest(format!("unsupported request target `{}`", req.uri()));
    refuse(&engine, client, &req, err)
}

/// Answers with `err` and records it.
pub(crate) fn refuse<B>(
    engine: &Engine,
    client: SocketAddr,
    req: &Request<B>,
    err: ProxyError,
) -> Response<ResBody> {
    let kind = if req.method() == Method::CONNECT {
        Kind::Tunnel
    } else {
        Kind::Request
    };
    let mut rec = engine
        .events
        .start(kind, client, req.method().as_str(), req.uri().to_string());
    err.answer(&mut rec)
}

/// Where a request to `host` goes: `None` for direct.
pub(crate) fn upstream_for<'a>(
    routing: &'a Routing,
    host: &str,
) -> Option<&'a Arc<crate::upstream::Upstream>> {
    let up = routing.upstream.as_ref()?;
    if routing.settings.bypass.matches_host(host) {
        None
    } else {
        Some(up)
    }
}
