//! Proxy authentication for Gangway, as pure state machines: a challenge
//! goes in, a header value comes out. Nothing in this crate touches a socket,
//! so every scheme is unit-tested against recorded challenges and the spec
//! test vectors.
//!
//! # Layout
//! - [`secret`]: the [`Password`] type: zeroized on drop,
//!   never printed.
//! - [`credentials`]: user, domain and password, with the `DOMAIN\user` and
//!   `user@domain` forms split once.
//! - [`challenge`]: parses `Proxy-Authenticate` lists (RFC 7235 §4.1) into
//!   [`Challenge`]s and picks the strongest offer.
//! - [`basic`]: RFC 7617, UTF-8.
//! - [`digest`]: RFC 7616 (MD5, MD5-sess, SHA-256, SHA-256-sess; qop=auth or
//!   none), one [`DigestSession`](digest::DigestSession) per server nonce.
//! - [`ntlm`]: MS-NLMP NTLMv2 on top of `ntlmclient`, one
//!   [`NtlmHandshake`](ntlm::NtlmHandshake) per upstream connection.
//!
//! The engine's upstream connector drives these: it owns the sockets and the
//! one 407 loop; this crate only says what header to send next.

pub mod basic;
pub mod challenge;
pub mod credentials;
pub mod digest;
pub mod ntlm;
pub mod secret;

pub use challenge::{Challenge, Scheme};
pub use credentials::Credentials;
pub use secret::Password;

/// Why a scheme could not produce a header.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The server's challenge is missing a parameter the scheme needs.
    #[error("{scheme} challenge is missing `{param}`")]
    MissingParam {
        scheme: &'static str,
        param: &'static str,
    },
    /// The server asked for something this implementation does not do.
    #[error("{scheme} challenge asks for unsupported {what} `{value}`")]
    Unsupported {
        scheme: &'static str,
        what: &'static str,
        value: String,
    },
    /// The challenge could not be decoded.
    #[error("malformed {scheme} challenge: {reason}")]
    Malformed {
        scheme: &'static str,
        reason: String,
    },
}
