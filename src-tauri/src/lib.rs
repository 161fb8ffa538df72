//! # Gangway tray app
//!
//! A thin Tauri 2 shell around the `gangway-engine` crate: a tray icon
//! that switches bridging on and off, a settings window, and the glue to
//! the OS (keyring, system proxy, autostart). The engine knows nothing of
//! Tauri.
//!
//! # Layout
//! - [`tray`]: the tray icon and its menu; clicks become [`tray::TrayAction`]s.
//! - [`commands`]: the settings window's Tauri commands; they only
//!   translate forms and errors.
//! - [`controller`]: what both of them ask for, in one place: enable,
//!   disable, save, test, and the [`controller::AppStatus`] everyone shows.
//!   It drives
//!   - [`bridge`]: the engine running inside the app's tokio runtime;
//!   - [`sysproxy`]: snapshot, switch and exact restore of the desktop's
//!     proxy setting (GNOME, Windows);
//!   - [`secrets`]: the password in the OS keyring (or, by explicit
//!     choice, memory for the session);
//!   - [`settings_store`]: the non-secret settings file.
//! - [`connection_log`]: the log window's feed: engine events in batches,
//!   with live counters; the same events also go to a rotating log file
//!   (see [`log_dir`]); [`process_names`] tells which program a client is.
//! - [`terminal`]: the `export` lines for "Copy proxy settings for terminals".
//! - [`headless`]: no display: the bridge alone, with the saved settings.
//!
//! `main.rs` calls [`run`]; tests drive [`run_app`] / [`with_commands`] with
//! `tauri::test::mock_builder()`.

pub mod bridge;
pub mod commands;
pub mod connection_log;
pub mod controller;
pub mod headless;
pub mod process_names;
pub mod secrets;
pub mod settings_store;
pub mod sysproxy;
pub mod terminal;
pub mod tray;

use std::path::PathBuf;
use std::sync::Arc;

use tauri::{AppHandle, Builder, Manager, RunEvent, Runtime, WebviewWindowBuilder};

use controller::Gangway;
use secrets::Secrets;
use settings_store::SettingsStore;
use sysproxy::SystemProxy;
use tray::TrayAction;

/// The settings window's label (see tauri.conf.json).
pub const SETTINGS_WINDOW: &str = "settings";
/// The connection log window's label.
pub const LOG_WINDOW: &str = "log";
/// The Tauri identifier, which names the config and data directories.
pub const IDENTIFIER: &str = "io.gangway.desktop";

/// The app: a real Tauri builder with the plugins, or the headless bridge
/// when there is no display to show a tray on.
pub fn run() {
    init_logging();
    if !has_display() {
        eprintln!(
            "gangway: no display (DISPLAY and WAYLAND_DISPLAY are unset), so there is no tray to show; running the headless bridge with the saved settings instead. Ctrl-C stops it."
        );
        let code = headless::run();
        flush_log_file();
        std::process::exit(code);
    }
    let builder = tauri::Builder::default()
        // First, so a second launch is caught before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_window(app, SETTINGS_WINDOW);
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_clipboard_manager::init());
    run_app(builder);
}

/// Builds and runs the app on any runtime.
pub fn run_app<R: Runtime>(builder: Builder<R>) {
    let app = match with_commands(builder)
        .setup(|app| setup(app.handle()).map_err(|e| -> Box<dyn std::error::Error> { e.into() }))
        .build(tauri::generate_context!())
    {
        Ok(app) => app,
        Err(e) => {
            eprintln!("gangway: cannot start the app: {e}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| match event {
        // The last window closed: a tray app keeps running. An explicit
        // exit (Quit, a signal) has a code and goes through.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        // Whatever path led here, never leave the system pointing at a
        // bridge that is about to disappear. On Windows this includes the
        // end of the session: tao turns WM_ENDSESSION into this event
        // before the process exits.
        RunEvent::Exit => {
            if let Some(ctl) = app.try_state::<Arc<Gangway>>() {
                let ctl = ctl.inner().clone();
                tauri::async_runtime::block_on(async move { ctl.shutdown().await });
            }
            flush_log_file();
        }
        _ => {}
    });
}

/// The app's commands; the only thing tests need besides a controller.
pub fn with_commands<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        commands::get_settings,
        commands::save_settings,
        commands::check_settings,
        commands::test_connection,
        commands::get_status,
        commands::set_bridging,
        commands::retry_credentials,
        commands::connection_log::watch_connection_log,
        commands::connection_log::unwatch_connection_log,
        commands::connection_log::export_connection_log,
    ])
}

