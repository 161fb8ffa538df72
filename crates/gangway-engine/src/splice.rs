//! One direction of a socket tunnel through splice(2) (Linux): socket →
//! pipe → socket, so the bytes stay in the kernel.
//!
//! A user-space relay copies every byte twice (socket → buffer → socket),
//! and that copying was 98% of the bridge's CPU in a bulk transfer
//! (bench/ANALYSIS.md, "CONNECT throughput"). With a pipe in between, the
//! kernel moves page references instead (HAProxy relays the same way).
//!
//! The pipe follows the relay buffer's policy (`tunnel`): it exists only
//! while the direction is busy. It is made when the socket first becomes
//! readable, closed when the socket is drained unless the burst was a bulk
//! transfer, and then closed once the socket stays quiet for the linger
//! time. So an idle tunnel holds no pipe, and a thousand held tunnels cost
//! no descriptors beyond their sockets. A pipe that can't be made (out of
//! descriptors, say) ends this relay with [`End::NoPipe`] and the caller
//! copies through a buffer instead.
//!
//! Invariant: the pipe is empty whenever the relay waits for the source
//! socket, because each splice into it is drained to the destination
//! before the next. So a pipe can be dropped without losing bytes, and an
//! EAGAIN from socket → pipe always means the socket has nothing to read.
//!
//! splice(2) into a socket has no MSG_NOSIGNAL: writing to a peer that is
//! gone raises SIGPIPE, which a Rust program ignores (the runtime sets it
//! to SIG_IGN before `main`), so it surfaces here as EPIPE.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for: each splice moves up to this much. The kernel
/// refuses sizes above `/proc/sys/fs/pipe-max-size` (1 MiB by default) and
/// gives new pipes two pages, and refuses to grow them, once the user holds
/// `pipe-user-pages-soft` (64 MiB by default) in pipes.
const PIPE_SIZE: usize = 1024 * 1024;
/// A pipe smaller than this (Linux's default size) would take more
/// syscalls per byte than the buffered copy: the relay does without it.
const PIPE_SIZE_MIN: usize = 64 * 1024;
/// A burst that moved this much in one splice is a bulk transfer: its pipe
/// is kept across readiness waits (see `tunnel`'s relay buffer).
const STREAMING: usize = 64 * 1024;

/// How a splice relay ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The source reached end of stream; everything read was written.
    Eof,
    /// No pipe could be made (the cause inside); nothing is in flight, so
    /// the caller can go on copying through a buffer.
    NoPipe(io::Error),
}

/// Relays `from` → `to` until `from` reaches end of stream (the caller
/// then half-closes `to`) or either fails. Bytes are counted into
/// `counter` as they reach `to`.
pub(crate) async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    counter: &AtomicU64,
    linger: Duration,
) -> io::Result<End> {
    let mut pipe: Option<Pipe> = None;
    loop {
        if pipe.is_none() {
            from.readable().await?;
        } else {
            match tokio::time::timeout(linger, from.readable()).await {
                Ok(ready) => ready?,
                Err(_quiet) => {
                    pipe = None;
                    continue;
                }
            }
        }
        let p = match pipe {
            Some(ref p) => p,
            None => match Pipe::new() {
                Ok(p) => pipe.insert(p),
                Err(e) => return Ok(End::NoPipe(e)),
            },
        };
        let mut streaming = false;
        loop {
            let filled = from.try_io(Interest::READABLE, || {
                Ok(splice(
                    from,
                    None,
                    &p.write,
                    None,
                    PIPE_SIZE,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )?)
            });
            match filled {
                Ok(0) => return Ok(End::Eof),
                Ok(n) => {
                    streaming |= n >= STREAMING;
                    p.drain_to(to, n, counter).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !streaming {
            pipe = None;
        }
    }
}

/// A pipe's two ends.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        if let Err(e) = fcntl_setpipe_size(&write, PIPE_SIZE) {
            // Refused by the limits above: a default-sized pipe still does
            // better than the buffer, a shrunken one doesn't.
            let size = fcntl_getpipe_size(&write)?;
            if size < PIPE_SIZE_MIN {
                return Err(io::Error::other(format!(
                    "a pipe of {size} bytes only, and it can't grow: {e}"
                )));
            }
        }
        Ok(Pipe { read, write })
    }

    /// Moves the `len` bytes in the pipe to `to`, waiting while its send
    /// buffer is full.
    async fn drain_to(
        &self,
        to: &TcpStream,
        mut len: usize,
        counter: &AtomicU64,
    ) -> io::Result<()> {
        while len > 0 {
            to.writable().await?;
            let sent = to.try_io(Interest::WRITABLE, || {
                Ok(splice(
                    &self.read,
                    None,
                    to,
                    None,
                    len,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )?)
            });
            match sent {
                // We hold the write end, so the pipe can't report EOF: 0
                // would mean it lost bytes we put in.
                Ok(0) => return Err(io::Error::other("pipe emptied before its bytes were sent")),
                Ok(n) => {
                    len -= n;
                    counter.fetch_add(n as u64, Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
