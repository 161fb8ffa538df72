//! A bounded pool of idle upstream (and origin) connections, keyed by the
//! peer's authority. A connection is checked out exclusively, used for one
//! request, and put back only after its response body was read to the end.
//! Connections the peer closed are noticed here (hyper's connection task
//! sees the EOF while idle) and never handed out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::body::ReqBody;

/// The most peers (distinct authorities) with idle connections kept at once.
const MAX_KEYS: usize = 256;

/// One HTTP/1.1 connection to a peer.
#[derive(Debug)]
pub struct PooledConn {
    pub sender: SendRequest<ReqBody>,
    /// The NTLM handshake succeeded on this connection: it is authenticated
    /// for its lifetime and needs no further credentials.
    pub authenticated: bool,
    /// Requests already served on this connection.
    pub uses: u32,
    /// This connection's place among the upstream's limited connections;
    /// released when the connection closes or becomes a tunnel.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// A request went out without its body (held back behind `Expect`):
    /// the connection's framing is broken and it must not be reused.
    pub poisoned: bool,
}

impl PooledConn {
    pub fn new(sender: SendRequest<ReqBody>) -> Self {
        PooledConn {
            sender,
            authenticated: false,
            uses: 0,
            slot: None,
            poisoned: false,
        }
    }
}

#[derive(Debug)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<(PooledConn, Instant)>>>,
    per_key: usize,
    max_idle: Duration,
    /// Woken whenever a connection comes back.
    returned: tokio::sync::Notify,
}

impl Pool {
    pub fn new(per_key: usize, max_idle: Duration) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            per_key,
            max_idle,
            returned: tokio::sync::Notify::new(),
        }
    }

    /// The most recently used live connection to `key`, if any. Closed and
    /// expired ones are dropped on the way.
    pub fn checkout(&self, key: &str) -> Option<PooledConn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some((conn, since)) = list.pop() {
            if conn.sender.is_closed() || now.duration_since(since) > self.max_idle {
                continue;
            }
            return Some(conn);
        }
        idle.remove(key);
        None
    }

    /// Returns a connection after a completed exchange. Dropped (closed)
    /// when the peer is closing it or the pool for `key` is full.
    pub fn put(&self, key: &str, conn: PooledConn) {
        if conn.sender.is_closed() || conn.poisoned || self.per_key == 0 {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if !idle.contains_key(key) && idle.len() >= MAX_KEYS {
            return;
        }
        let list = idle.entry(key.to_owned()).or_default();
        if list.len() >= self.per_key {
            // Keep the freshest: drop the one idle longest.
            list.remove(0);
        }
        list.push((conn, Instant::now()));
        drop(idle);
        self.returned.notify_waiters();
    }

    /// Resolves after the next `put`. Create it before checking the pool,
    /// so that a return in between is not missed.
    pub fn returned(&self) -> tokio::sync::futures::Notified<'_> {
        self.returned.notified()
    }

    /// Closes every idle connection (settings changed, or the upstream
    /// restarted and its connections are dead).
    pub fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Idle connections held, for the status page.
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}
