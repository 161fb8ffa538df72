//! CONNECT: open the way to host:port (directly, or through the upstream's
//! own CONNECT with authentication), answer 200, then relay bytes both ways
//! until either side closes. A refused upstream CONNECT reaches the client
//! as the upstream's status and body, not as a reset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::body::{self, Metered, ResBody};
use crate::connection::Permit;
use crate::error::ProxyError;
use crate::events::{Kind, Recorder};
use crate::head_check::HeadCheck;
use crate::router::upstream_for;
use crate::server::{Engine, Routing};
#[cfg(target_os = "linux")]
use crate::splice;
use crate::upstream::connect::{self, PeerKind};
use crate::upstream::Payload;

/// Relay buffer per direction: it starts at the minimum and doubles while
/// reads fill it, up to the maximum. For two sockets the maximum is 256 KiB:
/// a bulk transfer then moves in a quarter of the reads and writes it takes
/// at 64 KiB (bench/ANALYSIS.md), and the buffer exists only while the
/// direction is busy, so idle tunnels don't pay for the size.
const RELAY_BUFFER_MIN: usize = 4 * 1024;
const RELAY_BUFFER_MAX: usize = 64 * 1024;
const SOCKET_RELAY_BUFFER_MAX: usize = 256 * 1024;
/// How long a streaming direction keeps its buffer (or its pipe, `splice`)
/// while its socket is quiet, so a bulk transfer doesn't free and
/// reallocate it at every readiness.
const RELAY_BUFFER_LINGER: Duration = Duration::from_millis(250);

/// The far end of a tunnel.
enum Far {
    Direct(TcpStream),
    Upstream(Upgraded),
}

pub(crate) async fn handle(
    engine: Arc<Engine>,
    routing: Arc<Routing>,
    client: SocketAddr,
    permit: Permit,
    req: Request<Incoming>,
) -> Response<ResBody> {
    let target = req.uri().to_string();
    let mut rec = engine.events.start(Kind::Tunnel, client, "CONNECT", target);
    rec.set_request_headers(req.headers());
    let Some((host, port)) = target_of(req.uri()) else {
        return ProxyError::BadRequest("CONNECT needs host:port".into()).answer(&mut rec);
    };
    let far = match open(&engine, &routing, &host, port, &req, &mut rec).await {
        Ok(Ok(far)) => far,
        Ok(Err(refusal)) => return refusal,
        Err(err) => return err.answer(&mut rec),
    };
    rec.set_status(200);
    engine.stats.tunnels.fetch_add(1, Relaxed);
    let tunnel_engine = engine.clone();
    engine.tasks.spawn(async move {
        let force_close = tunnel_engine.force_close.clone();
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                tunnel_engine.stats.tunnels_open.fetch_add(1, Relaxed);
                rec.opened();
                tokio::select! {
                    _ = relay(upgraded, far, &mut rec) => {}
                    _ = force_close.cancelled() => {
                        rec.set_error("closed by bridge shutdown");
                    }
                }
                tunnel_engine.stats.tunnels_open.fetch_sub(1, Relaxed);
            }
            Err(e) => rec.set_error(format!("client upgrade failed: {e}")),
        }
        drop(permit);
        rec.finish();
    });
    let mut res = Response::new(body::empty());
    *res.status_mut() = StatusCode::OK;
    res
}

/// host and port from an authority-form target.
fn target_of(uri: &Uri) -> Option<(String, u16)> {
    let auth = uri.authority()?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), auth.port_u16()?))
}

/// Opens the far end. `Ok(Err(response))` is the upstream's refusal,
/// passed on to the client.
async fn open(
    engine: &Arc<Engine>,
    routing: &Routing,
    host: &str,
    port: u16,
    req: &Request<Incoming>,
    rec: &mut Recorder,
) -> Result<Result<Far, Response<ResBody>>, ProxyError> {
    let timeouts = routing.settings.timeouts;
    let Some(up) = upstream_for(routing, host) else {
        let started = std::time::Instant::now();
        let stream = connect::tcp(host, port, timeouts.connect, PeerKind::Origin).await?;
        rec.set_connect_time(started.elapsed());
        return Ok(Ok(Far::Direct(stream)));
    };
    rec.set_route(&up.link.authority());
    let authority = connect::authority(host, port);
    let mut builder = Request::builder()
        .method(Method::CONNECT)
        .uri(authority.as_str())
        .header(header::HOST, authority.as_str());
    if let Some(ua) = req.headers().get(header::USER_AGENT) {
        builder = builder.header(header::USER_AGENT, ua.clone());
    }
    let (mut head, ()) = builder
        .body(())
        .map_err(|e| ProxyError::BadRequest(format!("CONNECT target: {e}")))?
        .into_parts();
    engine.via.append(&mut head.headers, http::Version::HTTP_11);
    let exchange = engine
        .connector
        .exchange(
            &up.link,
            Some(&up.auth),
            &head,
            Payload::None,
            &authority,
            &timeouts,
        )
        .await?;
    exchange.record(rec, &engine.stats);
    let response = exchange.response;
    if !response.status().is_success() {
        // The upstream said no (403 by policy, 502 for a dead target...):
        // the client gets its words.
        rec.set_status(response.status().as_u16());
        rec.set_error(format!(
            "upstream refused the tunnel: {}",
            response.status()
        ));
        let (mut parts, incoming) = response.into_parts();
        crate::headers::strip_hop_by_hop(&mut parts.headers);
        rec.set_response_headers(&parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let (_, down) = rec.counters();
        let body = Metered::new(incoming, down)
            .map_err(Into::into)
            .boxed_unsync();
        return Ok(Err(Response::from_parts(parts, body)));
    }
    // The connection becomes the tunnel: it never returns to the pool.
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| ProxyError::PeerProtocol {
            peer: up.link.authority(),
            reason: format!("tunnel setup failed: {e}"),
        })?;
    Ok(Ok(Far::Upstream(upgraded)))
}

