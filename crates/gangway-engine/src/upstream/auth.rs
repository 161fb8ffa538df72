//! The per-upstream authentication state and the per-request state machine
//! that the connector's 407 loop drives. No sockets here: a leg is chosen,
//! the connector sends it, and the response decides the next leg.

use std::sync::Mutex;
use std::time::Duration;

use gangway_auth::challenge::{parse_challenges, strongest};
use gangway_auth::digest::{self, DigestSession};
use gangway_auth::ntlm::NtlmHandshake;
use gangway_auth::{basic, Challenge, Credentials, Scheme};
use http::{header, HeaderMap, StatusCode};
use zeroize::Zeroizing;

use super::gate::{CredentialGate, CredentialStatus, Pass, Refusal};
use crate::error::ProxyError;
use crate::settings::ProxyType;

/// How long a request waits for another one that is verifying unproven
/// credentials before giving up with 503-like error.
const VERIFY_WAIT: Duration = Duration::from_secs(30);

/// What the upstream taught us, shared by every connection.
#[derive(Debug, Default)]
struct Learned {
    scheme: Option<Scheme>,
    digest: Option<DigestSession>,
}

#[derive(Debug)]
pub struct AuthState {
    proxy_type: ProxyType,
    creds: Option<Credentials>,
    learned: Mutex<Learned>,
    pub gate: CredentialGate,
    upstream: String,
}

/// What goes on the next request leg.
pub enum Leg {
    /// No credentials. With `probe`, a body-less HEAD that learns the
    /// upstream's challenge without spending a streaming request body.
    Plain { probe: bool },
    /// Basic or Digest credentials on a request expected to complete.
    Credentials {
        value: Zeroizing<String>,
        scheme: Scheme,
    },
    /// NTLM Type 1: no secret in it, and never the request body.
    NtlmNegotiate { value: String },
    /// NTLM Type 3, on the connection that received the Type 2.
    NtlmAuthenticate { value: Zeroizing<String> },
}

impl Leg {
    pub fn header(&self) -> Option<&str> {
        match self {
            Leg::Plain { .. } => None,
            Leg::Credentials { value, .. } | Leg::NtlmAuthenticate { value } => Some(value),
            Leg::NtlmNegotiate { value } => Some(value),
        }
    }

    /// Whether this leg carries the real request body.
    pub fn carries_body(&self) -> bool {
        !matches!(self, Leg::Plain { probe: true } | Leg::NtlmNegotiate { .. })
    }

    pub fn is_probe(&self) -> bool {
        matches!(self, Leg::Plain { probe: true })
    }

