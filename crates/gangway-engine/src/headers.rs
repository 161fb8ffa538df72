//! Header rules for a forwarding proxy: hop-by-hop stripping (RFC 9110
//! §7.6.1), the `Via` header (§7.6.3) and loop detection through it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one hop and never travel further, besides those
/// the `Connection` header names. `Proxy-Authorization` is the client's
/// credential for *this* hop (us), never the upstream's.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];
const PROXY_CONNECTION: &str = "proxy-connection";
const KEEP_ALIVE: &str = "keep-alive";

/// Removes every hop-by-hop header: the fixed set, `Proxy-Connection`,
/// `Keep-Alive`, and whatever `Connection` lists. `Transfer-Encoding` goes
/// too because hyper re-frames the body for the next hop itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(PROXY_CONNECTION);
    headers.remove(KEEP_ALIVE);
}

/// The URI without `user:password@` (RFC 9110 §4.2.4: deprecated in
/// http URIs, and a secret that must reach neither the log nor the next hop).
pub fn without_userinfo(uri: &http::Uri) -> http::Uri {
    let Some(authority) = uri.authority() else {
        return uri.clone();
    };
    let Some((_, host)) = authority.as_str().rsplit_once('@') else {
        return uri.clone();
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = host.parse().ok();
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// This bridge's `Via` pseudonym: `gangway-<instance id>`, unique per
/// process so that loops are caught and chained bridges are not mistaken
/// for one another.
#[derive(Clone, Debug)]
pub struct ViaToken {
    pseudonym: String,
}

impl ViaToken {
    pub fn new() -> Self {
        ViaToken {
            pseudonym: format!("gangway-{:08x}", rand::random::<u32>()),
        }
    }

    /// True when the request already passed through this bridge.
    pub fn seen_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|hop| hop.split_whitespace().nth(1) == Some(self.pseudonym.as_str()))
    }

    /// Appends our hop, as `1.1 gangway-xxxxxxxx`, after any existing ones.
    pub fn append(&self, headers: &mut HeaderMap, version: http::Version) {
        let proto = match version {
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{proto} {}", self.pseudonym)) {
            headers.append(header::VIA, v);
        }
    }
}

impl Default for ViaToken {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = map(&[
            ("Connection", "close, X-Secret-Hop"),
            ("Connection", "x-other"),
            ("X-Secret-Hop", "1"),
            ("X-Other", "1"),
            ("Proxy-Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("Accept", "*/*"),
            ("Authorization", "Bearer origin-token"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept", "authorization"]);
    }

    #[test]
    fn userinfo_is_dropped() {
        let uri: http::Uri = "http://bob:s3cret@example.com:8080/a?b=c"
            .parse()
            .expect("uri");
        assert_eq!(
            without_userinfo(&uri).to_string(),
            "http://example.com:8080/a?b=c"
        );
        let plain: http::Uri = "http://example.com/".parse().expect("uri");
        assert_eq!(without_userinfo(&plain), plain);
    }

    #[test]
    fn via_round_trip_detects_loops() {
        let a = ViaToken::new();
        let b = ViaToken {
            pseudonym: "gangway-other".into(),
        };
        let mut h = map(&[("Via", "1.1 squid")]);
        assert!(!a.seen_in(&h));
        a.append(&mut h, http::Version::HTTP_11);
        assert!(a.seen_in(&h));
        assert!(!b.seen_in(&h));
        assert_eq!(h.get_all(header::VIA).iter().count(), 2);
    }
}
