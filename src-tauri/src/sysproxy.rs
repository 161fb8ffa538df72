//! Switching the desktop's proxy setting to the bridge and back, exactly.
//!
//! The platform part ([`ProxyBackend`]: GNOME's gsettings, Windows' WinINet
//! per-connection options and HKCU Internet Settings) only reads and writes
//! named values as text. This module owns the policy, the same on every
//! platform:
//!
//! 1. **Snapshot first.** Before anything is changed, every value we may
//!    touch is read and written to `proxy-snapshot.json` in the app data
//!    directory. A crash after that point can always be undone.
//! 2. **Write, then read back.** Each written value is read again; a value
//!    that did not stick is reported in words (tools like `sysproxy` report
//!    success even with no session bus, having written nothing).
//! 3. **Restore only what is still ours.** On disable or quit each value is
//!    put back only if it still holds what we wrote, so a change the user
//!    made meanwhile survives.
//! 4. **Recover after a crash.** A snapshot left at startup while the
//!    system still holds the bridge's values means we died while enabled:
//!    restore what is still ours, and say so once. The on/off switches
//!    (GNOME's mode; on Windows each connection's flags and ProxyEnable)
//!    are written last and restored first, so a crash halfway through
//!    never leaves one on over a half-written setting.
//!
//! The `sysproxy` crate is not used: on Linux it only shells out to
//! gsettings without checking the result and sets SOCKS too; on Windows it
//! cannot parse a `ProxyServer` holding a host name. Both backends here are
//! small enough to own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(target_os = "linux")]
mod gnome;
// Its text helpers are unit-tested on every platform.
#[cfg(any(windows, test))]
mod windows;

/// The snapshot's file name in the app data directory.
pub const SNAPSHOT_FILE: &str = "proxy-snapshot.json";

/// A setting's value as the platform prints it (`'manual'`, `3128`,
/// `['localhost']`, `dword:1`); `None` when it is absent.
pub type Value = Option<String>;
/// Values by key (`org.gnome.system.proxy.http host`, `ProxyEnable`).
pub type Values = BTreeMap<String, Value>;

/// One platform's proxy settings, read and written as text.
pub trait ProxyBackend: Send + Sync + 'static {
    /// A short name stored in the snapshot (`gnome`, `windows`).
    fn name(&self) -> &'static str;
    /// Every key the snapshot records (a superset of what we write).
    fn snapshot_keys(&self) -> Vec<String>;
    /// What pointing the system at the bridge means, key by key.
    fn desired(&self, bridge: SocketAddr, bypass: &[String]) -> Values;
    /// The key that turns the manual proxy on (GNOME's mode, Windows' LAN
    /// flags): written last and restored first, so a crash halfway
    /// through never leaves the switch on over half-written values.
    fn switch_key(&self) -> String;
    /// Whether `key` is a switch, for backends with more than one (Windows:
    /// one per connection). Switches are written after, and restored
    /// before, every other key.
    fn is_switch(&self, key: &str) -> bool {
        key == self.switch_key()
    }
    fn read(&self, key: &str) -> Result<Value, ProxyError>;
    fn write(&self, key: &str, value: &Value) -> Result<(), ProxyError>;
    /// Tells running programs the settings changed (Windows' WinInet).
    fn notify(&self) {}
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("this desktop's proxy settings cannot be changed: {0}")]
    Unsupported(String),
    #[error("reading the system proxy setting {key} failed: {reason}")]
    Read { key: String, reason: String },
    #[error("writing the system proxy setting {key} failed: {reason}")]
    Write { key: String, reason: String },
    #[error("the system proxy setting {key} did not stick: wrote {wanted}, it now reads {got}")]
    NotApplied {
        key: String,
        wanted: String,
        got: String,
    },
    #[error("the proxy snapshot file {path}: {reason}")]
    Snapshot { path: PathBuf, reason: String },
}

/// What was there before, and what we wrote instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub backend: String,
    pub bridge: SocketAddr,
    /// Everything as it was before we touched it.
    pub saved: Values,
    /// What we wrote, as read back.
    pub written: Values,
}

