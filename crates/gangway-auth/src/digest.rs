//! Digest access authentication, client side (RFC 7616; RFC 2617 servers).
//!
//! What is answered, and what is not:
//! - algorithm `MD5` (the default when absent), `MD5-sess`, `SHA-256` and
//!   `SHA-256-sess`, matched case-insensitively (RFC 7616 §3.3);
//! - `qop=auth`, chosen whenever offered; a server that offers only
//!   `auth-int` is refused with [`AuthError::Unsupported`]: integrity
//!   protection would need the request body, which a proxy's CONNECT has not
//!   got and the engine does not buffer;
//! - no qop at all, the RFC 2069 form RFC 2617 §3.2.2.1 keeps for
//!   compatibility: no `nc`, `cnonce` or `qop` in the answer;
//! - `userhash=true` (RFC 7616 §3.4.4) is declined: we send the name in the
//!   clear with `userhash=false`, which the RFC allows. Proxies that offer
//!   userhash are rare, and the user name is not the secret.
//!
//! The user name is [`Credentials::login`] exactly as typed (`CORP\bob`
//! included), and the password's UTF-8 bytes are hashed as they are; RFC 7616
//! §4 makes UTF-8 the only charset a server may announce. A name that is not
//! printable ASCII goes out as `username*` (RFC 7616 §3.4, RFC 8187).
//!
//! The session holds no secret: HA1 is recomputed per request from the
//! credentials, in [`Zeroizing`] buffers wiped on drop.

use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    challenge::{Challenge, Scheme},
    credentials::Credentials,
    AuthError,
};

const SCHEME: &str = "Digest";

/// Random bytes in a fresh cnonce: 128 bits, which RFC 7616 §5.12 asks to
/// be unpredictable.
const CNONCE_BYTES: usize = 16;

/// State for one server nonce: realm, nonce, opaque, algorithm, qop, our
/// cnonce and the nonce count, which rises by one per request.
///
/// `Debug` is derived: nothing in here is secret (the nonce and cnonce go
/// over the wire in the clear).
#[derive(Debug)]
pub struct DigestSession {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    /// The algorithm as the server spelled it, echoed back; `None` when the
    /// challenge named none, as RFC 2617 servers expect none back.
    algorithm_name: Option<String>,
    qop: Qop,
    /// The server offered `userhash=true`; we answer `userhash=false`.
    declines_userhash: bool,
    cnonce: String,
    /// The nonce count of the last header made, 0 before the first.
    nc: u32,
}

impl DigestSession {
    /// Starts a session from a `Digest` challenge with a fresh random cnonce.
    pub fn new(challenge: &Challenge) -> Result<Self, AuthError> {
        let mut bytes = [0u8; CNONCE_BYTES];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self::with_cnonce(challenge, &hex(&bytes))
    }

    /// As [`new`](Self::new), with a chosen cnonce: for tests that check
    /// exact header values, such as the RFC 7616 §3.9.1 examples. Never use
    /// a fixed cnonce against a real server.
    #[doc(hidden)]
    pub fn with_cnonce(challenge: &Challenge, cnonce: &str) -> Result<Self, AuthError> {
        let offer = Offer::read(challenge)?;
        Ok(DigestSession {
            realm: offer.realm.to_owned(),
            nonce: offer.nonce.to_owned(),
            opaque: offer.opaque.map(str::to_owned),
            algorithm: offer.algorithm,
            algorithm_name: offer.algorithm_name.map(str::to_owned),
            qop: offer.qop,
            declines_userhash: offer.userhash,
            cnonce: cnonce.to_owned(),
            nc: 0,
        })
    }

    /// The server nonce this session answers.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The nonce count of the most recent [`authorization`](Self::authorization),
    /// 0 before the first.
    pub fn nonce_count(&self) -> u32 {
        self.nc
    }

