//! Private tokio runtimes for the harness's servers.
//!
//! Tests are synchronous; each server (origin, hang) owns a small runtime so
//! that dropping the server stops everything it spawned, and one test's
//! servers never share threads with another's.

use std::time::Duration;

use tokio::runtime::Runtime;

/// How long dropping a server waits for its tasks (and sockets) to go away.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A two-thread runtime named after the server it runs.
pub(crate) fn server_runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("testkit-{name}"))
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("build the {name} runtime: {e}"))
}
