//! The upstream password: in the OS keyring (Secret Service on Linux,
//! Credential Manager on Windows) under service `gangway` and account
//! `user@upstream`, or, when the user chose it because no keyring is
//! available, in this process's memory for the session only. Never in a
//! file, and never in a log line.
//!
//! The keyring API is blocking (D-Bus round trips, possibly an unlock
//! prompt), so every call runs on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gangway_engine::Password;
use serde::Serialize;

/// The keyring service name every Gangway entry is stored under.
pub const SERVICE: &str = "gangway";

/// Where a password is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    Keyring,
    /// In memory until the app quits.
    Session,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    /// No Secret Service / Credential Manager to talk to: the user must
    /// choose session-only storage explicitly.
    #[error("no keyring is available ({0}). Gangway will not write the password to a file; you can keep it in memory for this session only")]
    Unavailable(String),
    #[error("the keyring refused the request: {0}")]
    Failed(String),
}

/// A password store. The OS keyring in the app; fakes in unit tests.
pub trait SecretStore: Send + Sync + 'static {
    fn set(&self, account: &str, password: &Password) -> Result<(), SecretsError>;
    fn get(&self, account: &str) -> Result<Option<Password>, SecretsError>;
    fn delete(&self, account: &str) -> Result<(), SecretsError>;
}

/// The OS keyring through the `keyring` crate, built with its platform
/// features (see Cargo.toml) so that it never falls back to its mock store.
#[derive(Debug, Default)]
pub struct OsKeyring;

impl OsKeyring {
    fn entry(account: &str) -> Result<keyring::Entry, SecretsError> {
        keyring::Entry::new(SERVICE, account).map_err(map_keyring_error)
    }
}

impl SecretStore for OsKeyring {
    fn set(&self, account: &str, password: &Password) -> Result<(), SecretsError> {
        Self::entry(account)?
            .set_password(password.expose())
            .map_err(map_keyring_error)
    }

    fn get(&self, account: &str) -> Result<Option<Password>, SecretsError> {
        match Self::entry(account)?.get_password() {
            Ok(p) => Ok(Some(Password::new(p))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(e)),
        }
    }

    fn delete(&self, account: &str) -> Result<(), SecretsError> {
        match Self::entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring_error(e)),
        }
    }
}

/// "No store at all" and "the store said no" need different answers in
/// the UI: only the first offers session-only memory.
fn map_keyring_error(e: keyring::Error) -> SecretsError {
    match e {
        keyring::Error::NoStorageAccess(inner) | keyring::Error::PlatformFailure(inner) => {
            SecretsError::Unavailable(inner.to_string())
        }
        other => SecretsError::Failed(other.to_string()),
    }
}

/// The app's password keeper: a [`SecretStore`] plus the session memory.
#[derive(Clone)]
pub struct Secrets {
    store: Arc<dyn SecretStore>,
    session: Arc<Mutex<HashMap<String, Password>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        Secrets {
            store,
            session: Arc::default(),
        }
    }

    /// The OS keyring.
    pub fn os() -> Self {
        Self::new(Arc::new(OsKeyring))
    }

    /// Stores `password` for `account`: in the keyring, or in memory when
    /// `session_only` (an explicit choice; never a silent fallback).
    pub async fn store(
        &self,
        account: &str,
        password: Password,
        session_only: bool,
    ) -> Result<Storage, SecretsError> {
        if session_only {
            self.remember(account, password);
            return Ok(Storage::Session);
        }
        let store = self.store.clone();
        let acct = account.to_owned();
        let pw = password.clone();
        blocking(move || store.set(&acct, &pw)).await?;
        // A keyring copy supersedes an older session one.
        self.forget_session(account);
        Ok(Storage::Keyring)
    }

    /// The password for `account`, session memory first (it is what the
    /// user chose most recently when the keyring is missing).
    pub async fn load(&self, account: &str) -> Result<Option<(Password, Storage)>, SecretsError> {
        if let Some(p) = self.session_password(account) {
            return Ok(Some((p, Storage::Session)));
        }
        let store = self.store.clone();
        let acct = account.to_owned();
        let found = blocking(move || store.get(&acct)).await?;
        Ok(found.map(|p| (p, Storage::Keyring)))
    }

    /// Removes `account` everywhere (when the user clears the password).
    pub async fn delete(&self, account: &str) -> Result<(), SecretsError> {
        self.forget_session(account);
        let store = self.store.clone();
        let acct = account.to_owned();
        blocking(move || store.delete(&acct)).await
    }

    fn remember(&self, account: &str, password: Password) {
        if let Ok(mut m) = self.session.lock() {
            m.insert(account.to_owned(), password);
        }
    }

    fn forget_session(&self, account: &str) {
        if let Ok(mut m) = self.session.lock() {
            m.remove(account);
        }
    }

    fn session_password(&self, account: &str) -> Option<Password> {
        self.session
            .lock()
            .ok()
            .and_then(|m| m.get(account).cloned())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SecretsError> + Send + 'static,
) -> Result<T, SecretsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SecretsError::Failed(format!("keyring worker stopped: {e}")))?
}