    /// The realm of the challenge, which is also the one hashed.
    pub fn realm(&self) -> &str {
        &self.realm
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
        // RFC 7616 §3.4: nc counts requests on this nonce from 1, 8 hex digits.
        let nc = self
            .nc
            .checked_add(1)
            .ok_or_else(|| AuthError::Unsupported {
                scheme: SCHEME,
                what: "nonce count beyond",
                value: format!("{:08x}", u32::MAX),
            })?;
        let nc_hex = format!("{nc:08x}");
        let response = self.response(creds, method, uri, &nc_hex);
        self.nc = nc;

        // Sized up front so the buffer is never reallocated, which would
        // leave an unwiped copy behind.
        let mut header = Zeroizing::new(String::with_capacity(
            256 + creds.login.len() * 3
                + self.realm.len() * 2
                + self.nonce.len() * 2
                + uri.len() * 2
                + self.opaque.as_ref().map_or(0, |o| o.len() * 2)
                + self.cnonce.len() * 2,
        ));
        // The order of RFC 7616 §3.9.1's example; servers must not care.
        header.push_str("Digest ");
        push_username(&mut header, &creds.login);
        push_quoted(&mut header, ", realm=", &self.realm);
        push_quoted(&mut header, ", uri=", uri);
        if let Some(name) = &self.algorithm_name {
            header.push_str(", algorithm=");
            header.push_str(name);
        }
        push_quoted(&mut header, ", nonce=", &self.nonce);
        if self.qop == Qop::Auth {
            header.push_str(", nc=");
            header.push_str(&nc_hex);
            push_quoted(&mut header, ", cnonce=", &self.cnonce);
            header.push_str(", qop=auth");
        }
        push_quoted(&mut header, ", response=", &response);
        if let Some(opaque) = &self.opaque {
            // RFC 7616 §3.3: returned unchanged.
            push_quoted(&mut header, ", opaque=", opaque);
        }
        if self.declines_userhash {
            header.push_str(", userhash=false");
        }
        Ok(header)
    }

    /// The request-digest of RFC 7616 §3.4.1, in lowercase hex.
    fn response(
        &self,
        creds: &Credentials,
        method: &str,
        uri: &str,
        nc_hex: &str,
    ) -> Zeroizing<String> {
        let hash = self.algorithm.hash;
        // §3.4.2: A1 = username ":" realm ":" passwd, with unquoted values.
        let mut ha1 = hash.hex(&[
            creds.login.as_bytes(),
            self.realm.as_bytes(),
            creds.password.expose().as_bytes(),
        ]);
        if self.algorithm.sess {
            // -sess: A1 = H(username:realm:passwd) ":" nonce ":" cnonce.
            ha1 = hash.hex(&[
                ha1.as_bytes(),
                self.nonce.as_bytes(),
                self.cnonce.as_bytes(),
            ]);
        }
        // §3.4.3: A2 = Method ":" request-uri, for qop=auth and for none.
        let ha2 = hash.hex(&[method.as_bytes(), uri.as_bytes()]);
        match self.qop {
            Qop::Auth => hash.hex(&[
                ha1.as_bytes(),
                self.nonce.as_bytes(),
                nc_hex.as_bytes(),
                self.cnonce.as_bytes(),
                b"auth",
                ha2.as_bytes(),
            ]),
            // RFC 2617 §3.2.2.1: H(HA1 ":" nonce ":" HA2) without a qop.
            Qop::None => hash.hex(&[ha1.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        }
    }
}

/// True when a Digest challenge says `stale=true`: the nonce expired, the
/// credentials were fine, retry with the new nonce.
pub fn is_stale(challenge: &Challenge) -> bool {
    challenge
        .param("stale")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The hash a Digest offer would be answered with, or `None` if
/// [`DigestSession::new`] would refuse it. Lets
/// [`strongest`](crate::challenge::strongest) rank offers without making
/// a cnonce.
pub(crate) fn offered_hash(challenge: &Challenge) -> Option<HashFn> {
    Offer::read(challenge)
        .ok()
        .map(|offer| offer.algorithm.hash)
}

/// The hash functions of RFC 7616 §3.3 that we implement, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HashFn {
    Md5,
    Sha256,
}

impl HashFn {
    /// Lowercase hex of H(parts joined by ":"), fed to the hasher piece by
    /// piece so that no joined copy of a password is ever made.
    fn hex(self, parts: &[&[u8]]) -> Zeroizing<String> {
        match self {
            HashFn::Md5 => hex_digest::<Md5>(parts),
            HashFn::Sha256 => hex_digest::<Sha256>(parts),
        }
    }
}

fn hex_digest<D: Digest>(parts: &[&[u8]]) -> Zeroizing<String> {
    let mut hasher = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part);
    }
    let mut digest = hasher.finalize();
    let hex = hex(&digest);
    digest.as_mut_slice().zeroize();
    hex
}

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Algorithm {
    hash: HashFn,
    /// The `-sess` variant: HA1 also covers the nonce and cnonce.
    sess: bool,
}

