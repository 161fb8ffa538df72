//! The running engine, inside the app's tokio runtime. Starting binds and
//! spawns [`Bridge::run`]; new settings go to [`Control::apply`], so the
//! app never restarts and tunnels in flight keep their upstream. Only a new
//! listen address needs a fresh listener.

use std::net::SocketAddr;
use std::time::Duration;

use gangway_engine::{Bridge, Control, EngineError, Settings, Status};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How long `stop` waits for the engine's own bounded drain to finish
/// (the engine's drain timeout plus slack).
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
}

struct Running {
    control: Control,
    task: JoinHandle<()>,
}

/// Where a bridge listens, and whether this call started it (so the caller
/// knows to follow its events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    pub addr: SocketAddr,
    pub new: bool,
}

/// Owns at most one running bridge.
#[derive(Default)]
pub struct BridgeHost {
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for BridgeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeHost")
    }
}

impl BridgeHost {
    /// Starts the bridge with `settings`, or applies them to the running
    /// one. Returns the address it listens on.
    pub async fn start_or_apply(&self, settings: Settings) -> Result<Started, BridgeError> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref() {
            match r.control.apply(settings.clone()) {
                Ok(()) => {
                    return Ok(Started {
                        addr: r.control.local_addr(),
                        new: false,
                    })
                }
                Err(EngineError::ListenChanged { .. }) => {
                    // A new address needs a new listener; bind it first so
                    // a taken port leaves the old bridge running.
                    let (bridge, control) = Bridge::bind(settings).await?;
                    if let Some(old) = running.take() {
                        stop_running(old).await;
                    }
                    let addr = control.local_addr();
                    *running = Some(spawn(bridge, control));
                    return Ok(Started { addr, new: true });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (bridge, control) = Bridge::bind(settings).await?;
        let addr = control.local_addr();
        *running = Some(spawn(bridge, control));
        Ok(Started { addr, new: true })
    }

    /// Applies `settings` only if a bridge is running; `Ok(None)` otherwise.
    pub async fn apply_if_running(
        &self,
        settings: Settings,
    ) -> Result<Option<Started>, BridgeError> {
        if self.running.lock().await.is_none() {
            return Ok(None);
        }
        self.start_or_apply(settings).await.map(Some)
    }

    /// Stops accepting and waits (bounded) for the drain.
    pub async fn stop(&self) {
        if let Some(r) = self.running.lock().await.take() {
            stop_running(r).await;
        }
    }

    pub async fn control(&self) -> Option<Control> {
        self.running
            .lock()
            .await
            .as_ref()
            .map(|r| r.control.clone())
    }

    pub async fn status(&self) -> Option<Status> {
        self.control().await.map(|c| c.status())
    }

    /// Lets credentials the upstream rejected be tried once more.
    pub async fn retry_credentials(&self) {
        if let Some(c) = self.control().await {
            c.retry_credentials();
        }
    }
}

fn spawn(bridge: Bridge, control: Control) -> Running {
    tracing::info!("bridge listening on {}", control.local_addr());
    Running {
        control,
        task: tokio::spawn(bridge.run()),
    }
}

async fn stop_running(r: Running) {
    r.control.shutdown();
    if tokio::time::timeout(STOP_TIMEOUT, r.task).await.is_err() {
        tracing::warn!("the bridge did not stop within {}s", STOP_TIMEOUT.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_engine::SettingsFile;

    fn on_free_port() -> Settings {
        SettingsFile {
            port: Some(0),
            ..Default::default()
        }
        .validate(None)
        .expect("valid")
    }

    #[tokio::test]
    async fn start_apply_stop() {
        let host = BridgeHost::default();
        let first = host.start_or_apply(on_free_port()).await.expect("start");
        let addr = first.addr;
        assert!(first.new);
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        // Port 0 in new settings means "keep the current listener".
        let again = host.start_or_apply(on_free_port()).await.expect("apply");
        assert_eq!(again, Started { addr, new: false });
        host.stop().await;
        assert!(host.status().await.is_none());
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
