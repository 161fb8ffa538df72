//! Opening HTTP/1.1 connections to an upstream proxy or an origin: DNS and
//! TCP connect under one timeout, socket tuning, the hyper handshake, and
//! the connection task that notices when the peer closes.

use std::io;
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::pool::PooledConn;
use crate::body::ReqBody;
use crate::error::ProxyError;
use crate::net::tune_socket;

/// Who we are connecting to, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    Upstream,
    Origin,
}

/// TCP-connects to `host:port` within `timeout`, trying each resolved
/// address in turn.
pub async fn tcp(
    host: &str,
    port: u16,
    timeout: Duration,
    kind: PeerKind,
) -> Result<TcpStream, ProxyError> {
    let authority = authority(host, port);
    let unreachable = |source: io::Error| match kind {
        PeerKind::Upstream => ProxyError::UpstreamUnreachable {
            upstream: authority.clone(),
            source,
        },
        PeerKind::Origin => ProxyError::OriginUnreachable {
            target: authority.clone(),
            source,
        },
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let attempt = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port))
            .await
            .map_err(unreachable)?
        {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(unreachable(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address")
        })))
    };
    let stream = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        ProxyError::ConnectTimeout {
            peer: authority.clone(),
            after: timeout,
        }
    })??;
    tune_socket(&stream);
    Ok(stream)
}

/// Connects and performs the HTTP/1.1 client handshake. Returns the
/// connection and how long connecting took.
pub async fn http(
    host: &str,
    port: u16,
    timeout: Duration,
    kind: PeerKind,
) -> Result<(PooledConn, Duration), ProxyError> {
    let started = Instant::now();
    let stream = tcp(host, port, timeout, kind).await?;
    let (sender, conn) = http1::Builder::new()
        .preserve_header_case(true)
        .title_case_headers(false)
        .max_buf_size(512 * 1024)
        .handshake::<_, ReqBody>(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::PeerProtocol {
            peer: authority(host, port),
            reason: e.to_string(),
        })?;
    let peer = authority(host, port);
    tokio::spawn(async move {
        // Ends when the peer closes or the last sender is dropped; errors
        // surface to the request in flight, this is only for the log.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("connection to {peer} ended: {e}");
        }
    });
    Ok((PooledConn::new(sender), started.elapsed()))
}

/// `host:port`, bracketing IPv6 literals.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
