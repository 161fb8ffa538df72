//! The listener: binds, accepts with a bounded number of live connections
//! (503 beyond it, and when out of file descriptors), refuses clients
//! outside the allow list, and shuts down gracefully with a bounded drain. [`Control`] is the handle the CLI and the app keep.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;
use crate::events::{ConnectionEvent, EventSink, Kind};
use crate::headers::ViaToken;
use crate::settings::Settings;
use crate::stats::{Stats, StatsSnapshot};
use crate::upstream::gate::CredentialStatus;
use crate::upstream::pool::Pool;
use crate::upstream::{Connector, Upstream};

/// Everything a connection needs, shared.
#[derive(Debug)]
pub(crate) struct Engine {
    routing: RwLock<Arc<Routing>>,
    pub connector: Connector,
    pub events: EventSink,
    pub stats: Arc<Stats>,
    pub via: ViaToken,
    pub listen: SocketAddr,
    /// Tunnels and other work that outlives a request; drained on shutdown.
    pub tasks: TaskTracker,
    /// Stop accepting and finish what is in flight.
    pub shutdown: CancellationToken,
    /// The drain time is over: close tunnels that are still open.
    pub force_close: CancellationToken,
}

/// The settings in force and the upstream built from them. Swapped whole
/// when settings change; requests in flight keep the one they started with.
#[derive(Debug)]
pub(crate) struct Routing {
    pub settings: Settings,
    pub upstream: Option<Arc<Upstream>>,
}

impl Engine {
    pub fn routing(&self) -> Arc<Routing> {
        match self.routing.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A bound, not yet running bridge.
pub struct Bridge {
    listener: TcpListener,
    engine: Arc<Engine>,
}

/// Controls a running bridge: events, status, settings, shutdown.
#[derive(Clone, Debug)]
pub struct Control {
    engine: Arc<Engine>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "the listen address cannot change while running (restart to move from {from} to {to})"
    )]
    ListenChanged { from: SocketAddr, to: SocketAddr },
}

impl Bridge {
    /// Binds the listener. Port 0 picks a free port; see [`Bridge::local_addr`].
    pub async fn bind(settings: Settings) -> Result<(Bridge, Control), EngineError> {
        raise_fd_limit();
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| EngineError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let listen = listener.local_addr().map_err(|source| EngineError::Bind {
            addr: settings.listen,
            source,
        })?;
        let stats = Arc::new(Stats::default());
        let pool = Pool::new(settings.limits.pool_size, settings.timeouts.pool_idle);
        let routing = Routing::new(settings, &stats);
        let engine = Arc::new(Engine {
            routing: RwLock::new(Arc::new(routing)),
            connector: Connector::new(pool),
            events: EventSink::new(stats.clone()),
            stats,
            via: ViaToken::new(),
            listen,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            force_close: CancellationToken::new(),
        });
        Ok((
            Bridge {
                listener,
                engine: engine.clone(),
            },
            Control { engine },
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.engine.listen
    }

    /// Accepts until [`Control::shutdown`], then stops accepting and waits
    /// up to the drain timeout for connections and tunnels to finish.
    pub async fn run(self) {
        let engine = self.engine;
        let max = engine.routing().settings.limits.max_connections;
        let limit = Arc::new(Semaphore::new(max));
        let connections = TaskTracker::new();
        let mut reserve = FdReserve::new();
        let mut out_of_fds = false;
        loop {
            let accepted = tokio::select! {
                _ = engine.shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) if is_out_of_descriptors(&e) => {
                    if !out_of_fds {
                        out_of_fds = true;
                        tracing::warn!(
                            "accept failed: {e}; out of file descriptors, new clients get 503 until connections close"
                        );
                    }
                    // The client stays queued in the backlog, so accept fails
                    // again at once: refuse it with the reserve descriptor,
                    // or back off when there is none, instead of spinning.
                    if !reserve.refuse_one(&engine, &self.listener).await {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if out_of_fds {
                out_of_fds = false;
                tracing::info!("file descriptors available again; accepting clients");
            }
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                let err = crate::error::ProxyError::TooManyConnections(max);
                refuse(&engine, stream, peer, &err);
                continue;
            };
            let engine = engine.clone();
            connections.spawn(async move {
                connection::serve(engine, stream, peer, permit).await;
            });
        }
        drop(self.listener);
        connections.close();
        engine.tasks.close();
        let drain = engine.routing().settings.timeouts.drain;
        let drained = tokio::time::timeout(drain, async {
            connections.wait().await;
            engine.tasks.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "shutdown: {} connections still open after {}s, closing them",
                connections.len() + engine.tasks.len(),
                drain.as_secs()
            );
            engine.force_close.cancel();
            // Tunnels record their events as they close; give them a moment.
            let _ = tokio::time::timeout(Duration::from_millis(500), engine.tasks.wait()).await;
        }
    }
}

/// Pause after a failed accept before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a refusal waits for the queued client it makes room for.
const RESERVE_ACCEPT_WAIT: Duration = Duration::from_millis(10);

/// EMFILE or ENFILE: no descriptor for the connection waiting in the backlog.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    const CODES: [i32; 2] = [24, 23]; // EMFILE, ENFILE (Linux and the BSDs)
    #[cfg(windows)]
    const CODES: [i32; 1] = [10024]; // WSAEMFILE
    #[cfg(not(any(unix, windows)))]
    const CODES: [i32; 0] = [];
    e.raw_os_error().is_some_and(|code| CODES.contains(&code))
}

/// One descriptor held back (a handle on the null device) for when accept
/// fails for lack of descriptors: given up for a moment, it lets the
/// client waiting in the backlog be accepted, answered 503 and closed,
/// instead of hanging there until some other connection ends.
struct FdReserve(Option<std::fs::File>);

impl FdReserve {
    fn new() -> Self {
        FdReserve(Self::open())
    }

    fn open() -> Option<std::fs::File> {
        let null = if cfg!(windows) { "NUL" } else { "/dev/null" };
        std::fs::File::open(null).ok()
    }

    /// Refuses one queued client. False when there was no reserve to give
    /// up (it is taken again for next time).
    async fn refuse_one(&mut self, engine: &Engine, listener: &TcpListener) -> bool {
        if self.0.take().is_none() {
            self.0 = Self::open();
            return false;
        }
        if let Ok(Ok((stream, peer))) =
            tokio::time::timeout(RESERVE_ACCEPT_WAIT, listener.accept()).await
        {
            refuse(
                engine,
                stream,
                peer,
                &crate::error::ProxyError::OutOfDescriptors,
            );
        }
        self.0 = Self::open();
        true
    }
}

/// Too many connections, or no descriptors: a 503 written without
/// blocking, then close. No task is spawned, so a flood cannot grow the
/// task count.
fn refuse(engine: &Engine, stream: TcpStream, peer: SocketAddr, err: &crate::error::ProxyError) {
    let body = format!("Gangway: {err}\n");
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _partial_write_is_fine = stream.try_write(msg.as_bytes());
    let mut rec = engine.events.start(Kind::Request, peer, "-", "-".into());
    rec.set_status(503);
    rec.set_error(err.to_string());
    drop(stream);
}

impl Routing {
    pub fn new(settings: Settings, stats: &Arc<Stats>) -> Self {
        let pool_size = settings.limits.pool_size;
        let upstream = settings
            .upstream
            .clone()
            .map(|up| Arc::new(Upstream::new(up, pool_size, stats.clone())));
        Routing { settings, upstream }
    }
}

/// What the status page, the tray and `probe` show.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub listen: SocketAddr,
    /// `direct`, or `http://proxy:8080 (ntlm as CORP\bob)`.
    pub upstream: String,
    /// The scheme in use with the upstream, once known.
    pub auth_scheme: Option<String>,
    pub credentials: Option<CredentialStatus>,
    pub failed_attempts: u32,
    pub pooled_connections: usize,
    pub stats: StatsSnapshot,
}

impl Control {
    pub fn local_addr(&self) -> SocketAddr {
        self.engine.listen
    }

