//! `probe`: asks the upstream which schemes it offers, tries the
//! configured credentials exactly once through the same code path the
//! bridge uses, and says what happened in words. Like `cntlm -M`, without
//! burning several attempts on a corporate account.

use std::fmt;
use std::sync::Arc;

use gangway_auth::challenge::parse_challenges;
use http::{header, Method, Request, StatusCode};
use serde::Serialize;

use crate::error::ProxyError;
use crate::settings::{Timeouts, UpstreamSettings};
use crate::stats::Stats;
use crate::upstream::pool::Pool;
use crate::upstream::{Connector, Payload, Upstream};

/// The URL the probe asks the upstream for. Only the upstream's answer
/// about authentication matters; the origin need not be reachable.
pub const DEFAULT_PROBE_URL: &str = "http://example.com/";

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The upstream let an unauthenticated request through.
    NoAuthNeeded,
    Accepted {
        scheme: String,
        user: String,
    },
    Rejected {
        scheme: String,
        user: String,
    },
    /// Authentication is required but no credentials are configured.
    NeedsCredentials,
    /// The upstream offers only schemes Gangway cannot do (e.g. Negotiate).
    Unsupported,
    Unreachable {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProbeReport {
    pub upstream: String,
    /// The schemes the upstream offered, as it named them.
    pub offered: Vec<String>,
    pub verdict: Verdict,
}

impl ProbeReport {
    /// True when the bridge will work with these settings.
    pub fn ok(&self) -> bool {
        matches!(
            self.verdict,
            Verdict::NoAuthNeeded | Verdict::Accepted { .. }
        )
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offered = if self.offered.is_empty() {
            "no authentication".to_owned()
        } else {
            self.offered.join(", ")
        };
        match &self.verdict {
            Verdict::NoAuthNeeded => {
                write!(f, "{}: reachable, no authentication needed", self.upstream)
            }
            Verdict::Accepted { scheme, user } => {
                let scheme = if scheme == "NTLM" { "NTLMv2" } else { scheme };
                write!(
                    f,
                    "{}: {scheme} as {user}: accepted (offers {offered})",
                    self.upstream
                )
            }
            Verdict::Rejected { scheme, user } => write!(
                f,
                "{}: {scheme} as {user}: credentials rejected (tried once; offers {offered})",
                self.upstream
            ),
            Verdict::NeedsCredentials => write!(
                f,
                "{}: requires authentication ({offered}) but no credentials are configured",
                self.upstream
            ),
            Verdict::Unsupported => write!(
                f,
                "{}: offers only {offered}, which Gangway cannot do with these settings",
                self.upstream
            ),
            Verdict::Unreachable { reason } => {
                write!(f, "{}: upstream unreachable: {reason}", self.upstream)
            }
            Verdict::Failed { reason } => write!(f, "{}: probe failed: {reason}", self.upstream),
        }
    }
}

/// Probes `upstream` with one unauthenticated request, then (when
/// credentials are configured and asked for) one authenticated exchange.
pub async fn probe(upstream: &UpstreamSettings, timeouts: &Timeouts, url: &str) -> ProbeReport {
    let stats = Arc::new(Stats::default());
    let up = Upstream::new(upstream.clone(), 1, stats);
    let connector = Connector::new(Pool::new(0, timeouts.pool_idle));
    let authority = up.link.authority();
    let mut report = ProbeReport {
        upstream: authority.clone(),
        offered: Vec::new(),
        verdict: Verdict::Failed {
            reason: "not run".into(),
        },
    };
    let head = match Request::builder()
        .method(Method::HEAD)
        .uri(url)
        .header(header::HOST, host_of(url))
        .header(
            header::USER_AGENT,
            concat!("gangway-probe/", env!("CARGO_PKG_VERSION")),
        )
        .body(())
    {
        Ok(r) => r.into_parts().0,
        Err(e) => {
            report.verdict = Verdict::Failed {
                reason: format!("bad probe URL {url}: {e}"),
            };
            return report;
        }
    };

    // 1. What does the upstream ask for? No credentials on this one.
    let plain = connector
        .exchange(&up.link, None, &head, Payload::None, url, timeouts)
        .await;
    let plain = match plain {
        Ok(ex) => ex,
        Err(e) => {
            report.verdict = verdict_for_error(e);
            return report;
        }
    };
    if plain.response.status() != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        report.verdict = Verdict::NoAuthNeeded;
        return report;
    }
    let offers = parse_challenges(
        plain
            .response
            .headers()
            .get_all(header::PROXY_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    for o in &offers {
        let name = o.scheme.to_string();
        if !report.offered.contains(&name) {
            report.offered.push(name);
        }
    }
    drop(plain);
    let Some(creds) = upstream.credentials.as_ref() else {
        report.verdict = Verdict::NeedsCredentials;
        return report;
    };
    // Say so before spending an attempt when the configured scheme is not
    // on offer at all.
    if !offers
        .iter()
        .any(|o| upstream.proxy_type.accepts(&o.scheme))
    {
        report.verdict = Verdict::Unsupported;
        return report;
    }

    // 2. One authenticated exchange, exactly as the bridge would do it.
    let user = creds.display_name();
    report.verdict = match connector
        .exchange(
            &up.link,
            Some(&up.auth),
            &head,
            Payload::None,
            url,
            timeouts,
        )
        .await
    {
        Ok(ex) => Verdict::Accepted {
            scheme: ex
                .auth
                .map(|a| a.scheme)
                .or_else(|| up.auth.scheme().map(|s| s.to_string()))
                .unwrap_or_else(|| "none".into()),
            user,
        },
        Err(ProxyError::CredentialsRejected { scheme, .. }) => Verdict::Rejected { scheme, user },
        Err(ProxyError::AuthUnsupported { .. }) => Verdict::Unsupported,
        Err(e) => verdict_for_error(e),
    };
    report
}

fn verdict_for_error(e: ProxyError) -> Verdict {
    match e {
        ProxyError::UpstreamUnreachable { .. } | ProxyError::ConnectTimeout { .. } => {
            Verdict::Unreachable {
                reason: e.to_string(),
            }
        }
        other => Verdict::Failed {
            reason: other.to_string(),
        },
    }
}

fn host_of(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}
