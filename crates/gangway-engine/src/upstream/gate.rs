//! Lockout safety. Corporate accounts lock after 3 to 5 failed attempts, so
//! credentials that have not yet been accepted are tried by one request at
//! a time, and credentials the upstream rejected are not sent again until
//! they change or the user asks for a retry.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::stats::Stats;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum CredentialStatus {
    /// Not tried yet since they were set.
    Unverified,
    Accepted,
    /// Rejected by the upstream; `at` in seconds since the epoch.
    Rejected {
        scheme: String,
        at: u64,
    },
}

#[derive(Debug)]
pub struct CredentialGate {
    status: Mutex<CredentialStatus>,
    verifier: Arc<Semaphore>,
    stats: Arc<Stats>,
    /// Rejections since start, across retries.
    failures: std::sync::atomic::AtomicU32,
}

/// Why a request may not send the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The upstream rejected them with this scheme.
    Rejected(String),
    /// Another request is still verifying them and did not finish in time.
    StillVerifying,
}

/// Permission to send credentials. Holding `Some` permit means this
/// request is the one verifying unproven credentials; dropping it without
/// a verdict lets the next request try.
#[derive(Debug)]
pub struct Pass(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl CredentialGate {
    pub fn new(stats: Arc<Stats>) -> Self {
        CredentialGate {
            status: Mutex::new(CredentialStatus::Unverified),
            verifier: Arc::new(Semaphore::new(1)),
            stats,
            failures: Default::default(),
        }
    }

    pub fn status(&self) -> CredentialStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(CredentialStatus::Unverified)
    }

    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// Waits (up to `wait`) until this request may send credentials.
    pub async fn pass(&self, wait: Duration) -> Result<Pass, Refusal> {
        loop {
            match self.status() {
                CredentialStatus::Accepted => return Ok(Pass(None)),
                CredentialStatus::Rejected { scheme, .. } => return Err(Refusal::Rejected(scheme)),
                CredentialStatus::Unverified => {}
            }
            let permit = tokio::time::timeout(wait, self.verifier.clone().acquire_owned())
                .await
                .map_err(|_| Refusal::StillVerifying)?
                .map_err(|_| Refusal::StillVerifying)?;
            if self.status() == CredentialStatus::Unverified {
                return Ok(Pass(Some(permit)));
            }
            // Someone else reached a verdict while we waited: look again.
        }
    }

    pub fn accept(&self) {
        if let Ok(mut s) = self.status.lock() {
            if *s == CredentialStatus::Unverified {
                tracing::info!("upstream accepted the configured credentials");
                *s = CredentialStatus::Accepted;
            }
        }
    }

    /// Records a rejection. Logged loudly, once per credential setting.
    pub fn reject(&self, scheme: &str, upstream: &str, user: &str) {
        if let Ok(mut s) = self.status.lock() {
            if matches!(*s, CredentialStatus::Rejected { .. }) {
                return;
            }
            let at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            *s = CredentialStatus::Rejected {
                scheme: scheme.to_owned(),
                at,
            };
            self.failures.fetch_add(1, Relaxed);
            self.stats.auth_failures.fetch_add(1, Relaxed);
            tracing::error!(
                "UPSTREAM REJECTED THE CREDENTIALS: {upstream} refused {scheme} as {user}. \
                 Gangway stops sending them so the account does not lock out. \
                 Fix the password, then retry (SIGHUP, restart, or the app's Retry)."
            );
        }
    }

    /// Forgets a rejection: the user changed the credentials or asked to
    /// try again. Exactly one more attempt will be made.
    pub fn reset(&self) {
        if let Ok(mut s) = self.status.lock() {
            *s = CredentialStatus::Unverified;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_one_unverified_attempt_at_a_time() {
        let gate = Arc::new(CredentialGate::new(Arc::default()));
        let first = gate.pass(Duration::from_secs(1)).await.expect("first");
        // A second request waits while the first verifies...
        let g2 = gate.clone();
        let waiter = tokio::spawn(async move { g2.pass(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // ...and learns the verdict instead of trying itself.
        gate.reject("Basic", "proxy:8080", "alice");
        drop(first);
        assert_eq!(
            waiter.await.expect("join").err(),
            Some(Refusal::Rejected("Basic".to_owned()))
        );
        assert_eq!(gate.failures(), 1);
        gate.reset();
        assert!(gate.pass(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn accepted_credentials_flow_freely() {
        let gate = CredentialGate::new(Arc::default());
        let p = gate.pass(Duration::from_secs(1)).await.expect("pass");
        gate.accept();
        drop(p);
        let a = gate.pass(Duration::from_secs(1)).await.expect("a");
        let b = gate.pass(Duration::from_secs(1)).await.expect("b");
        assert!(a.0.is_none() && b.0.is_none());
    }
}
