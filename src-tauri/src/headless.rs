//! No display: the bridge alone, with the saved settings and the keyring's
//! password, until Ctrl-C or SIGTERM. The system proxy is not touched
//! (there is no desktop session to switch), so nothing needs restoring.

use std::sync::Arc;

use crate::controller::Gangway;
use crate::secrets::Secrets;
use crate::settings_store::SettingsStore;
use crate::sysproxy::ProxyError;
use crate::IDENTIFIER;

/// Runs until interrupted; returns the process exit code.
pub fn run() -> i32 {
    let Some(config) = dirs::config_dir().map(|d| d.join(IDENTIFIER)) else {
        eprintln!("gangway: cannot find the config directory (is HOME set?)");
        return 2;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gangway: cannot start the runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(async move {
        let ctl: Arc<Gangway> = Gangway::new(
            SettingsStore::new(&config),
            Secrets::os(),
            Err(ProxyError::Unsupported(
                "headless mode leaves the system proxy alone".into(),
            )),
        );
        match ctl.run_bridge_only().await {
            Ok(addr) => println!("gangway listening on {addr} -> {}", ctl.status_target()),
            Err(e) => {
                eprintln!("gangway: {e}");
                eprintln!("gangway: settings are read from {}", config.display());
                return 2;
            }
        }
        wait_for_stop().await;
        ctl.shutdown().await;
        0
    })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("gangway: cannot wait for Ctrl-C ({e}); stopping");
    }
}