/// Relays until either side closes. Both ends are unwrapped back to their
/// TCP sockets when hyper allows (it always does for our own connections),
/// so the copy loop runs on plain sockets with no HTTP layer in between.
async fn relay(client: Upgraded, far: Far, rec: &mut Recorder) {
    // The client socket reaches hyper through `HeadCheck` (connection.rs).
    let client = match client.downcast::<TokioIo<HeadCheck<TcpStream>>>() {
        Ok(parts) => {
            let (socket, unread) = parts.io.into_inner().into_parts();
            Either::Socket(socket, early_bytes(parts.read_buf, unread))
        }
        Err(upgraded) => Either::Upgraded(TokioIo::new(upgraded)),
    };
    let far = match far {
        Far::Direct(stream) => Either::Socket(stream, Bytes::new()),
        Far::Upstream(upgraded) => match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Either::Socket(parts.io.into_inner(), parts.read_buf),
            Err(upgraded) => Either::Upgraded(TokioIo::new(upgraded)),
        },
    };
    let (up, down) = rec.counters();
    let result = match (client, far) {
        (Either::Socket(a, pa), Either::Socket(b, pb)) => {
            sockets_both(a, pa, b, pb, up, down).await
        }
        (Either::Socket(a, pa), Either::Upgraded(b)) => {
            pump_both(a, pa, b, Bytes::new(), up, down).await
        }
        (Either::Upgraded(a), Either::Socket(b, pb)) => {
            pump_both(a, Bytes::new(), b, pb, up, down).await
        }
        (Either::Upgraded(a), Either::Upgraded(b)) => {
            pump_both(a, Bytes::new(), b, Bytes::new(), up, down).await
        }
    };
    if let Err(e) = result {
        // Resets at the end of a TLS session are routine; keep the reason
        // for the log, not as an error the user must read.
        tracing::debug!("tunnel #{} ended: {e}", rec.id());
    }
}

/// The client's bytes that arrived with or after the CONNECT head, in
/// stream order: hyper read its buffer's bytes from `HeadCheck` before
/// `HeadCheck` read the ones it still holds.
fn early_bytes(hyper_buf: Bytes, unread: Vec<u8>) -> Bytes {
    if unread.is_empty() {
        hyper_buf
    } else if hyper_buf.is_empty() {
        Bytes::from(unread)
    } else {
        Bytes::from([&hyper_buf[..], &unread[..]].concat())
    }
}

enum Either {
    Socket(TcpStream, Bytes),
    Upgraded(TokioIo<Upgraded>),
}

/// [`pump_both`] for two plain sockets, the usual case. On Linux each
/// direction splices (`splice`): the bytes stay in the kernel. Elsewhere,
/// or when no pipe can be had, each direction waits for readiness before
/// it holds a buffer, and lets the buffer go once the traffic stops. Either
/// way an idle tunnel holds no buffer and no pipe.
async fn sockets_both(
    mut a: TcpStream,
    a_early: Bytes,
    mut b: TcpStream,
    b_early: Bytes,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let (ar, mut aw) = a.split();
    let (br, mut bw) = b.split();
    let ab = socket_pump(&ar, &mut bw, a_early, &up);
    let ba = socket_pump(&br, &mut aw, b_early, &down);
    // Both directions to their end; the first error ends both.
    tokio::try_join!(ab, ba).map(|_| ())
}

