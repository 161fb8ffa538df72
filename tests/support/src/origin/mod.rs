//! A local origin server: the far end of every request the bridge forwards.
//!
//! [`Origin::start`] serves plain HTTP/1.1 on `127.0.0.1:<free port>`;
//! [`Origin::start_https`] serves the same endpoints behind TLS with a fresh
//! [`TestCa`]. The endpoints are listed in [`service`]. The origin counts the
//! TCP connections it accepted, so a test can prove keep-alive reuse.
//!
//! Dropping the origin stops its runtime and closes its sockets.

mod body;
mod echo;
pub mod service;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_rustls::TlsAcceptor;

pub use echo::EchoReply;
pub use service::{chunked_body, HELLO};

use crate::ports::LOOPBACK;
use crate::runtime::{server_runtime, SHUTDOWN_GRACE};
use crate::tls::TestCa;

/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A running origin server.
pub struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    tls: Option<TestCa>,
    runtime: Option<Runtime>,
}

impl Origin {
    /// Starts a plain HTTP origin on a free loopback port.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts an HTTPS origin with a fresh test CA; see [`Origin::ca_file`].
    pub fn start_https() -> Self {
        Self::launch(Some(TestCa::generate()))
    }

    fn launch(tls: Option<TestCa>) -> Self {
        let runtime = server_runtime("origin");
        let listener = runtime
            .block_on(TcpListener::bind((LOOPBACK, 0)))
            .expect("bind the origin on 127.0.0.1:0");
        let addr = listener.local_addr().expect("origin local address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = tls.as_ref().map(|ca| TlsAcceptor::from(ca.server_config()));
        runtime.spawn(accept_loop(listener, Arc::clone(&accepted), acceptor));
        Origin {
            addr,
            accepted,
            tls,
            runtime: Some(runtime),
        }
    }

    /// The address it listens on (always `127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The absolute URL of `path` (which starts with `/`) on this origin,
    /// e.g. `http://127.0.0.1:41000/hello`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme(), self.addr, path)
    }

    /// `host:port`, as a CONNECT request names it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// How many TCP connections it has accepted so far.
    pub fn accepted_connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The test CA's certificate (PEM) for `curl --cacert`.
    ///
    /// Panics on a plain HTTP origin.
    pub fn ca_file(&self) -> &Path {
        self.tls
            .as_ref()
            .expect("ca_file() needs an origin started with Origin::start_https()")
            .ca_file()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
    }
}

/// Accepts until the runtime shuts down; one task per connection.
async fn accept_loop(listener: TcpListener, accepted: Arc<AtomicUsize>, tls: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream).await,
                Some(acceptor) => {
                    // A failed handshake is the client's business (curl
                    // reports it); the origin just drops the connection.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream).await;
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 (keep-alive, 100-continue, HTTP/1.0) on one connection.
async fn serve<I>(io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn =
        http1::Builder::new().serve_connection(TokioIo::new(io), service_fn(service::handle));
    // The bridge or client may hang up mid-exchange; whether that is wrong is
    // for the test to judge from what the client saw, not for the origin.
    let _outcome_judged_by_the_client = conn.await;
}
