//! What `/echo` reports: the request as it reached the origin.
//!
//! Tests use it to check what the bridge forwarded: the method, the request
//! target, the body (by length and SHA-256) and the headers, e.g. that
//! `Proxy-Authorization` and `Proxy-Connection` never arrive and that `Via`
//! does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The JSON body `/echo` answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    /// The request method, e.g. `POST`.
    pub method: String,
    /// The request target as received (origin-form: `/echo?x=1`).
    pub uri: String,
    /// The protocol version the origin saw, e.g. `HTTP/1.1`.
    pub version: String,
    /// Number of body bytes received.
    pub len: u64,
    /// Lowercase hex SHA-256 of the body received.
    pub sha256: String,
    /// Every header that arrived: lowercase name → its values in order.
    pub headers: BTreeMap<String, Vec<String>>,
}

impl EchoReply {
    /// Parses an `/echo` response body; panics with the body if it is not one
    /// (e.g. the bridge answered with an error page instead).
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "expected an /echo JSON reply ({e}), got:\n{}",
                String::from_utf8_lossy(body)
            )
        })
    }

    /// All values of header `name` (any case) joined with `", "`, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(|values| values.join(", "))
    }

    /// Whether header `name` (any case) arrived at all.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains_key(&name.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_case_and_joins_values() {
        let mut headers = BTreeMap::new();
        headers.insert(
            "via".to_owned(),
            vec!["1.1 a".to_owned(), "1.1 b".to_owned()],
        );
        let reply = EchoReply {
            method: "GET".into(),
            uri: "/echo".into(),
            version: "HTTP/1.1".into(),
            len: 0,
            sha256: String::new(),
            headers,
        };
        assert_eq!(reply.header("Via").as_deref(), Some("1.1 a, 1.1 b"));
        assert!(reply.has_header("VIA"));
        assert!(!reply.has_header("proxy-authorization"));
    }
}