    fn kind(&self) -> LegKind {
        match self {
            Leg::Plain { probe } => LegKind::Plain { probe: *probe },
            Leg::Credentials { scheme, .. } => LegKind::Credentials(scheme.clone()),
            Leg::NtlmNegotiate { .. } => LegKind::NtlmNegotiate,
            Leg::NtlmAuthenticate { .. } => LegKind::NtlmAuthenticate,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LegKind {
    Plain { probe: bool },
    Credentials(Scheme),
    NtlmNegotiate,
    NtlmAuthenticate,
}

/// The response to a leg says:
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This is the response for the client.
    Done,
    /// Send another leg; `same_connection` when the handshake is bound to
    /// the connection (NTLM).
    Again { same_connection: bool },
}

/// One request's way through authentication.
#[derive(Default)]
pub struct Attempt {
    last: Option<LegKind>,
    ntlm: Option<NtlmHandshake>,
    type2: Option<Challenge>,
    stale_retried: bool,
    no_auth_needed: bool,
    pass: Option<Pass>,
    /// Whether an NTLM handshake was already started over once.
    restarted: bool,
    /// 407 round trips taken.
    pub round_trips: u32,
    /// The scheme whose credentials this request used, if any.
    pub scheme: Option<Scheme>,
}

impl Attempt {
    /// The upstream closed the connection after its NTLM Type 2, before our
    /// Type 3 went out: start the handshake over on another connection,
    /// once. Safe for the account (no credentials were judged) and for the
    /// request (a Type 1 leg never carries its body). False when there is
    /// no such half-done handshake, or it was already restarted.
    pub fn restart_ntlm(&mut self) -> bool {
        if self.restarted || self.type2.is_none() {
            return false;
        }
        self.restarted = true;
        self.type2 = None;
        self.ntlm = None;
        self.last = None;
        true
    }
}

impl AuthState {
    pub fn new(
        proxy_type: ProxyType,
        creds: Option<Credentials>,
        gate: CredentialGate,
        upstream: String,
    ) -> Self {
        let scheme = match proxy_type {
            // NTLM starts with Type 1 straight away, like every NTLM client.
            ProxyType::Ntlm => Some(Scheme::Ntlm),
            _ => None,
        };
        AuthState {
            proxy_type,
            creds,
            learned: Mutex::new(Learned {
                scheme,
                digest: None,
            }),
            gate,
            upstream,
        }
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.creds.as_ref()
    }

    /// The scheme in use, once known.
    pub fn scheme(&self) -> Option<Scheme> {
        self.learned.lock().ok().and_then(|l| l.scheme.clone())
    }

    fn rejected(&self, scheme: &str) -> ProxyError {
        ProxyError::CredentialsRejected {
            upstream: self.upstream.clone(),
            user: self
                .creds
                .as_ref()
                .map(|c| c.display_name())
                .unwrap_or_default(),
            scheme: scheme.to_owned(),
        }
    }

    async fn pass(&self, a: &mut Attempt) -> Result<(), ProxyError> {
        if a.pass.is_none() {
            let pass = self
                .gate
                .pass(VERIFY_WAIT)
                .await
                .map_err(|refusal| match refusal {
                    Refusal::Rejected(scheme) => self.rejected(&scheme),
                    Refusal::StillVerifying => ProxyError::AuthFailed {
                        upstream: self.upstream.clone(),
                        reason: "another request is still verifying the credentials".into(),
                    },
                })?;
            a.pass = Some(pass);
        }
        Ok(())
    }

    /// Chooses the next leg. `conn_authenticated`: the connection already
    /// completed an NTLM handshake. `body_streams`: the request body can be
    /// sent only once.
    pub async fn next_leg(
        &self,
        a: &mut Attempt,
        conn_authenticated: bool,
        method: &str,
        uri: &str,
        body_streams: bool,
    ) -> Result<Leg, ProxyError> {
        let leg = self
            .choose_leg(a, conn_authenticated, method, uri, body_streams)
            .await?;
        a.last = Some(leg.kind());
        Ok(leg)
    }

    async fn choose_leg(
        &self,
        a: &mut Attempt,
        conn_authenticated: bool,
        method: &str,
        uri: &str,
        body_streams: bool,
    ) -> Result<Leg, ProxyError> {
        let Some(creds) = self.creds.as_ref() else {
            return Ok(Leg::Plain { probe: false });
        };
        if let Some(type2) = a.type2.take() {
            self.pass(a).await?;
            let ntlm = a.ntlm.get_or_insert_with(|| NtlmHandshake::new(creds));
            let value = ntlm
                .authenticate(creds, &type2)
                .map_err(|e| ProxyError::AuthFailed {
                    upstream: self.upstream.clone(),
                    reason: e.to_string(),
                })?;
            a.scheme = Some(Scheme::Ntlm);
            return Ok(Leg::NtlmAuthenticate { value });
        }
        if conn_authenticated || a.no_auth_needed {
            return Ok(Leg::Plain { probe: false });
        }
        if let CredentialStatus::Rejected { scheme, .. } = self.gate.status() {
            return Err(self.rejected(&scheme));
        }
        let scheme = self.scheme();
        match scheme {
            Some(Scheme::Ntlm) => {
                let mut ntlm = NtlmHandshake::new(creds);
                let value = ntlm.negotiate();
                a.ntlm = Some(ntlm);
                Ok(Leg::NtlmNegotiate { value })
            }
            Some(Scheme::Basic) => {
                self.pass(a).await?;
                a.scheme = Some(Scheme::Basic);
                Ok(Leg::Credentials {
                    value: basic::authorization(creds),
                    scheme: Scheme::Basic,
                })
            }
            Some(Scheme::Digest) => {
                self.pass(a).await?;
                let value = {
                    let mut learned = self.learned.lock().map_err(|_| self.poisoned())?;
                    match learned.digest.as_mut() {
                        Some(session) => {
                            Some(session.authorization(creds, method, uri).map_err(|e| {
                                ProxyError::AuthFailed {
                                    upstream: self.upstream.clone(),
                                    reason: e.to_string(),
                                }
                            })?)
                        }
                        None => None,
                    }
                };
                match value {
                    Some(value) => {
                        a.scheme = Some(Scheme::Digest);
                        Ok(Leg::Credentials {
                            value,
                            scheme: Scheme::Digest,
                        })
                    }
                    None => Ok(Leg::Plain {
                        probe: body_streams,
                    }),
                }
            }
            _ => Ok(Leg::Plain {
                probe: body_streams,
            }),
        }
    }

    fn poisoned(&self) -> ProxyError {
        ProxyError::AuthFailed {
            upstream: self.upstream.clone(),
            reason: "internal state poisoned".into(),
        }
    }

    /// Reads the upstream's answer to the last leg.
    pub fn on_response(
        &self,
        a: &mut Attempt,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Verdict, ProxyError> {
        let last = a.last.clone().unwrap_or(LegKind::Plain { probe: false });
        if status != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Ok(match last {
                LegKind::Plain { probe: true } => {
                    // The upstream let a HEAD through without credentials:
                    // send the real request the same way.
                    a.no_auth_needed = true;
                    Verdict::Again {
                        same_connection: false,
                    }
                }
                LegKind::Credentials(_) | LegKind::NtlmAuthenticate => {
                    self.gate.accept();
                    a.pass = None;
                    Verdict::Done
                }
                _ => Verdict::Done,
            });
        }
        a.round_trips += 1;
        let offers = parse_challenges(
            headers
                .get_all(header::PROXY_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let offered = || describe_offers(&offers);
        match last {
            LegKind::Plain { .. } => {
                if self.creds.is_none() {
                    return Err(ProxyError::AuthNotConfigured {
                        upstream: self.upstream.clone(),
                        offered: offered(),
                    });
                }
                let chosen =
                    self.choose_scheme(&offers)
                        .ok_or_else(|| ProxyError::AuthUnsupported {
                            upstream: self.upstream.clone(),
                            offered: offered(),
                        })?;
                let mut learned = self.learned.lock().map_err(|_| self.poisoned())?;
                if learned.scheme.as_ref() != Some(&chosen.scheme) {
                    tracing::info!(
                        "upstream {} offers {}; using {}",
                        self.upstream,
                        offered(),
                        chosen.scheme
                    );
                }
                learned.scheme = Some(chosen.scheme.clone());
                if chosen.scheme == Scheme::Digest {
                    learned.digest =
                        Some(
                            DigestSession::new(chosen).map_err(|e| ProxyError::AuthFailed {
                                upstream: self.upstream.clone(),
                                reason: e.to_string(),
                            })?,
                        );
                }
                Ok(Verdict::Again {
                    same_connection: false,
                })
            }
            LegKind::NtlmNegotiate => {
                let type2 = offers
                    .iter()
                    .find(|c| c.scheme == Scheme::Ntlm && c.token.is_some())
                    .cloned()
                    .ok_or_else(|| ProxyError::AuthFailed {
                        upstream: self.upstream.clone(),
                        reason: format!(
                            "answered the NTLM negotiate message without an NTLM challenge (offers: {})",
                            offered()
                        ),
                    })?;
                a.type2 = Some(type2);
                Ok(Verdict::Again {
                    same_connection: true,
                })
            }
            LegKind::Credentials(Scheme::Digest) => {
                let fresh = offers.iter().find(|c| c.scheme == Scheme::Digest);
                match fresh {
                    // RFC 7616 §3.3: stale means the nonce, not the
                    // password, was refused. Once per request, quietly.
                    Some(ch) if digest::is_stale(ch) && !a.stale_retried => {
                        a.stale_retried = true;
                        let session =
                            DigestSession::new(ch).map_err(|e| ProxyError::AuthFailed {
                                upstream: self.upstream.clone(),
                                reason: e.to_string(),
                            })?;
                        let mut learned = self.learned.lock().map_err(|_| self.poisoned())?;
                        learned.digest = Some(session);
                        Ok(Verdict::Again {
                            same_connection: false,
                        })
                    }
                    _ => Err(self.reject("Digest")),
                }
            }
            LegKind::Credentials(scheme) => Err(self.reject(&scheme.to_string())),
            LegKind::NtlmAuthenticate => Err(self.reject("NTLM")),
        }
    }

    fn reject(&self, scheme: &str) -> ProxyError {
        let user = self
            .creds
            .as_ref()
            .map(|c| c.display_name())
            .unwrap_or_default();
        self.gate.reject(scheme, &self.upstream, &user);
        self.rejected(scheme)
    }

    /// The offer to answer: the configured scheme, or with `auto` the
    /// strongest one Gangway can do.
    fn choose_scheme<'a>(&self, offers: &'a [Challenge]) -> Option<&'a Challenge> {
        strongest(offers, |s| self.proxy_type.accepts(s))
    }
}

/// "NTLM, Negotiate and Basic" for messages.
fn describe_offers(offers: &[Challenge]) -> String {
    if offers.is_empty() {
        return "no authentication scheme".into();
    }
    let mut names: Vec<String> = Vec::new();
    for c in offers {
        let n = c.scheme.to_string();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_auth::Password;
    use http::HeaderValue;
    use std::sync::Arc;

    fn state(t: ProxyType) -> AuthState {
        let creds = Credentials::new("alice", None, Password::from("pw"), "WS");
        AuthState::new(
            t,
            Some(creds),
            CredentialGate::new(Arc::default()),
            "proxy:3128".into(),
        )
    }

    fn challenge(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    const DENIED: StatusCode = StatusCode::PROXY_AUTHENTICATION_REQUIRED;

    async fn leg(s: &AuthState, a: &mut Attempt) -> Leg {
        s.next_leg(a, false, "GET", "http://example.com/", false)
            .await
            .expect("leg")
    }

    #[tokio::test]
    async fn basic_learns_then_goes_preemptive_and_stops_after_rejection() {
        let s = state(ProxyType::Basic);
        let mut a = Attempt::default();
        assert!(matches!(leg(&s, &mut a).await, Leg::Plain { probe: false }));
        let v = s.on_response(&mut a, DENIED, &challenge(&["Basic realm=\"x\""]));
        assert_eq!(
            v.expect("again"),
            Verdict::Again {
                same_connection: false
            }
        );
        let l = leg(&s, &mut a).await;
        assert_eq!(l.header(), Some("Basic YWxpY2U6cHc="));
        assert_eq!(
            s.on_response(&mut a, StatusCode::OK, &HeaderMap::new())
                .expect("done"),
            Verdict::Done
        );

        // Next request: credentials up front, no 407 round trip.
        let mut b = Attempt::default();
        assert!(leg(&s, &mut b).await.header().is_some());
        let err = s
            .on_response(&mut b, DENIED, &challenge(&["Basic realm=\"x\""]))
            .expect_err("rejected");
        assert!(matches!(err, ProxyError::CredentialsRejected { .. }));
        // Every later request is refused without touching the upstream.
        let mut c = Attempt::default();
        let err = s
            .next_leg(&mut c, false, "GET", "http://example.com/", false)
            .await
            .err();
        assert!(matches!(err, Some(ProxyError::CredentialsRejected { .. })));
        assert_eq!(s.gate.failures(), 1);
    }

    #[tokio::test]
    async fn digest_retries_a_stale_nonce_once() {
        let s = state(ProxyType::Digest);
        let mut a = Attempt::default();
        leg(&s, &mut a).await;
        let first = challenge(&["Digest realm=\"r\", nonce=\"n1\", qop=\"auth\""]);
        assert!(s.on_response(&mut a, DENIED, &first).is_ok());
        assert!(leg(&s, &mut a)
            .await
            .header()
            .is_some_and(|h| h.contains("nonce=\"n1\"")));
        let stale = challenge(&["Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", stale=true"]);
        assert_eq!(
            s.on_response(&mut a, DENIED, &stale)
                .expect("stale is not a rejection"),
            Verdict::Again {
                same_connection: false
            }
        );
        assert!(leg(&s, &mut a)
            .await
            .header()
            .is_some_and(|h| h.contains("nonce=\"n2\"")));
        // A second stale in the same request means the password is wrong.
        let stale3 = challenge(&["Digest realm=\"r\", nonce=\"n3\", qop=\"auth\", stale=true"]);
        assert!(matches!(
            s.on_response(&mut a, DENIED, &stale3),
            Err(ProxyError::CredentialsRejected { .. })
        ));
    }

    #[tokio::test]
    async fn ntlm_starts_with_type1_and_needs_the_same_connection() {
        let s = state(ProxyType::Ntlm);
        let mut a = Attempt::default();
        let l = leg(&s, &mut a).await;
        assert!(matches!(l, Leg::NtlmNegotiate { .. }));
        assert!(!l.carries_body());
        let no_token = s.on_response(&mut a, DENIED, &challenge(&["NTLM"]));
        assert!(matches!(no_token, Err(ProxyError::AuthFailed { .. })));
    }

    /// MS-NLMP §4.2.4.3's CHALLENGE_MESSAGE.
    const SPEC_TYPE2: &str = "NTLM TlRMTVNTUAACAAAADAAMADgAAAAzgoriASNFZ4mrze8AAAAAAAAAACQAJABEAAAABgBwFwAAAA9TAGUAcgB2AGUAcgACAAwARABvAG0AYQBpAG4AAQAMAFMAZQByAHYAZQByAAAAAAA=";

    #[tokio::test]
    async fn an_ntlm_handshake_cut_after_type2_starts_over_once() {
        let s = state(ProxyType::Ntlm);
        let mut a = Attempt::default();
        // Nothing half done yet: nothing to restart.
        assert!(!a.restart_ntlm());
        assert!(matches!(leg(&s, &mut a).await, Leg::NtlmNegotiate { .. }));
        let again = s.on_response(&mut a, DENIED, &challenge(&[SPEC_TYPE2]));
        assert_eq!(
            again.expect("type 2"),
            Verdict::Again {
                same_connection: true
            }
        );
        // The connection closed here: Type 1 again, on another connection.
        assert!(a.restart_ntlm());
        assert!(matches!(leg(&s, &mut a).await, Leg::NtlmNegotiate { .. }));
        assert!(s
            .on_response(&mut a, DENIED, &challenge(&[SPEC_TYPE2]))
            .is_ok());
        // Only once per request.
        assert!(!a.restart_ntlm());
        assert!(matches!(
            leg(&s, &mut a).await,
            Leg::NtlmAuthenticate { .. }
        ));
        // After Type 3 went out there is nothing to restart either.
        assert!(!a.restart_ntlm());
        assert_eq!(s.gate.failures(), 0);
    }

    #[tokio::test]
    async fn auto_picks_the_strongest_and_unsupported_is_named() {
        let s = state(ProxyType::Auto);
        let mut a = Attempt::default();
        leg(&s, &mut a).await;
        let offers = challenge(&["Basic realm=\"x\"", "NTLM", "Negotiate"]);
        assert!(s.on_response(&mut a, DENIED, &offers).is_ok());
        assert_eq!(s.scheme(), Some(Scheme::Ntlm));

        let s = state(ProxyType::Auto);
        let mut a = Attempt::default();
        leg(&s, &mut a).await;
        match s.on_response(&mut a, DENIED, &challenge(&["Negotiate", "Kerberos"])) {
            Err(ProxyError::AuthUnsupported { offered, .. }) => {
                assert_eq!(offered, "Negotiate, Kerberos")
            }
            other => panic!("expected unsupported, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn streaming_bodies_probe_with_head_first() {
        let s = state(ProxyType::Basic);
        let mut a = Attempt::default();
        let l = s
            .next_leg(&mut a, false, "POST", "http://example.com/", true)
            .await
            .expect("leg");
        assert!(l.is_probe() && !l.carries_body());
    }
}