async fn socket_pump(
    reader: &ReadHalf<'_>,
    writer: &mut WriteHalf<'_>,
    early: Bytes,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    if !early.is_empty() {
        writer.write_all(&early).await?;
        counter.fetch_add(early.len() as u64, Relaxed);
    }
    // `early` is a view into hyper's read buffer: holding it would keep
    // that whole buffer alive for the tunnel's lifetime.
    drop(early);
    #[cfg(target_os = "linux")]
    match splice::pump(
        reader.as_ref(),
        writer.as_ref(),
        counter,
        RELAY_BUFFER_LINGER,
    )
    .await?
    {
        splice::End::Eof => {
            writer.shutdown().await?;
            return Ok(());
        }
        splice::End::NoPipe(e) => {
            tracing::debug!("no pipe for a tunnel direction ({e}); relaying through a buffer");
        }
    }
    let mut size = RELAY_BUFFER_MIN;
    // Invariant: `buf` holds memory only while the direction is busy. It
    // is allocated (without zeroing) at a readiness and let go when the
    // socket is drained, unless the burst filled at least 64 KiB in one
    // read (a bulk transfer): then it is kept across readiness waits until
    // the socket stays quiet for RELAY_BUFFER_LINGER.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if buf.capacity() == 0 {
            reader.readable().await?;
            buf.reserve_exact(size);
        } else {
            match tokio::time::timeout(RELAY_BUFFER_LINGER, reader.readable()).await {
                Ok(ready) => ready?,
                Err(_quiet) => {
                    buf = Vec::new();
                    continue;
                }
            }
        }
        let mut streaming = false;
        loop {
            buf.clear();
            match reader.try_read_buf(&mut buf) {
                Ok(0) => {
                    writer.shutdown().await?;
                    return Ok(());
                }
                Ok(n) => {
                    writer.write_all(&buf[..n]).await?;
                    counter.fetch_add(n as u64, Relaxed);
                    if n == buf.capacity() {
                        // A full small buffer is a handshake flight or a
                        // page; a full large one is a bulk transfer.
                        streaming |= n >= RELAY_BUFFER_MAX;
                        if size < SOCKET_RELAY_BUFFER_MAX {
                            size = (size * 2).min(SOCKET_RELAY_BUFFER_MAX);
                            buf = Vec::with_capacity(size);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !streaming {
            buf = Vec::new();
        }
    }
}

/// Copies both ways until both directions reach end of stream (a
/// half-closed side keeps receiving) or either fails. `a_early`/`b_early`
/// are bytes hyper already read past the CONNECT head: they go out first.
/// Bytes are counted as they pass, so an open tunnel's counters are live.
async fn pump_both<A, B>(
    a: A,
    a_early: Bytes,
    b: B,
    b_early: Bytes,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let ab = pump(&mut ar, &mut bw, a_early, &up);
    let ba = pump(&mut br, &mut aw, b_early, &down);
    // Both directions to their end; the first error ends both.
    tokio::try_join!(ab, ba).map(|_| ())
}

/// One direction. The buffer starts small and grows while reads fill it,
/// so a thousand idle tunnels cost little and a busy one runs at full size.
async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    early: Bytes,
    counter: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !early.is_empty() {
        writer.write_all(&early).await?;
        counter.fetch_add(early.len() as u64, Relaxed);
    }
    // `early` is a view into hyper's read buffer: holding it would keep
    // that whole buffer alive for the tunnel's lifetime.
    drop(early);
    let mut buf = vec![0u8; RELAY_BUFFER_MIN];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            writer.shutdown().await?;
            return Ok(());
        }
        writer.write_all(&buf[..n]).await?;
        counter.fetch_add(n as u64, Relaxed);
        if n == buf.len() && buf.len() < RELAY_BUFFER_MAX {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Two connected sockets: (ours, the relay's).
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap());
        let (near, far) = tokio::join!(near, listener.accept());
        (near.unwrap(), far.unwrap().0)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// A client uploads, half-closes, and still gets the server's answer;
    /// early bytes go first; every byte is counted.
    #[tokio::test]
    async fn socket_relay_carries_both_ways_through_a_half_close() {
        let (mut client, relay_client) = socket_pair().await;
        let (mut server, relay_server) = socket_pair().await;
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let relay = tokio::spawn(sockets_both(
            relay_client,
            Bytes::from_static(b"early:"),
            relay_server,
            Bytes::new(),
            up.clone(),
            down.clone(),
        ));
        let upload = pattern(3 << 20, 0);
        let answer = pattern(5 << 20, 0x5a);
        let client_side = async {
            client.write_all(&upload).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let server_side = async {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
            got
        };
        let (client_got, server_got) = tokio::join!(client_side, server_side);
        relay.await.unwrap().unwrap();
        assert_eq!(&server_got[..6], b"early:");
        assert!(server_got[6..] == upload[..], "upload arrived changed");
        assert!(client_got == answer, "answer arrived changed");
        assert_eq!(up.load(Relaxed), upload.len() as u64 + 6);
        assert_eq!(down.load(Relaxed), answer.len() as u64);
    }
}
