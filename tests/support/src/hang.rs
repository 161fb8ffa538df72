//! Peers that never answer, and ports where nobody listens.
//!
//! [`Hang`] accepts TCP connections, reads and discards whatever arrives and
//! never writes a byte: an upstream or origin that is up but stuck, for 504
//! tests. [`closed_port`] gives a loopback port with no listener, for
//! "connection refused" (502) tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::ports::{free_port, LOOPBACK};
use crate::runtime::{server_runtime, SHUTDOWN_GRACE};

/// A server that accepts and never answers. Connections stay open until the
/// client closes them or the `Hang` is dropped.
pub struct Hang {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    runtime: Option<Runtime>,
}

impl Hang {
    /// Starts one on a free loopback port.
    pub fn start() -> Self {
        let runtime = server_runtime("hang");
        let listener = runtime
            .block_on(TcpListener::bind((LOOPBACK, 0)))
            .expect("bind the hang server on 127.0.0.1:0");
        let addr = listener.local_addr().expect("hang server local address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        runtime.spawn(async move {
            while let Ok((mut stream, _peer)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Drain input so the client never blocks on a full
                    // window; stop at EOF or error. Never write.
                    let mut sink = [0u8; 16 * 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        Hang {
            addr,
            accepted,
            runtime: Some(runtime),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:port`, to use it as an upstream proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections it accepted (to prove a request reached it).
    pub fn accepted_connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
    }
}

/// A loopback port with nothing listening on it: connecting is refused.
///
/// A port the kernel just handed out and took back (see [`free_port`]): the
/// kernel spreads its picks over the whole ephemeral range, so another peer
/// taking the same port within one test is unlikely enough to ignore.
pub fn closed_port() -> u16 {
    free_port()
}