/// How a restore went, for the status line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Keys put back to their value from before.
    pub restored: Vec<String>,
    /// Keys whose value the user changed meanwhile, left as they are.
    pub kept: Vec<String>,
}

/// The policy above over one backend and one snapshot file.
pub struct SystemProxy {
    backend: Box<dyn ProxyBackend>,
    snapshot_path: PathBuf,
}

impl std::fmt::Debug for SystemProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemProxy")
            .field("backend", &self.backend.name())
            .field("snapshot", &self.snapshot_path)
            .finish()
    }
}

impl SystemProxy {
    pub fn new(backend: Box<dyn ProxyBackend>, data_dir: &Path) -> Self {
        SystemProxy {
            backend,
            snapshot_path: data_dir.join(SNAPSHOT_FILE),
        }
    }

    /// This platform's backend, or an error in words where there is none.
    pub fn for_this_desktop(data_dir: &Path) -> Result<Self, ProxyError> {
        #[cfg(target_os = "linux")]
        let backend: Result<Box<dyn ProxyBackend>, ProxyError> =
            gnome::Gnome::detect().map(|g| Box::new(g) as Box<dyn ProxyBackend>);
        #[cfg(windows)]
        let backend: Result<Box<dyn ProxyBackend>, ProxyError> =
            Ok(Box::new(windows::InternetSettings));
        #[cfg(not(any(target_os = "linux", windows)))]
        let backend: Result<Box<dyn ProxyBackend>, ProxyError> = Err(ProxyError::Unsupported(
            "only GNOME and Windows are supported".into(),
        ));
        backend.map(|b| Self::new(b, data_dir))
    }

    pub fn snapshot_path(&self) -> &Path {
        &self.snapshot_path
    }

    /// Snapshots, then points HTTP and HTTPS at `bridge` with `bypass`.
    /// Enabling twice keeps the first snapshot: that is the user's setting.
    pub fn enable(&self, bridge: SocketAddr, bypass: &[String]) -> Result<(), ProxyError> {
        let desired = self.backend.desired(bridge, bypass);
        let saved = match self.load_snapshot()? {
            Some(previous) => previous.saved,
            None => {
                // Everything we write is saved too, so restoring never
                // leaves one of our values behind.
                let mut saved = Values::new();
                let keys = self.backend.snapshot_keys().into_iter();
                for key in keys.chain(desired.keys().cloned()) {
                    if let std::collections::btree_map::Entry::Vacant(slot) = saved.entry(key) {
                        let value = self.backend.read(slot.key())?;
                        slot.insert(value);
                    }
                }
                saved
            }
        };
        // Saved before the first write: from here on a crash is recoverable.
        let mut snapshot = Snapshot {
            backend: self.backend.name().into(),
            bridge,
            saved,
            written: desired.clone(),
        };
        self.save_snapshot(&snapshot)?;
        let result = self.write_checked(&desired);
        self.backend.notify();
        match result {
            Ok(read_back) => {
                snapshot.written = read_back;
                self.save_snapshot(&snapshot)
            }
            Err(e) => {
                // Half-applied is worse than not applied: put back what we can.
                let _restore_is_best_effort = self.restore_from(&snapshot);
                self.remove_snapshot()?;
                Err(e)
            }
        }
    }

    /// Puts back what was there before [`SystemProxy::enable`], where the
    /// value is still ours. No snapshot: nothing to do.
    pub fn disable(&self) -> Result<Restored, ProxyError> {
        let Some(snapshot) = self.load_snapshot()? else {
            return Ok(Restored::default());
        };
        let restored = self.restore_from(&snapshot)?;
        self.backend.notify();
        self.remove_snapshot()?;
        Ok(restored)
    }