/// Where settings and the proxy snapshot live.
pub struct Dirs {
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Dirs {
    /// The OS directories, as Tauri names them for [`IDENTIFIER`].
    pub fn for_app<R: Runtime>(app: &AppHandle<R>) -> Result<Self, String> {
        let p = app.path();
        Ok(Dirs {
            config: p.app_config_dir().map_err(|e| e.to_string())?,
            data: p.app_data_dir().map_err(|e| e.to_string())?,
        })
    }
}

/// The controller over the real keyring and the desktop's proxy setting.
pub fn real_controller(dirs: &Dirs) -> Arc<Gangway> {
    let sysproxy = SystemProxy::for_this_desktop(&dirs.data);
    if let Err(e) = &sysproxy {
        tracing::warn!("{e}");
    }
    Gangway::new(SettingsStore::new(&dirs.config), Secrets::os(), sysproxy)
}

fn setup<R: Runtime>(app: &AppHandle<R>) -> Result<(), String> {
    let dirs = Dirs::for_app(app)?;
    let ctl = real_controller(&dirs);
    app.manage(ctl.clone());

    let tray = tray::build(app, on_tray_action).map_err(|e| e.to_string())?;
    let mut statuses = ctl.subscribe();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            let status = statuses.borrow_and_update().clone();
            tray.show(&status);
            if let Err(e) = tauri::Emitter::emit(&handle, "status", &status) {
                tracing::debug!("status event not delivered: {e}");
            }
            if statuses.changed().await.is_err() {
                break;
            }
        }
    });

    let first_run = ctl.is_first_run();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        match ctl.startup().await {
            Ok(settings) => {
                if let Err(e) = set_autostart(&handle, settings.start_at_login) {
                    tracing::warn!("{e}");
                }
            }
            Err(e) => tracing::warn!("startup: {e}"),
        }
    });
    if first_run {
        // Nothing configured yet: the tray alone would be easy to miss.
        show_window(app, SETTINGS_WINDOW);
    }
    watch_signals(app.clone());
    Ok(())
}

fn on_tray_action<R: Runtime>(app: &AppHandle<R>, action: TrayAction) {
    let Some(ctl) = app.try_state::<Arc<Gangway>>().map(|s| s.inner().clone()) else {
        return;
    };
    match action {
        TrayAction::ToggleBridging => {
            tauri::async_runtime::spawn(async move {
                let result = if ctl.status().enabled {
                    ctl.disable().await
                } else {
                    ctl.enable().await
                };
                // The status line already shows the error in words.
                if let Err(e) = result {
                    tracing::warn!("{e}");
                }
            });
        }
        TrayAction::Settings => show_window(app, SETTINGS_WINDOW),
        TrayAction::ConnectionLog => show_window(app, LOG_WINDOW),
        TrayAction::CopyForTerminals => copy_for_terminals(app, &ctl),
        TrayAction::Quit => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                ctl.shutdown().await;
                app.exit(0);
            });
        }
    }
}

fn copy_for_terminals<R: Runtime>(app: &AppHandle<R>, ctl: &Gangway) {
    use tauri_plugin_clipboard_manager::ClipboardExt;
    let text = match ctl.terminal_lines() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("copy for terminals: {e}");
            return;
        }
    };
    if let Err(e) = app.clipboard().write_text(text) {
        tracing::warn!("copy for terminals: the clipboard refused: {e}");
    }
}

