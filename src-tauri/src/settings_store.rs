//! The app's non-secret settings, kept as JSON in the OS config directory
//! (`~/.config/io.gangway.desktop/settings.json` on Linux). The password is
//! not a field here and so can never reach this file; see [`crate::secrets`].

use std::io;
use std::path::{Path, PathBuf};

use gangway_engine::settings::{DEFAULT_BYPASS, DEFAULT_PORT};
use gangway_engine::{ProxyType, SettingsFile};
use serde::{Deserialize, Serialize};

/// The file's name inside the config directory.
pub const SETTINGS_FILE: &str = "settings.json";
/// The upstream port a form starts with: the common corporate one.
pub const DEFAULT_UPSTREAM_PORT: u16 = 8080;

/// What the settings window edits, minus the password.
///
/// Unknown keys are ignored and missing ones take defaults, so a file
/// written by an older or newer version still loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    pub proxy_type: ProxyType,
    /// Empty: no upstream, every request goes direct.
    pub upstream_host: String,
    pub upstream_port: u16,
    pub user: String,
    /// NTLM domain or Digest realm; empty when the user name carries it.
    pub realm: String,
    pub listen_address: String,
    pub listen_port: u16,
    pub bypass: Vec<String>,
    pub start_at_login: bool,
    pub enable_on_start: bool,
}

impl Default for AppSettings {
    /// A plain local proxy on 127.0.0.1:3128 with no upstream.
    fn default() -> Self {
        AppSettings {
            proxy_type: ProxyType::Noauth,
            upstream_host: String::new(),
            upstream_port: DEFAULT_UPSTREAM_PORT,
            user: String::new(),
            realm: String::new(),
            listen_address: "127.0.0.1".into(),
            listen_port: DEFAULT_PORT,
            bypass: DEFAULT_BYPASS.iter().map(|s| s.to_string()).collect(),
            start_at_login: false,
            enable_on_start: false,
        }
    }
}

impl AppSettings {
    /// `host:port` of the upstream, bracketing IPv6; `None` when direct.
    pub fn upstream_authority(&self) -> Option<String> {
        let host = self.upstream_host.trim();
        if host.is_empty() {
            return None;
        }
        let host = host.trim_start_matches("http://").trim_end_matches('/');
        Some(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.upstream_port)
        } else {
            format!("{host}:{}", self.upstream_port)
        })
    }

    /// The configured listen address, when it parses.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = self
            .listen_address
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        Some(std::net::SocketAddr::new(ip, self.listen_port))
    }

    /// Whether the engine will want a password for these settings.
    pub fn needs_password(&self) -> bool {
        self.proxy_type.needs_credentials() && self.upstream_authority().is_some()
    }

    /// The keyring account: `user@upstream`, so switching upstreams or
    /// users never sends one account's password to another proxy.
    pub fn keyring_account(&self) -> Option<String> {
        let user = self.user.trim();
        if user.is_empty() || !self.needs_password() {
            return None;
        }
        self.upstream_authority().map(|up| format!("{user}@{up}"))
    }

    /// The engine's raw form; the engine validates it.
    pub fn to_engine_file(&self) -> SettingsFile {
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        SettingsFile {
            listen_address: opt(&self.listen_address),
            port: Some(self.listen_port),
            proxy: self.upstream_authority(),
            proxy_type: Some(self.proxy_type),
            user: opt(&self.user),
            realm: opt(&self.realm),
            // Always explicit: an empty list means "nothing bypasses", which
            // differs from the engine's default.
            bypass: Some(self.bypass.clone()),
            ..SettingsFile::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the settings file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the settings file {path} is damaged ({reason}); fix or delete it")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot save the settings file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads and writes [`AppSettings`] in one directory.
#[derive(Clone, Debug)]
pub struct SettingsStore {
    path: PathBuf,
}

impl SettingsStore {
    pub fn new(config_dir: &Path) -> Self {
        SettingsStore {
            path: config_dir.join(SETTINGS_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether settings were ever saved (the first run opens the window).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The saved settings, or the defaults when none were saved yet.
    pub fn load(&self) -> Result<AppSettings, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AppSettings::default()),
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| StoreError::Parse {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes atomically (temp file, then rename) with mode 0600, so a
    /// crash never leaves half a file and other users cannot read it.
    pub fn save(&self, settings: &AppSettings) -> Result<(), StoreError> {
        let err = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(settings)
            .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        write_private(&self.path, text.as_bytes()).map_err(err)
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory,
/// readable by the owner only on Unix. Shared with the proxy snapshot.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    // A pre-existing temp file keeps its old mode through `open`: fix it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_plain_local_proxy() {
        let s = AppSettings::default();
        let engine = s.to_engine_file().validate(None).expect("valid");
        assert_eq!(engine.describe(), "127.0.0.1:3128 -> direct");
        assert!(s.keyring_account().is_none());
    }

    #[test]
    fn save_and_load_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SettingsStore::new(dir.path());
        assert!(!store.exists());
        assert_eq!(store.load().expect("defaults"), AppSettings::default());
        let s = AppSettings {
            proxy_type: ProxyType::Ntlm,
            upstream_host: "proxy.corp".into(),
            user: "CORP\\bob".into(),
            bypass: vec![],
            ..AppSettings::default()
        };
        store.save(&s).expect("save");
        assert_eq!(store.load().expect("load"), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path()).expect("meta").permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        assert_eq!(
            s.keyring_account().as_deref(),
            Some("CORP\\bob@proxy.corp:8080")
        );
    }

    #[test]
    fn a_damaged_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SettingsStore::new(dir.path());
        std::fs::write(store.path(), "{not json").expect("write");
        let err = store.load().expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn ipv6_upstreams_are_bracketed() {
        let s = AppSettings {
            upstream_host: "::1".into(),
            upstream_port: 3128,
            ..AppSettings::default()
        };
        assert_eq!(s.upstream_authority().as_deref(), Some("[::1]:3128"));
    }
}
