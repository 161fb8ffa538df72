//! What the app does, independent of Tauri: load and save settings, keep
//! the password, start and stop the bridge, switch the system proxy, and
//! publish one [`AppStatus`] that the tray and the settings window show.
//! The tray and the commands only translate clicks and forms into calls
//! here; the headless mode drives it with no window at all.
//!
//! Operations that change state (enable, disable, save) are serialized by
//! one async mutex, so a double click cannot interleave two system proxy
//! switches.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use gangway_engine::events::{Kind, Phase};
use gangway_engine::probe::{self, ProbeReport, DEFAULT_PROBE_URL};
use gangway_engine::upstream::gate::CredentialStatus;
use gangway_engine::{Password, ProxyType, Settings, SettingsError};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::bridge::{BridgeError, BridgeHost};
use crate::connection_log::{ConnectionLog, LogBatch, NewsFilter, TICK};
use crate::process_names::{self, ProcessNames};
use crate::secrets::{Secrets, SecretsError, Storage};
use crate::settings_store::{AppSettings, SettingsStore, StoreError};
use crate::sysproxy::{ProxyError, SystemProxy};

/// The longest the status may lag behind traffic that does not change it.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_millis(300);

/// Which tray icon to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Off,
    On,
    /// Credentials rejected, upstream unreachable, or the system proxy
    /// could not be switched.
    Attention,
}

/// Everything the tray and the window show about the bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    pub enabled: bool,
    pub health: Health,
    /// One line in words, for the tray menu and the window header.
    pub line: String,
    pub listen: Option<SocketAddr>,
    /// Said once, e.g. after restoring the proxy settings after a crash.
    pub notice: Option<String>,
}

/// Why an operation failed; each variant carries its cause in words.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the bridge cannot start: {0}")]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    SystemProxy(#[from] ProxyError),
    #[error("enter an upstream proxy host to test")]
    NoUpstream,
}