/// Shows a window, creating it from tauri.conf.json if it is not open.
pub fn show_window<R: Runtime>(app: &AppHandle<R>, label: &str) {
    if let Some(w) = app.get_webview_window(label) {
        let shown = w
            .show()
            .and_then(|()| w.unminimize())
            .and_then(|()| w.set_focus());
        if let Err(e) = shown {
            tracing::warn!("cannot bring the {label} window forward: {e}");
        }
        return;
    }
    let Some(config) = app.config().app.windows.iter().find(|w| w.label == label) else {
        tracing::warn!("no window named {label} in tauri.conf.json");
        return;
    };
    let built = WebviewWindowBuilder::from_config(app, config).and_then(|b| b.build());
    match built {
        Ok(window) if label == LOG_WINDOW => {
            // Closing destroys the window and its webview (the app goes
            // back to its idle footprint); the feed stops with it.
            let app = app.clone();
            window.on_window_event(move |event| {
                if matches!(event, tauri::WindowEvent::Destroyed) {
                    if let Some(ctl) = app.try_state::<Arc<Gangway>>() {
                        let ctl = ctl.inner().clone();
                        tauri::async_runtime::spawn(async move { ctl.unwatch_log().await });
                    }
                }
            });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot open the {label} window: {e}"),
    }
}

/// Applies "Start at login". Absent plugin (unit tests): nothing to do.
pub fn set_autostart<R: Runtime>(app: &AppHandle<R>, enabled: bool) -> Result<(), String> {
    let Some(launcher) = app.try_state::<tauri_plugin_autostart::AutoLaunchManager>() else {
        return Ok(());
    };
    let now = launcher.is_enabled().unwrap_or(false);
    let result = match (enabled, now) {
        (true, false) => launcher.enable(),
        (false, true) => launcher.disable(),
        _ => Ok(()),
    };
    result.map_err(|e| format!("\"Start at login\" could not be changed: {e}"))
}

/// SIGTERM and SIGINT (logout, `kill`, Ctrl-C in a terminal) restore the
/// system proxy before exiting, like Quit.
fn watch_signals<R: Runtime>(app: AppHandle<R>) {
    #[cfg(unix)]
    tauri::async_runtime::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot watch for SIGTERM/SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: restoring the proxy settings and quitting"),
            _ = int.recv() => tracing::info!("SIGINT: restoring the proxy settings and quitting"),
        }
        if let Some(ctl) = app.try_state::<Arc<Gangway>>().map(|s| s.inner().clone()) {
            ctl.shutdown().await;
        }
        app.exit(0);
    });
    #[cfg(not(unix))]
    drop(app);
}

fn has_display() -> bool {
    if cfg!(target_os = "linux") {
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    } else {
        true
    }
}

/// Where the rotating log file goes: the OS's per-user log location
/// (Linux: `~/.local/share/io.gangway.desktop/logs`; Windows:
/// `%LOCALAPPDATA%\io.gangway.desktop\logs`), as Tauri's `app_log_dir`
/// names it.
pub fn log_dir() -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        dirs::home_dir().map(|h| h.join("Library/Logs").join(IDENTIFIER))
    } else {
        dirs::data_local_dir().map(|d| d.join(IDENTIFIER).join("logs"))
    }
}

/// Log files kept: one a day, a week of them.
const LOG_FILES_KEPT: usize = 7;

/// Keeps the log file's writer thread; taken (which flushes it) at exit.
static LOG_FILE_GUARD: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

fn flush_log_file() {
    if let Ok(mut guard) = LOG_FILE_GUARD.lock() {
        drop(guard.take());
    }
}

/// Logs to stderr and to a daily file in [`log_dir`]. The engine's
/// connection events are among the lines (`gangway::conn`); they carry no
/// header values, so no credential reaches the file.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GANGWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let file = log_dir().and_then(|dir| {
        // The appender prunes old files in it before it would create it.
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("gangway: no log file in {}: {e}", dir.display());
            return None;
        }
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("gangway")
            .filename_suffix("log")
            .max_log_files(LOG_FILES_KEPT)
            .build(&dir);
        match appender {
            Ok(appender) => {
                let (writer, guard) = tracing_appender::non_blocking(appender);
                if let Ok(mut slot) = LOG_FILE_GUARD.lock() {
                    *slot = Some(guard);
                }
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(writer),
                )
            }
            Err(e) => {
                eprintln!("gangway: no log file in {}: {e}", dir.display());
                None
            }
        }
    });
    // A second init (tests) is harmless: the first subscriber stays.
    let _already_set = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
}
