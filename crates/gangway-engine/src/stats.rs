//! Counters for the status page, the tray and the log window header.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub tunnels: AtomicU64,
    pub tunnels_open: AtomicU64,
    pub connections_open: AtomicU64,
    pub errors: AtomicU64,
    pub handshakes: AtomicU64,
    pub auth_failures: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub tunnels: u64,
    pub tunnels_open: u64,
    pub connections_open: u64,
    pub errors: u64,
    pub handshakes: u64,
    pub auth_failures: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Seconds since the epoch, and the error in words.
    pub last_error: Option<(u64, String)>,
}

impl Stats {
    pub fn record_error(&self, text: &str) {
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((SystemTime::now(), text.to_owned()));
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let last_error = self.last_error.lock().ok().and_then(|l| {
            l.as_ref().map(|(t, e)| {
                let secs = t
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                (secs, e.clone())
            })
        });
        StatsSnapshot {
            requests: self.requests.load(Relaxed),
            tunnels: self.tunnels.load(Relaxed),
            tunnels_open: self.tunnels_open.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            errors: self.errors.load(Relaxed),
            handshakes: self.handshakes.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            last_error,
        }
    }
}