/// A password change in a save: keep the stored one, or set a new one.
#[derive(Debug)]
pub enum PasswordChange {
    Keep,
    Set {
        password: Password,
        /// Memory only, because the user chose it with no keyring present.
        session_only: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SaveOutcome {
    /// Where the password is now, when the settings use one.
    pub password: Option<Storage>,
    /// True when a running bridge took the new settings.
    pub applied: bool,
}

#[derive(Debug, Default)]
struct Shared {
    enabled: bool,
    listen: Option<SocketAddr>,
    /// A problem from the last operation (system proxy not switched).
    problem: Option<String>,
    /// The last failure talking to the upstream, cleared by a success.
    upstream_trouble: Option<String>,
    notice: Option<String>,
}

pub struct Gangway {
    store: SettingsStore,
    secrets: Secrets,
    bridge: BridgeHost,
    sysproxy: Result<Arc<SystemProxy>, ProxyError>,
    shared: Mutex<Shared>,
    ops: tokio::sync::Mutex<()>,
    status_tx: watch::Sender<AppStatus>,
    log: ConnectionLog,
    /// Bumped when a log window starts or stops listening, so an old
    /// window's ticker ends.
    log_generation: std::sync::atomic::AtomicU64,
    me: Weak<Gangway>,
}

impl std::fmt::Debug for Gangway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gangway")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Gangway {
    pub fn new(
        store: SettingsStore,
        secrets: Secrets,
        sysproxy: Result<SystemProxy, ProxyError>,
    ) -> Arc<Self> {
        let (status_tx, _) = watch::channel(AppStatus {
            enabled: false,
            health: Health::Off,
            line: "Bridging is off".into(),
            listen: None,
            notice: None,
        });
        Arc::new_cyclic(|me| Gangway {
            store,
            secrets,
            bridge: BridgeHost::default(),
            sysproxy: sysproxy.map(Arc::new),
            shared: Mutex::default(),
            ops: tokio::sync::Mutex::new(()),
            status_tx,
            log: ConnectionLog::default(),
            log_generation: std::sync::atomic::AtomicU64::new(0),
            me: me.clone(),
        })
    }

    /// Status changes, for the tray and the window.
    pub fn subscribe(&self) -> watch::Receiver<AppStatus> {
        self.status_tx.subscribe()
    }

    pub fn status(&self) -> AppStatus {
        self.status_tx.borrow().clone()
    }

    pub fn is_first_run(&self) -> bool {
        !self.store.exists()
    }

    /// Crash recovery, then "enable on start". Returns the settings, which
    /// the caller uses for the autostart option.
    pub async fn startup(&self) -> Result<AppSettings, AppError> {
        if let Ok(sp) = &self.sysproxy {
            let sp = sp.clone();
            match blocking(move || sp.recover()).await {
                Ok(true) => {
                    let text = "Gangway did not shut down cleanly last time: your previous proxy settings were restored.";
                    tracing::warn!("{text}");
                    self.with_shared(|s| s.notice = Some(text.into()));
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("restoring the proxy settings after a crash failed: {e}");
                    self.with_shared(|s| s.problem = Some(e.to_string()));
                }
            }
        }
        let settings = self.store.load()?;
        if settings.enable_on_start {
            let notice = self.with_shared(|s| s.notice.clone());
            if let Err(e) = self.enable().await {
                tracing::warn!("enable on start: {e}");
            }
            // Enabling clears old notices; this one has not been seen yet.
            self.with_shared(|s| s.notice = notice);
        }
        self.publish().await;
        Ok(settings)
    }

    pub fn settings(&self) -> Result<AppSettings, StoreError> {
        self.store.load()
    }

    /// Where the password for `settings` is kept, if any. A missing
    /// keyring reads as "none stored", with the reason.
    pub async fn password_storage(
        &self,
        settings: &AppSettings,
    ) -> (Option<Storage>, Option<SecretsError>) {
        let Some(account) = settings.keyring_account() else {
            return (None, None);
        };
        match self.secrets.load(&account).await {
            Ok(found) => (found.map(|(_, at)| at), None),
            Err(e) => (None, Some(e)),
        }
    }

    /// Validates `settings` with the engine, with the new or stored password.
    async fn engine_settings(
        &self,
        settings: &AppSettings,
        new_password: Option<&Password>,
    ) -> Result<Settings, AppError> {
        let password = match (new_password, settings.keyring_account()) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(account)) => match self.secrets.load(&account).await {
                Ok(found) => found.map(|(p, _)| p),
                // Report the missing keyring only where a password is needed.
                Err(e) => return Err(e.into()),
            },
            (None, None) => None,
        };
        Ok(settings.to_engine_file().validate(password)?)
    }

    /// Checks `settings` as a save would, without saving anything.
    pub async fn check(
        &self,
        settings: &AppSettings,
        password: Option<&Password>,
    ) -> Result<(), AppError> {
        self.engine_settings(settings, password).await.map(drop)
    }

    /// Validates, stores the password, saves the file, and applies the
    /// settings to the running bridge and system proxy. Nothing is saved
    /// when validation or the keyring fails.
    pub async fn save(
        &self,
        settings: AppSettings,
        password: PasswordChange,
    ) -> Result<SaveOutcome, AppError> {
        let _op = self.ops.lock().await;
        let new_password = match &password {
            PasswordChange::Set { password, .. } => Some(password),
            PasswordChange::Keep => None,
        };
        let engine = self.engine_settings(&settings, new_password).await?;
        let mut stored = None;
        if let (
            PasswordChange::Set {
                password,
                session_only,
            },
            Some(account),
        ) = (password, settings.keyring_account())
        {
            stored = Some(self.secrets.store(&account, password, session_only).await?);
        } else if let Some(account) = settings.keyring_account() {
            stored = self.secrets.load(&account).await?.map(|(_, at)| at);
        }
        self.store.save(&settings)?;
        let applied = match self.bridge.apply_if_running(engine).await? {
            Some(started) => {
                if started.new {
                    self.watch_events().await;
                }
                self.with_shared(|s| {
                    s.listen = Some(started.addr);
                    s.upstream_trouble = None;
                });
                // Re-point the system proxy: the port or bypass list may differ.
                if self.with_shared(|s| s.enabled) {
                    self.switch_system_proxy(started.addr, &settings.bypass)
                        .await;
                }
                true
            }
            None => false,
        };
        self.publish().await;
        Ok(SaveOutcome {
            password: stored,
            applied,
        })
    }

    /// Runs the engine's probe against the upstream in `settings`: one
    /// unauthenticated request, then at most one authenticated one.
    pub async fn test_connection(
        &self,
        settings: &AppSettings,
        password: Option<&Password>,
    ) -> Result<ProbeReport, AppError> {
        let engine = self.engine_settings(settings, password).await?;
        let upstream = engine.upstream.as_ref().ok_or(AppError::NoUpstream)?;
        Ok(probe::probe(upstream, &engine.timeouts, DEFAULT_PROBE_URL).await)
    }

    /// Starts the bridge (if needed) and points the system proxy at it.
    pub async fn enable(&self) -> Result<AppStatus, AppError> {
        let _op = self.ops.lock().await;
        let settings = self.store.load()?;
        let result = async {
            let engine = self.engine_settings(&settings, None).await?;
            let addr = self.bridge.start_or_apply(engine).await?;
            Ok::<_, AppError>(addr)
        }
        .await;
        let started = match result {
            Ok(started) => started,
            Err(e) => {
                self.with_shared(|s| s.problem = Some(e.to_string()));
                self.publish_always().await;
                return Err(e);
            }
        };
        self.with_shared(|s| {
            s.enabled = true;
            s.listen = Some(started.addr);
            s.notice = None;
            s.problem = None;
            s.upstream_trouble = None;
        });
        if started.new {
            self.watch_events().await;
        }
        self.switch_system_proxy(started.addr, &settings.bypass)
            .await;
        self.publish().await;
        Ok(self.status())
    }

    /// Restores the system proxy and stops the bridge.
    pub async fn disable(&self) -> Result<AppStatus, AppError> {
        let _op = self.ops.lock().await;
        let restored = self.restore_system_proxy().await;
        self.bridge.stop().await;
        self.with_shared(|s| {
            s.enabled = false;
            s.listen = None;
            s.notice = None;
            s.upstream_trouble = None;
            s.problem = restored.as_ref().err().map(|e| e.to_string());
        });
        self.publish_always().await;
        restored.map_err(AppError::from)?;
        Ok(self.status())
    }

    /// Where traffic goes, for the headless banner: `proxy:8080` or `direct`.
    pub fn status_target(&self) -> String {
        self.store
            .load()
            .ok()
            .and_then(|s| s.upstream_authority())
            .unwrap_or_else(|| "direct".into())
    }

    /// The headless mode: the bridge alone, the system proxy untouched.
    pub async fn run_bridge_only(&self) -> Result<SocketAddr, AppError> {
        let settings = self.store.load()?;
        let engine = self.engine_settings(&settings, None).await?;
        Ok(self.bridge.start_or_apply(engine).await?.addr)
    }

    /// Quit, SIGTERM, SIGINT: restore the system proxy, stop the bridge.
    pub async fn shutdown(&self) {
        if let Err(e) = self.disable().await {
            tracing::warn!("while quitting: {e}");
        }
    }

    /// The bridge's address and bypass list for "Copy proxy settings for
    /// terminals": the running one, else the configured one.
    pub fn terminal_lines(&self) -> Result<String, AppError> {
        let settings = self.store.load()?;
        let listen = match self.with_shared(|s| s.listen) {
            Some(addr) => addr,
            None => settings.listen_addr().ok_or_else(|| {
                AppError::Invalid(SettingsError::ListenAddress(
                    settings.listen_address.clone(),
                ))
            })?,
        };
        Ok(crate::terminal::proxy_lines(listen, &settings.bypass))
    }

    /// Allows one more attempt with credentials the upstream rejected.
    pub async fn retry_credentials(&self) {
        self.bridge.retry_credentials().await;
        self.publish().await;
    }

    async fn switch_system_proxy(&self, addr: SocketAddr, bypass: &[String]) {
        let problem = match &self.sysproxy {
            Err(e) => Some(format!("system proxy not switched: {e}")),
            Ok(sp) => {
                let sp = sp.clone();
                let bypass = bypass.to_vec();
                blocking(move || sp.enable(addr, &bypass))
                    .await
                    .err()
                    .map(|e| format!("system proxy not switched: {e}"))
            }
        };
        if let Some(p) = &problem {
            tracing::warn!("{p}");
        }
        self.with_shared(|s| s.problem = problem);
    }

    async fn restore_system_proxy(&self) -> Result<(), ProxyError> {
        let Ok(sp) = &self.sysproxy else {
            return Ok(());
        };
        let sp = sp.clone();
        let restored = blocking(move || sp.disable()).await?;
        if !restored.kept.is_empty() {
            tracing::info!(
                "left the user's own changes to {} in place",
                restored.kept.join(", ")
            );
        }
        Ok(())
    }

    /// Follows the bridge's connection events: every one goes to the
    /// connection log, and upstream trouble and credential verdicts reach
    /// the status as they happen. Ends with the bridge.
    ///
    /// The status is recomputed at once when upstream trouble starts or
    /// ends, and otherwise (a credential verdict, say) at most every
    /// [`STATUS_EVERY`], plus once when traffic pauses: cheap at thousands
    /// of requests (or of 407s to a locked-out client) a second.
    async fn watch_events(&self) {
        let Some(control) = self.bridge.control().await else {
            return;
        };
        control.set_event_detail(self.log.is_watching());
        let mut rx = control.subscribe();
        drop(control);
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut published = tokio::time::Instant::now();
            let mut dirty = false;
            loop {
                let event = match tokio::time::timeout(STATUS_EVERY, rx.recv()).await {
                    Ok(Ok(e)) => e,
                    Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                        if let Some(app) = me.upgrade() {
                            app.log.lagged(missed);
                        }
                        continue;
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => break,
                    Err(_quiet) => {
                        if dirty {
                            let Some(app) = me.upgrade() else { break };
                            app.publish().await;
                            dirty = false;
                            published = tokio::time::Instant::now();
                        }
                        continue;
                    }
                };
                let Some(app) = me.upgrade() else { break };
                app.log.record(&event);
                let mut urgent = false;
                if event.phase == Phase::Done && event.route != "direct" {
                    let upstream_failed =
                        event.error.is_some() && matches!(event.status, Some(502) | Some(504));
                    let trouble = upstream_failed.then(|| event.error.clone()).flatten();
                    urgent |= app.with_shared(|s| {
                        let changed = s.upstream_trouble != trouble;
                        s.upstream_trouble = trouble;
                        changed
                    });
                }
                dirty = true;
                if urgent || published.elapsed() >= STATUS_EVERY {
                    app.publish().await;
                    dirty = false;
                    published = tokio::time::Instant::now();
                }
            }
        });
    }

    /// A connection log window starts listening: `send` gets a batch every
    /// [`TICK`] that has news ([`NewsFilter`]) until it fails (the window is gone) or another window
    /// takes over. Headers are captured (masked) only while one listens.
    pub async fn watch_log(
        &self,
        mut send: impl FnMut(LogBatch) -> Result<(), String> + Send + 'static,
    ) {
        use std::sync::atomic::Ordering::SeqCst;
        let generation = self.log_generation.fetch_add(1, SeqCst) + 1;
        self.log.watch();
        if let Some(control) = self.bridge.control().await {
            control.set_event_detail(true);
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut names = ProcessNames::default();
            let mut news = NewsFilter::default();
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(app) = me.upgrade() else { break };
                if app.log_generation.load(SeqCst) != generation {
                    break;
                }
                let stats = app.bridge.status().await.map(|s| s.stats);
                let mut batch = app.log.take_batch(stats.as_ref());
                if !news.is_news(&batch) {
                    continue;
                }
                let clients = batch
                    .events
                    .iter()
                    .filter(|e| e.kind != Kind::Local)
                    .map(|e| e.client);
                let ask = names.to_look_up(clients);
                if !ask.is_empty() {
                    if let Ok(found) =
                        tokio::task::spawn_blocking(move || process_names::lookup(&ask)).await
                    {
                        names.learn(found);
                    }
                }
                for e in &batch.events {
                    if let Some(name) = names.get(&e.client) {
                        batch.names.insert(e.client.to_string(), name.to_owned());
                    }
                }
                if let Err(e) = send(batch) {
                    tracing::debug!("the connection log window stopped listening: {e}");
                    // Unless another window took over meanwhile.
                    let ours = app.log_generation.compare_exchange(
                        generation,
                        generation + 1,
                        SeqCst,
                        SeqCst,
                    );
                    if ours.is_ok() {
                        app.stop_log_capture().await;
                    }
                    break;
                }
            }
        });
    }

    /// The log window closed: stop buffering and capturing headers.
    pub async fn unwatch_log(&self) {
        self.log_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.stop_log_capture().await;
    }

    async fn stop_log_capture(&self) {
        self.log.unwatch();
        if let Some(control) = self.bridge.control().await {
            control.set_event_detail(false);
        }
    }

    fn with_shared<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        match self.shared.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Recomputes the status and tells subscribers when it changed.
    async fn publish(&self) {
        self.publish_status(false).await;
    }

    /// After an explicit operation subscribers hear even an unchanged
    /// status: the tray's check mark may have been flipped by the click
    /// itself and must be put back when the operation failed.
    async fn publish_always(&self) {
        self.publish_status(true).await;
    }

    async fn publish_status(&self, always: bool) {
        let engine = self.bridge.status().await;
        let settings = self.store.load().unwrap_or_default();
        let status = self.with_shared(|s| describe(s, &settings, engine.as_ref()));
        self.status_tx.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed || always
        });
    }
}