    /// Connection events from now on. A receiver that falls more than
    /// [`crate::events::EVENT_BUFFER`] behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ConnectionEvent>> {
        self.engine.events.subscribe()
    }

    pub fn status(&self) -> Status {
        status(&self.engine)
    }

    /// Applies new settings to the running bridge. New requests use them at
    /// once; requests and tunnels in flight finish on the old ones. Pooled
    /// upstream connections are closed when the upstream or credentials changed.
    pub fn apply(&self, settings: Settings) -> Result<(), EngineError> {
        if settings.listen.port() != 0 && settings.listen != self.engine.listen {
            return Err(EngineError::ListenChanged {
                from: self.engine.listen,
                to: settings.listen,
            });
        }
        let current = self.engine.routing();
        // Same upstream and credentials: keep its pool and what it learned,
        // including a rejection (a bypass-list edit is no reason to retry).
        let upstream = match (&current.upstream, &settings.upstream) {
            (Some(cur), Some(new)) if cur.settings.same_as(new) => Some(cur.clone()),
            (_, new) => {
                self.engine.connector.pool.clear();
                new.clone().map(|up| {
                    Arc::new(Upstream::new(
                        up,
                        settings.limits.pool_size,
                        self.engine.stats.clone(),
                    ))
                })
            }
        };
        let described = settings.describe();
        if let Ok(mut r) = self.engine.routing.write() {
            *r = Arc::new(Routing { settings, upstream });
        }
        tracing::info!("settings applied: {described}");
        Ok(())
    }

    /// Whether connection events carry masked request and response headers
    /// (for a log window's details pane). Off by default.
    pub fn set_event_detail(&self, on: bool) {
        self.engine.events.set_detail(on);
    }

    /// Allows one more attempt with credentials the upstream rejected.
    pub fn retry_credentials(&self) {
        if let Some(up) = &self.engine.routing().upstream {
            up.auth.gate.reset();
            tracing::info!("credentials will be tried once more on the next request");
        }
    }

    /// Stops accepting; [`Bridge::run`] returns after the drain.
    pub fn shutdown(&self) {
        self.engine.shutdown.cancel();
    }
}

pub(crate) fn status(engine: &Engine) -> Status {
    let routing = engine.routing();
    let up = routing.upstream.as_ref();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        listen: engine.listen,
        upstream: up
            .map(|u| u.settings.describe())
            .unwrap_or_else(|| "direct".into()),
        auth_scheme: up.and_then(|u| u.auth.scheme()).map(|s| s.to_string()),
        credentials: up
            .filter(|u| u.settings.credentials.is_some())
            .map(|u| u.auth.gate.status()),
        failed_attempts: up.map(|u| u.auth.gate.failures()).unwrap_or(0),
        pooled_connections: engine.connector.pool.idle_count(),
        stats: engine.stats.snapshot(),
    }
}

/// Tunnels need two descriptors each; the default soft limit of 1024 would
/// cap us near 500. Raise the soft limit to the hard one, as Px does.
fn raise_fd_limit() {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("file descriptor limit: {n}"),
        Err(e) => tracing::debug!("could not raise the file descriptor limit: {e}"),
    }
}

impl Engine {
    pub fn connection_opened(&self) {
        self.stats.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.stats.connections_open.fetch_sub(1, Relaxed);
    }
}
