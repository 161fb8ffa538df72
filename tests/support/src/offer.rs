//! An upstream that only ever asks for authentication.
//!
//! [`Offer`] answers every request, CONNECT included, with a 407 carrying a
//! fixed set of `Proxy-Authenticate` offers (e.g. only `Negotiate`), and
//! counts the requests it got. It never lets anything through: it stands
//! in for a corporate proxy whose schemes Gangway cannot do, for `auto`
//! selection and `--probe` tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::ports::LOOPBACK;
use crate::runtime::{server_runtime, SHUTDOWN_GRACE};

/// What the 407 body says.
const BODY: &str = "offer: authentication required\n";

/// A running always-407 upstream.
pub struct Offer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    runtime: Option<Runtime>,
}

impl Offer {
    /// Starts one whose 407s carry one `Proxy-Authenticate` field per entry
    /// of `offers`, in order (e.g. `&["Negotiate"]`).
    pub fn start(offers: &[&str]) -> Self {
        let offers: Arc<Vec<String>> = Arc::new(offers.iter().map(|o| o.to_string()).collect());
        let runtime = server_runtime("offer");
        let listener = runtime
            .block_on(TcpListener::bind((LOOPBACK, 0)))
            .expect("bind the offer upstream on 127.0.0.1:0");
        let addr = listener.local_addr().expect("offer upstream local address");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        runtime.spawn(async move {
            while let Ok((stream, _peer)) = listener.accept().await {
                let offers = Arc::clone(&offers);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        answer(req, Arc::clone(&offers), Arc::clone(&counter))
                    });
                    // The client may hang up at any time; what it saw is
                    // for the test to judge.
                    let _judged_by_the_client = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Offer {
            addr,
            requests,
            runtime: Some(runtime),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, as `gangway --proxy` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    offers: Arc<Vec<String>>,
    counter: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    counter.fetch_add(1, Ordering::SeqCst);
    // Read the body so the connection stays usable for the next request.
    let _body_is_dropped = req.into_body().collect().await;
    let mut response = Response::builder()
        .status(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    for offer in offers.iter() {
        response = response.header(header::PROXY_AUTHENTICATE, offer.as_str());
    }
    Ok(response
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("static 407 parts are valid"))
}