/// The status line, e.g. `Bridging 127.0.0.1:3128 -> proxy.corp:8080, NTLM as CORP\bob`.
fn describe(
    s: &Shared,
    settings: &AppSettings,
    engine: Option<&gangway_engine::Status>,
) -> AppStatus {
    let listen = s.listen;
    let mut health = if s.enabled { Health::On } else { Health::Off };
    let target = match settings.upstream_authority() {
        None => "direct (no upstream)".to_owned(),
        Some(up) if settings.proxy_type == ProxyType::Noauth => format!("{up}, no authentication"),
        Some(up) => {
            let scheme = engine
                .and_then(|e| e.auth_scheme.clone())
                .unwrap_or_else(|| scheme_name(settings.proxy_type).to_owned());
            let user = match settings.realm.trim() {
                "" => settings.user.trim().to_owned(),
                realm => format!("{realm}\\{}", settings.user.trim()),
            };
            format!("{up}, {scheme} as {user}")
        }
    };
    let rejected = engine.and_then(|e| match &e.credentials {
        Some(CredentialStatus::Rejected { scheme, .. }) => Some(scheme.clone()),
        _ => None,
    });
    let line = if let Some(p) = &s.problem {
        health = Health::Attention;
        p.clone()
    } else if !s.enabled {
        s.notice.clone().unwrap_or_else(|| "Bridging is off".into())
    } else if let Some(scheme) = rejected {
        health = Health::Attention;
        format!(
            "{} rejected the password ({scheme}); fix it in Settings",
            settings.upstream_authority().unwrap_or_default()
        )
    } else if let Some(t) = &s.upstream_trouble {
        health = Health::Attention;
        t.clone()
    } else {
        match listen {
            Some(addr) => format!("Bridging {addr} -> {target}"),
            None => format!("Bridging -> {target}"),
        }
    };
    AppStatus {
        enabled: s.enabled,
        health,
        line,
        listen,
        notice: s.notice.clone(),
    }
}

/// How people write the scheme names.
fn scheme_name(t: ProxyType) -> &'static str {
    match t {
        ProxyType::Noauth => "no authentication",
        ProxyType::Basic => "Basic",
        ProxyType::Digest => "Digest",
        ProxyType::Ntlm => "NTLM",
        ProxyType::Auto => "auto",
    }
}

/// Runs blocking OS work (gsettings, registry) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProxyError> + Send + 'static,
) -> Result<T, ProxyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProxyError::Unsupported(format!("worker stopped: {e}")))?
}
