//! Digest access authentication (RFC 7616; RFC 2617 compatibility).
//!
//! PLACEHOLDER API: being implemented; signatures are fixed.

use zeroize::Zeroizing;

use crate::{challenge::Challenge, credentials::Credentials, AuthError};

/// State for one server nonce: realm, nonce, opaque, algorithm, qop, our
/// cnonce and the nonce count, which rises by one per request.
#[derive(Debug)]
pub struct DigestSession {
    _private: (),
}

impl DigestSession {
    /// Starts a session from a `Digest` challenge with a fresh random cnonce.
    pub fn new(challenge: &Challenge) -> Result<Self, AuthError> {
        let _ = challenge;
        Err(AuthError::MissingParam {
            scheme: "Digest",
            param: "nonce",
        })
    }

    /// The `Proxy-Authorization` value for one request; `uri` is the
    /// request-target exactly as sent (absolute URI, or host:port for CONNECT).
    /// Each call uses the next nonce count.
    pub fn authorization(
        &mut self,
        creds: &Credentials,
        method: &str,
        uri: &str,
    ) -> Result<Zeroizing<String>, AuthError> {
        let _ = (creds, method, uri);
        Err(AuthError::MissingParam {
            scheme: "Digest",
            param: "nonce",
        })
    }
}

/// True when a Digest challenge says `stale=true`: the nonce expired, the
/// credentials were fine, retry with the new nonce.
pub fn is_stale(challenge: &Challenge) -> bool {
    challenge
        .param("stale")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
