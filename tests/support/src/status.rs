//! The bridge's own status, as a user (or the tray) reads it: `GET /` and
//! `GET /status.json` on the bridge's address.

use std::net::SocketAddr;

use serde_json::Value;

use crate::curl::Curl;

/// `GET http://ADDR/status.json`, parsed; panics with the body if it is not
/// JSON. Index it like `status["failed_attempts"]`.
pub fn status_json(bridge: SocketAddr) -> Value {
    let out = Curl::new()
        .url(format!("http://{bridge}/status.json"))
        .run();
    assert_eq!(out.code(), 200, "{}", out.report());
    serde_json::from_slice(out.body()).unwrap_or_else(|e| {
        panic!(
            "/status.json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(out.body())
        )
    })
}

/// `GET http://ADDR/`: the status page's HTML.
pub fn status_page(bridge: SocketAddr) -> String {
    let out = Curl::new().url(format!("http://{bridge}/")).run();
    assert_eq!(out.code(), 200, "{}", out.report());
    out.text()
}
