//! The bridge's own pages, for origin-form requests: `/` shows the status,
//! `/proxy.pac` is a PAC file pointing at the bridge.

use std::net::SocketAddr;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{self, ResBody};
use crate::events::Kind;
use crate::server::{status, Engine, Routing};

pub(crate) fn handle(
    engine: &Engine,
    routing: &Routing,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResBody> {
    let mut rec = engine.events.start(
        Kind::Local,
        client,
        req.method().as_str(),
        req.uri().path().to_owned(),
    );
    let (status_code, content_type, text) = match req.uri().path() {
        "/" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            status_page(engine),
        ),
        "/proxy.pac" | "/wpad.dat" => {
            let proxy = engine.listen.to_string();
            (
                StatusCode::OK,
                "application/x-ns-proxy-autoconfig",
                routing.settings.bypass.pac_script(&proxy),
            )
        }
        "/status.json" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&status(engine)).unwrap_or_default(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "Gangway is a proxy: configure it as your HTTP proxy. See / for its status.\n"
                .to_owned(),
        ),
    };
    rec.set_status(status_code.as_u16());
    let mut res = Response::new(body::full(text));
    *res.status_mut() = status_code;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn status_page(engine: &Engine) -> String {
    let s = status(engine);
    let credentials = match &s.credentials {
        None => "none configured".to_owned(),
        Some(c) => match c {
            crate::upstream::gate::CredentialStatus::Unverified => "not yet tried".to_owned(),
            crate::upstream::gate::CredentialStatus::Accepted => "accepted".to_owned(),
            crate::upstream::gate::CredentialStatus::Rejected { scheme, .. } => {
                format!("REJECTED ({scheme}); not sent again until changed or retried")
            }
        },
    };
    let last_error = s
        .stats
        .last_error
        .as_ref()
        .map(|(_, e)| e.clone())
        .unwrap_or_else(|| "none".into());
    let rows = [
        ("Version", s.version.to_owned()),
        ("Listening on", s.listen.to_string()),
        ("Upstream", s.upstream.clone()),
        (
            "Auth scheme",
            s.auth_scheme.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Credentials", credentials),
        ("Failed attempts", s.failed_attempts.to_string()),
        ("Requests", s.stats.requests.to_string()),
        (
            "Tunnels (open)",
            format!("{} ({})", s.stats.tunnels, s.stats.tunnels_open),
        ),
        ("Open connections", s.stats.connections_open.to_string()),
        ("Handshakes", s.stats.handshakes.to_string()),
        (
            "Pooled upstream connections",
            s.pooled_connections.to_string(),
        ),
        ("Errors", s.stats.errors.to_string()),
        ("Last error", last_error),
    ];
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Gangway</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em}td{padding:.2em 1em .2em 0}\
         th{text-align:left;padding-right:1em}</style></head><body><h1>Gangway</h1><table>",
    );
    for (k, v) in rows {
        html.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", k, escape(&v)));
    }
    html.push_str("</table><p><a href=\"/proxy.pac\">proxy.pac</a> · <a href=\"/status.json\">status.json</a></p></body></html>\n");
    html
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