impl Algorithm {
    /// RFC 7616 §3.3: MD5 when absent; names are case-insensitive.
    fn parse(name: Option<&str>) -> Result<Self, AuthError> {
        let Some(name) = name else {
            return Ok(Algorithm {
                hash: HashFn::Md5,
                sess: false,
            });
        };
        let (base, sess) = match name
            .len()
            .checked_sub(5)
            .and_then(|at| name.split_at_checked(at))
        {
            Some((base, suffix)) if suffix.eq_ignore_ascii_case("-sess") => (base, true),
            _ => (name, false),
        };
        let hash = if base.eq_ignore_ascii_case("MD5") {
            HashFn::Md5
        } else if base.eq_ignore_ascii_case("SHA-256") {
            HashFn::Sha256
        } else {
            return Err(AuthError::Unsupported {
                scheme: SCHEME,
                what: "algorithm",
                value: name.to_owned(),
            });
        };
        Ok(Algorithm { hash, sess })
    }
}

/// The quality of protection we answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Qop {
    Auth,
    /// The server sent no qop: the RFC 2069 form.
    None,
}

impl Qop {
    /// Picks `auth` from the server's list (RFC 7616 §3.3: a quoted,
    /// comma-separated list of tokens).
    fn choose(offered: Option<&str>) -> Result<Self, AuthError> {
        let Some(list) = offered else {
            return Ok(Qop::None);
        };
        let mut options = list.split(',').map(str::trim).filter(|o| !o.is_empty());
        if options.clone().any(|o| o.eq_ignore_ascii_case("auth")) {
            Ok(Qop::Auth)
        } else if options.next().is_none() {
            // `qop=""` names nothing: treat it as absent.
            Ok(Qop::None)
        } else {
            Err(AuthError::Unsupported {
                scheme: SCHEME,
                what: "qop",
                value: list.to_owned(),
            })
        }
    }
}

/// A Digest challenge checked for everything we need, with no cnonce yet.
struct Offer<'a> {
    realm: &'a str,
    nonce: &'a str,
    opaque: Option<&'a str>,
    algorithm: Algorithm,
    algorithm_name: Option<&'a str>,
    qop: Qop,
    userhash: bool,
}

