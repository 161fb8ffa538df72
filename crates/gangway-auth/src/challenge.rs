//! `Proxy-Authenticate` parsing (RFC 7235 §2.1, §4.1) and scheme choice.
//!
//! PLACEHOLDER API: being implemented; signatures are fixed.

use std::fmt;

/// An authentication scheme named in a challenge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Basic,
    Digest,
    Ntlm,
    Negotiate,
    /// Any other scheme, as the server spelled it.
    Other(String),
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Basic => f.write_str("Basic"),
            Scheme::Digest => f.write_str("Digest"),
            Scheme::Ntlm => f.write_str("NTLM"),
            Scheme::Negotiate => f.write_str("Negotiate"),
            Scheme::Other(s) => f.write_str(s),
        }
    }
}

/// One challenge: a scheme with either a token68 (NTLM's base64 blob) or
/// auth-params (name lower-cased, value unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    pub token: Option<String>,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of an auth-param, matched case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in one or more `Proxy-Authenticate` header values.
/// Malformed pieces are skipped, never panicked on.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let _ = values;
    Vec::new()
}