    /// At startup: a leftover snapshot while the system still holds values
    /// we wrote means the app died while enabled (or while enabling). Puts
    /// back every value that is still ours and returns true when there was
    /// any. Values the user changed since stay, as on disable; a snapshot
    /// with nothing of ours left is just dropped.
    pub fn recover(&self) -> Result<bool, ProxyError> {
        let Some(snapshot) = self.load_snapshot()? else {
            return Ok(false);
        };
        if snapshot.backend != self.backend.name() {
            self.remove_snapshot()?;
            return Ok(false);
        }
        let restored = self.restore_from(&snapshot)?;
        self.backend.notify();
        self.remove_snapshot()?;
        if restored.restored.is_empty() {
            tracing::info!("a proxy snapshot was left behind, but the system proxy no longer holds the bridge's values; leaving it as it is");
            return Ok(false);
        }
        Ok(true)
    }

    /// Whether a snapshot exists (bridging was enabled and not yet undone).
    pub fn is_enabled(&self) -> bool {
        self.snapshot_path.exists()
    }

    /// `values`' keys with the switches last (or first, when restoring).
    fn ordered<'a>(&self, values: &'a Values, switch_first: bool) -> Vec<(&'a String, &'a Value)> {
        let (mut on, mut rest): (Vec<_>, Vec<_>) =
            values.iter().partition(|(k, _)| self.backend.is_switch(k));
        if switch_first {
            on.extend(rest);
            on
        } else {
            rest.extend(on);
            rest
        }
    }

    fn write_checked(&self, desired: &Values) -> Result<Values, ProxyError> {
        let mut read_back = Values::new();
        for (key, value) in self.ordered(desired, false) {
            self.backend.write(key, value)?;
            let got = self.backend.read(key)?;
            if &got != value {
                return Err(ProxyError::NotApplied {
                    key: key.clone(),
                    wanted: show(value),
                    got: show(&got),
                });
            }
            read_back.insert(key.clone(), got);
        }
        Ok(read_back)
    }

    fn restore_from(&self, snapshot: &Snapshot) -> Result<Restored, ProxyError> {
        let mut restored = Restored::default();
        let mut first_error = None;
        for (key, written) in self.ordered(&snapshot.written, true) {
            let now = match self.backend.read(key) {
                Ok(v) => v,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            if &now != written {
                restored.kept.push(key.clone());
                continue;
            }
            let Some(before) = snapshot.saved.get(key) else {
                continue;
            };
            // Keep going on errors: restore as much as possible, then report.
            match self.write_verified(key, before) {
                Ok(()) => restored.restored.push(key.clone()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(restored),
        }
    }

    fn write_verified(&self, key: &str, value: &Value) -> Result<(), ProxyError> {
        self.backend.write(key, value)?;
        let got = self.backend.read(key)?;
        if &got != value {
            return Err(ProxyError::NotApplied {
                key: key.to_owned(),
                wanted: show(value),
                got: show(&got),
            });
        }
        Ok(())
    }

    fn load_snapshot(&self) -> Result<Option<Snapshot>, ProxyError> {
        let text = match std::fs::read_to_string(&self.snapshot_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.snapshot_error(e.to_string())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| self.snapshot_error(format!("damaged ({e})")))
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), ProxyError> {
        let text = serde_json::to_string_pretty(snapshot)
            .map_err(|e| self.snapshot_error(e.to_string()))?;
        crate::settings_store::write_private(&self.snapshot_path, text.as_bytes())
            .map_err(|e| self.snapshot_error(e.to_string()))
    }

    fn remove_snapshot(&self) -> Result<(), ProxyError> {
        match std::fs::remove_file(&self.snapshot_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.snapshot_error(e.to_string())),
        }
    }

    fn snapshot_error(&self, reason: String) -> ProxyError {
        ProxyError::Snapshot {
            path: self.snapshot_path.clone(),
            reason,
        }
    }
}

fn show(v: &Value) -> String {
    v.clone().unwrap_or_else(|| "(absent)".into())
}

/// A backend over a map, for unit tests of the policy.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeBackend {
        pub values: Mutex<Values>,
        /// Keys whose writes are silently dropped, like sysproxy with no bus.
        pub ignore_writes: Vec<String>,
    }

    impl FakeBackend {
        pub fn with(values: &[(&str, &str)]) -> Self {
            FakeBackend {
                values: Mutex::new(
                    values
                        .iter()
                        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                        .collect(),
                ),
                ignore_writes: Vec::new(),
            }
        }

        pub fn get(&self, key: &str) -> Value {
            self.values
                .lock()
                .ok()
                .and_then(|m| m.get(key).cloned().flatten())
        }

        pub fn set(&self, key: &str, value: &str) {
            if let Ok(mut m) = self.values.lock() {
                m.insert(key.into(), Some(value.into()));
            }
        }
    }

    impl ProxyBackend for std::sync::Arc<FakeBackend> {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn snapshot_keys(&self) -> Vec<String> {
            ["mode", "pac", "host", "port"].map(String::from).to_vec()
        }
        fn desired(&self, bridge: SocketAddr, bypass: &[String]) -> Values {
            let mut v = Values::new();
            v.insert("mode".into(), Some("manual".into()));
            v.insert("host".into(), Some(bridge.ip().to_string()));
            v.insert("port".into(), Some(bridge.port().to_string()));
            v.insert("ignore".into(), Some(bypass.join(",")));
            v
        }
        fn switch_key(&self) -> String {
            "mode".into()
        }
        fn read(&self, key: &str) -> Result<Value, ProxyError> {
            Ok(self.get(key))
        }
        fn write(&self, key: &str, value: &Value) -> Result<(), ProxyError> {
            if self.ignore_writes.iter().any(|k| k == key) {
                return Ok(());
            }
            if let Ok(mut m) = self.values.lock() {
                match value {
                    Some(v) => m.insert(key.into(), Some(v.clone())),
                    None => m.remove(key),
                };
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::FakeBackend;
    use super::*;
    use std::sync::Arc;

    fn corporate() -> Arc<FakeBackend> {
        Arc::new(FakeBackend::with(&[
            ("mode", "auto"),
            ("pac", "http://wpad.corp/proxy.pac"),
            ("host", "proxy.corp"),
            ("port", "8080"),
        ]))
    }

    const BRIDGE: &str = "127.0.0.1:3128";

    #[test]
    fn enable_then_disable_restores_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let before = fake.values.lock().expect("lock").clone();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        sp.enable(BRIDGE.parse().expect("addr"), &["localhost".into()])
            .expect("enable");
        assert_eq!(fake.get("mode").as_deref(), Some("manual"));
        assert_eq!(fake.get("port").as_deref(), Some("3128"));
        assert!(sp.is_enabled());
        let restored = sp.disable().expect("disable");
        assert!(restored.kept.is_empty());
        // `ignore` did not exist before; restoring writes it back as absent.
        assert_eq!(*fake.values.lock().expect("lock"), before);
        assert!(!sp.is_enabled());
    }

    #[test]
    fn a_change_made_meanwhile_survives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        sp.enable(BRIDGE.parse().expect("addr"), &[])
            .expect("enable");
        fake.set("mode", "none");
        let restored = sp.disable().expect("disable");
        assert_eq!(restored.kept, vec!["mode".to_string()]);
        assert_eq!(fake.get("mode").as_deref(), Some("none"));
        assert_eq!(fake.get("host").as_deref(), Some("proxy.corp"));
    }

    #[test]
    fn writes_that_do_not_stick_are_reported_and_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = Arc::new(FakeBackend {
            ignore_writes: vec!["port".into()],
            ..FakeBackend::with(&[("mode", "auto"), ("port", "8080")])
        });
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        let err = sp
            .enable(BRIDGE.parse().expect("addr"), &[])
            .expect_err("port did not stick");
        assert!(
            matches!(&err, ProxyError::NotApplied { key, .. } if key == "port"),
            "{err}"
        );
        assert_eq!(fake.get("mode").as_deref(), Some("auto"));
        assert!(!sp.is_enabled());
    }

    #[test]
    fn recovery_after_a_crash_restores_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        sp.enable(BRIDGE.parse().expect("addr"), &[])
            .expect("enable");
        // The process dies here; a new one starts.
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        assert!(sp.recover().expect("recover"));
        assert_eq!(fake.get("mode").as_deref(), Some("auto"));
        assert!(!sp.recover().expect("nothing left"), "said only once");
    }

    #[test]
    fn a_crash_halfway_through_enabling_is_undone_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        sp.enable(BRIDGE.parse().expect("addr"), &[])
            .expect("enable");
        // As if the process died after writing `host` and before the rest:
        // the switch key is written last, so it is still the old one.
        fake.set("mode", "auto");
        fake.set("port", "8080");
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        assert!(sp.recover().expect("recover"));
        assert_eq!(fake.get("host").as_deref(), Some("proxy.corp"));
        assert_eq!(fake.get("mode").as_deref(), Some("auto"));
    }

    #[test]
    fn the_switch_is_written_last_and_restored_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        let desired = fake.desired(BRIDGE.parse().expect("addr"), &[]);
        let keys = |first| -> Vec<String> {
            sp.ordered(&desired, first)
                .into_iter()
                .map(|(k, _)| k.clone())
                .collect()
        };
        assert_eq!(keys(false).last().map(String::as_str), Some("mode"));
        assert_eq!(keys(true).first().map(String::as_str), Some("mode"));
    }

    /// The fake with `host` as a second switch, like Windows' one per
    /// connection.
    struct TwoSwitches(Arc<FakeBackend>);

    impl ProxyBackend for TwoSwitches {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn snapshot_keys(&self) -> Vec<String> {
            self.0.snapshot_keys()
        }
        fn desired(&self, bridge: SocketAddr, bypass: &[String]) -> Values {
            self.0.desired(bridge, bypass)
        }
        fn switch_key(&self) -> String {
            self.0.switch_key()
        }
        fn is_switch(&self, key: &str) -> bool {
            key == "mode" || key == "host"
        }
        fn read(&self, key: &str) -> Result<Value, ProxyError> {
            self.0.read(key)
        }
        fn write(&self, key: &str, value: &Value) -> Result<(), ProxyError> {
            self.0.write(key, value)
        }
    }

    #[test]
    fn every_switch_is_written_last_and_restored_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(TwoSwitches(fake.clone())), dir.path());
        let desired = fake.desired(BRIDGE.parse().expect("addr"), &[]);
        let keys = |first| -> Vec<String> {
            sp.ordered(&desired, first)
                .into_iter()
                .map(|(k, _)| k.clone())
                .collect()
        };
        assert_eq!(keys(false), ["ignore", "port", "host", "mode"]);
        assert_eq!(keys(true), ["host", "mode", "ignore", "port"]);
    }

    #[test]
    fn a_stale_snapshot_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        sp.enable(BRIDGE.parse().expect("addr"), &[])
            .expect("enable");
        // The user set everything by hand after the crash.
        for (k, v) in [
            ("mode", "none"),
            ("host", "other.proxy"),
            ("port", "1"),
            ("ignore", "x"),
        ] {
            fake.set(k, v);
        }
        assert!(!sp.recover().expect("recover"));
        assert_eq!(fake.get("host").as_deref(), Some("other.proxy"));
        assert_eq!(fake.get("mode").as_deref(), Some("none"));
        assert!(!sp.is_enabled());
    }

    #[test]
    fn enabling_twice_keeps_the_first_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = corporate();
        let sp = SystemProxy::new(Box::new(fake.clone()), dir.path());
        sp.enable(BRIDGE.parse().expect("addr"), &[])
            .expect("enable");
        sp.enable("127.0.0.1:3129".parse().expect("addr"), &[])
            .expect("again");
        sp.disable().expect("disable");
        assert_eq!(fake.get("port").as_deref(), Some("8080"));
        assert_eq!(fake.get("mode").as_deref(), Some("auto"));
    }
}