impl<'a> Offer<'a> {
    fn read(challenge: &'a Challenge) -> Result<Self, AuthError> {
        if challenge.scheme != Scheme::Digest {
            return Err(AuthError::Malformed {
                scheme: SCHEME,
                reason: format!("expected a Digest challenge, got {}", challenge.scheme),
            });
        }
        let required = |param: &'static str| {
            challenge.param(param).ok_or(AuthError::MissingParam {
                scheme: SCHEME,
                param,
            })
        };
        // RFC 7616 §3.3: realm and nonce are required.
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let algorithm_name = challenge.param("algorithm");
        let algorithm = Algorithm::parse(algorithm_name)?;
        let qop = Qop::choose(challenge.param("qop"))?;
        if algorithm.sess && qop == Qop::None {
            // -sess hashes our cnonce into HA1, but without a qop the answer
            // cannot carry a cnonce (RFC 2617 §3.2.2): the server could never
            // check it.
            return Err(AuthError::Unsupported {
                scheme: SCHEME,
                what: "algorithm without a qop",
                value: algorithm_name.unwrap_or_default().to_owned(),
            });
        }
        Ok(Offer {
            realm,
            nonce,
            opaque: challenge.param("opaque"),
            algorithm,
            algorithm_name,
            qop,
            userhash: challenge
                .param("userhash")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

/// `username="..."`, or `username*=UTF-8''...` (RFC 7616 §3.4) when the
/// name holds anything but printable ASCII, which a quoted-string cannot
/// carry portably. The hashed name is the same UTF-8 either way.
fn push_username(out: &mut String, login: &str) {
    if login
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        push_quoted(out, "username=", login);
        return;
    }
    // RFC 8187 §3.2.1: ext-value = charset "'" [ language ] "'" value-chars,
    // where anything but attr-char is percent-encoded.
    out.push_str("username*=UTF-8''");
    for &b in login.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            // RFC 3986 §2.1: upper-case hex digits.
            const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
    }
}

/// Appends `prefix` and `value` as a quoted-string (RFC 9110 §5.6.4),
/// escaping `"` and `\`.
fn push_quoted(out: &mut String, prefix: &str, value: &str) {
    out.push_str(prefix);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{challenge::parse_challenges, Password};

    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC2617_NONCE: &str = "dcd98b7102dd2f0e8b11d0f600bfb0c093";

    fn challenge(value: &str) -> Challenge {
        let mut all = parse_challenges([value]);
        assert_eq!(all.len(), 1, "{value}");
        all.remove(0)
    }

    fn creds(login: &str, password: &str) -> Credentials {
        Credentials::new(login, None, Password::from(password), "WS")
    }

    fn session(value: &str, cnonce: &str) -> DigestSession {
        DigestSession::with_cnonce(&challenge(value), cnonce).expect("an answerable challenge")
    }

    /// Reads our own header back with the challenge parser: the
    /// credentials syntax is the same auth-param list (RFC 9110 §11.4).
    fn params(header: &str) -> Challenge {
        let parsed = challenge(header);
        assert_eq!(parsed.scheme, Scheme::Digest);
        parsed
    }

    fn rfc7616(algorithm: &str) -> DigestSession {
        session(
            &format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}""#
            ),
            RFC7616_CNONCE,
        )
    }

    fn rfc2617(extra: &str) -> DigestSession {
        session(
            &format!(r#"Digest realm="testrealm@host.com", nonce="{RFC2617_NONCE}"{extra}"#),
            "0a4f113b",
        )
    }

    #[test]
    fn rfc7616_md5_example() {
        // RFC 7616 §3.9.1, the MD5 answer, byte for byte.
        let header = rfc7616("MD5")
            .authorization(&creds("Mufasa", "Circle of Life"), "GET", "/dir/index.html")
            .expect("a header");
        assert_eq!(
            header.as_str(),
            format!(
                r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", qop=auth, response="8ca523f5e9506fed4657c9700eebdbec", opaque="{RFC7616_OPAQUE}""#
            )
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let header = rfc7616("SHA-256")
            .authorization(&creds("Mufasa", "Circle of Life"), "GET", "/dir/index.html")
            .expect("a header");
        let got = params(&header);
        assert_eq!(
            got.param("response"),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert_eq!(got.param("algorithm"), Some("SHA-256"));
        assert_eq!(got.param("qop"), Some("auth"));
    }

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5, where the server offers auth and auth-int.
        let mut s = rfc2617(r#", qop="auth,auth-int", opaque="5ccc069c403ebaf9f0171e9517f40e41""#);
        let header = s
            .authorization(&creds("Mufasa", "Circle Of Life"), "GET", "/dir/index.html")
            .expect("a header");
        let got = params(&header);
        assert_eq!(
            got.param("response"),
            Some("6629fae49393a05397450978507c4ef1")
        );
        assert_eq!(
            got.param("opaque"),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        // No algorithm in the challenge: none in the answer either.
        assert_eq!(got.param("algorithm"), None);
    }

    #[test]
    fn nonce_count_rises_per_request() {
        let mut s = rfc2617(r#", qop="auth""#);
        let c = creds("Mufasa", "Circle Of Life");
        assert_eq!(s.nonce_count(), 0);
        let first = s
            .authorization(&c, "GET", "/dir/index.html")
            .expect("a header");
        assert_eq!(params(&first).param("nc"), Some("00000001"));
        let second = s
            .authorization(&c, "GET", "/dir/index.html")
            .expect("a header");
        let got = params(&second);
        assert_eq!(got.param("nc"), Some("00000002"));
        assert_eq!(
            got.param("response"),
            Some("15b6bb427e3fecd23a43cb702ce447d5")
        );
        assert_eq!(s.nonce_count(), 2);
        assert_eq!(s.nonce(), RFC2617_NONCE);
        assert_eq!(s.realm(), "testrealm@host.com");
        // Lowercase hex, 8 digits: the 31st request is `0000001f`.
        while s.nonce_count() < 0x1e {
            s.authorization(&c, "GET", "/").expect("a header");
        }
        let header = s.authorization(&c, "GET", "/").expect("a header");
        assert_eq!(params(&header).param("nc"), Some("0000001f"));
    }

    #[test]
    fn nonce_count_never_wraps() {
        let mut s = rfc2617(r#", qop="auth""#);
        s.nc = u32::MAX;
        let err = s.authorization(&creds("u", "p"), "GET", "/");
        assert!(matches!(err, Err(AuthError::Unsupported { .. })));
        assert_eq!(s.nonce_count(), u32::MAX);
    }

    #[test]
    fn legacy_form_without_qop() {
        // RFC 2617 §3.2.2.1: no qop offered, so none of qop, nc, cnonce back.
        let header = rfc2617("")
            .authorization(&creds("Mufasa", "Circle Of Life"), "GET", "/dir/index.html")
            .expect("a header");
        let got = params(&header);
        assert_eq!(
            got.param("response"),
            Some("670fd8c2df070c60b045671b8b24ff02")
        );
        for absent in ["qop", "nc", "cnonce", "opaque", "userhash"] {
            assert_eq!(got.param(absent), None, "{absent} in {}", header.as_str());
        }
    }

    #[test]
    fn sess_variants() {
        let header = rfc2617(r#", qop="auth", algorithm=md5-SESS"#)
            .authorization(&creds("Mufasa", "Circle Of Life"), "GET", "/dir/index.html")
            .expect("a header");
        let got = params(&header);
        assert_eq!(
            got.param("response"),
            Some("8e3825c57e897f5a0dec6c2d4e5059d0")
        );
        // The server's spelling is echoed.
        assert_eq!(got.param("algorithm"), Some("md5-SESS"));

        let header = rfc7616("SHA-256-sess")
            .authorization(&creds("Mufasa", "Circle of Life"), "GET", "/dir/index.html")
            .expect("a header");
        assert_eq!(
            params(&header).param("response"),
            Some("2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7")
        );
    }

    #[test]
    fn awkward_passwords_and_connect_uri() {
        // Expected values computed independently (Python hashlib).
        let squid = r#"Digest realm="Squid proxy", nonce="AbC", qop="auth", stale=false"#;
        let header = session(squid, "0a4f113b")
            .authorization(&creds("bob", "a b:c\"d"), "CONNECT", "example.com:443")
            .expect("a header");
        let got = params(&header);
        assert_eq!(got.param("uri"), Some("example.com:443"));
        assert_eq!(
            got.param("response"),
            Some("da14f7390a1e88cfa7f175419c79f754")
        );

        let squid_sha = format!("{squid}, algorithm=SHA-256");
        let header = session(&squid_sha, "0a4f113b")
            .authorization(
                &creds("bob", "p\u{e4}ssw\u{f6}rd"),
                "GET",
                "http://example.com/",
            )
            .expect("a header");
        assert_eq!(
            params(&header).param("response"),
            Some("0b0636b69e58e4455272af97d702f3adc7296870a84de9adb1edf821e248c5f0")
        );
    }

    #[test]
    fn login_is_sent_and_hashed_as_typed() {
        let c = Credentials::new("CORP\\bob", None, Password::from("pw"), "WS");
        let header = session(
            r#"Digest realm="Squid proxy", nonce="AbC", qop=auth"#,
            "0a4f113b",
        )
        .authorization(&c, "CONNECT", "example.com:443")
        .expect("a header");
        assert!(
            header.contains(r#"username="CORP\\bob""#),
            "{}",
            header.as_str()
        );
        let got = params(&header);
        assert_eq!(got.param("username"), Some("CORP\\bob"));
        assert_eq!(
            got.param("response"),
            Some("4a1c55f8290dc07321c59baa4519b090")
        );
    }

    #[test]
    fn quoted_values_are_escaped() {
        let mut s = session(
            r#"Digest realm="a \"b\" \\c", nonce="n\"1", opaque="o,\"p\"", qop="auth""#,
            "c",
        );
        let header = s
            .authorization(&creds("say \"hi\"", "pw"), "GET", "/a\"b")
            .expect("a header");
        assert!(
            header.contains(r#"realm="a \"b\" \\c""#),
            "{}",
            header.as_str()
        );
        let got = params(&header);
        assert_eq!(got.param("username"), Some("say \"hi\""));
        assert_eq!(got.param("realm"), Some("a \"b\" \\c"));
        assert_eq!(got.param("nonce"), Some("n\"1"));
        assert_eq!(got.param("uri"), Some("/a\"b"));
        // RFC 7616 §3.3: opaque comes back exactly as it was sent.
        assert_eq!(got.param("opaque"), Some("o,\"p\""));
    }

    #[test]
    fn non_ascii_user_name_uses_username_star() {
        // RFC 7616 §3.9.2's user, with an MD5 challenge we can answer.
        let header = session(
            r#"Digest realm="api@example.org", nonce="n", qop=auth"#,
            "c",
        )
        .authorization(
            &creds("J\u{e4}s\u{f8}n Doe", "Secret, or not?"),
            "GET",
            "/doe.json",
        )
        .expect("a header");
        assert!(
            header.starts_with("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm="),
            "{}",
            header.as_str()
        );
        let got = params(&header);
        assert_eq!(got.param("username"), None);
        assert_eq!(
            got.param("response"),
            Some("00dd4f8962ab0d2c10b43634da72a44d")
        );
    }

    #[test]
    fn userhash_is_declined() {
        let header = session(
            r#"Digest realm="r", nonce="n", qop=auth, userhash=true"#,
            "c",
        )
        .authorization(&creds("bob", "pw"), "GET", "/")
        .expect("a header");
        let got = params(&header);
        assert_eq!(got.param("userhash"), Some("false"));
        assert_eq!(got.param("username"), Some("bob"));
    }

    #[test]
    fn refusals() {
        let refuse = |value: &str| DigestSession::new(&challenge(value)).err();
        assert!(matches!(
            refuse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Some(AuthError::Unsupported { what: "qop", .. })
        ));
        assert!(matches!(
            refuse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#),
            Some(AuthError::Unsupported {
                what: "algorithm",
                ..
            })
        ));
        assert!(matches!(
            refuse(r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#),
            Some(AuthError::Unsupported { .. })
        ));
        assert_eq!(
            refuse(r#"Digest realm="r", qop="auth""#),
            Some(AuthError::MissingParam {
                scheme: "Digest",
                param: "nonce"
            })
        );
        assert_eq!(
            refuse(r#"Digest nonce="n""#),
            Some(AuthError::MissingParam {
                scheme: "Digest",
                param: "realm"
            })
        );
        assert!(matches!(
            refuse(r#"Basic realm="r", nonce="n""#),
            Some(AuthError::Malformed { .. })
        ));
        // Odd algorithm spellings must be refused, not sliced wrongly.
        for odd in [
            "-sess",
            "sess",
            "",
            "\u{e9}\u{e9}-sess",
            "MD5-sesss",
            "\u{e9}sess",
        ] {
            let value = format!(r#"Digest realm="r", nonce="n", qop=auth, algorithm="{odd}""#);
            assert!(refuse(&value).is_some(), "{odd}");
        }
    }

    #[test]
    fn empty_qop_is_the_legacy_form() {
        let s = session(r#"Digest realm="r", nonce="n", qop="""#, "c");
        assert_eq!(s.qop, Qop::None);
    }

    #[test]
    fn fresh_cnonces() {
        let ch = challenge(r#"Digest realm="r", nonce="n", qop=auth"#);
        let a = DigestSession::new(&ch).expect("a session");
        let b = DigestSession::new(&ch).expect("a session");
        assert_eq!(a.cnonce.len(), 2 * CNONCE_BYTES);
        assert!(a
            .cnonce
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a.cnonce, b.cnonce);
    }

    #[test]
    fn debug_holds_no_secret() {
        let mut s = rfc2617(r#", qop="auth""#);
        let c = creds("Mufasa", "Circle Of Life");
        s.authorization(&c, "GET", "/").expect("a header");
        let shown = format!("{s:?}");
        assert!(!shown.contains("Circle"));
        assert!(shown.contains(RFC2617_NONCE));
    }

    #[test]
    fn stale_flag() {
        assert!(is_stale(&challenge(
            r#"Digest realm="r", nonce="n", stale=TRUE"#
        )));
        assert!(!is_stale(&challenge(
            r#"Digest realm="r", nonce="n", stale=false"#
        )));
        assert!(!is_stale(&challenge(r#"Digest realm="r", nonce="n""#)));
    }
}