/// In-memory fakes for unit tests: a working store and a missing one.
#[cfg(test)]
pub mod testing {
    use super::*;

    #[derive(Default)]
    pub struct MemoryStore(pub Mutex<HashMap<String, Password>>);

    impl SecretStore for MemoryStore {
        fn set(&self, account: &str, password: &Password) -> Result<(), SecretsError> {
            let mut m = self
                .0
                .lock()
                .map_err(|_| SecretsError::Failed("poisoned".into()))?;
            m.insert(account.to_owned(), password.clone());
            Ok(())
        }
        fn get(&self, account: &str) -> Result<Option<Password>, SecretsError> {
            let m = self
                .0
                .lock()
                .map_err(|_| SecretsError::Failed("poisoned".into()))?;
            Ok(m.get(account).cloned())
        }
        fn delete(&self, account: &str) -> Result<(), SecretsError> {
            if let Ok(mut m) = self.0.lock() {
                m.remove(account);
            }
            Ok(())
        }
    }

    /// Behaves like a machine with no Secret Service running.
    pub struct NoKeyring;

    impl SecretStore for NoKeyring {
        fn set(&self, _: &str, _: &Password) -> Result<(), SecretsError> {
            Err(SecretsError::Unavailable("no session bus".into()))
        }
        fn get(&self, _: &str) -> Result<Option<Password>, SecretsError> {
            Err(SecretsError::Unavailable("no session bus".into()))
        }
        fn delete(&self, _: &str) -> Result<(), SecretsError> {
            Err(SecretsError::Unavailable("no session bus".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[tokio::test]
    async fn keyring_then_load() {
        let s = Secrets::new(Arc::new(MemoryStore::default()));
        let at = s.store("bob@p:1", "pw".into(), false).await.expect("store");
        assert_eq!(at, Storage::Keyring);
        let (p, at) = s.load("bob@p:1").await.expect("load").expect("found");
        assert_eq!((p.expose(), at), ("pw", Storage::Keyring));
        assert!(s.load("eve@p:1").await.expect("load").is_none());
    }

    #[tokio::test]
    async fn no_keyring_is_an_error_until_session_is_chosen() {
        let s = Secrets::new(Arc::new(NoKeyring));
        let err = s
            .store("bob@p:1", "pw".into(), false)
            .await
            .expect_err("no keyring");
        assert!(matches!(err, SecretsError::Unavailable(_)));
        assert!(err.to_string().contains("for this session only"), "{err}");
        let at = s
            .store("bob@p:1", "pw".into(), true)
            .await
            .expect("session");
        assert_eq!(at, Storage::Session);
        let (_, at) = s.load("bob@p:1").await.expect("load").expect("found");
        assert_eq!(at, Storage::Session);
        assert_eq!(format!("{s:?}"), "Secrets(<redacted>)");
    }
}
