//! The connection log window's feed: the engine's connection events,
//! gathered into batches the window takes at most four times a second, and
//! only when something changed ([`NewsFilter`]).
//!
//! The engine never waits on the window. Events arrive here from the
//! controller's event loop, which only pushes to a bounded buffer; a timer
//! task hands the buffer to the window through a Tauri IPC channel. When
//! the window falls behind (more than [`MAX_PER_BATCH`] events in one
//! tick), the surplus rows are dropped from the display and counted, and
//! the window says how many. The traffic itself is never touched.
//!
//! Counters (requests per second, errors in the last minute) are computed
//! here from every event, dropped or not, so they stay true under load.
//!
//! While no window is open, only a short backlog is kept (the last
//! [`BACKLOG`] events), so a window opened after a failure still shows it,
//! and the app's idle footprint stays small.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gangway_engine::events::{ConnectionEvent, Kind, Phase};
use gangway_engine::stats::StatsSnapshot;
use serde::Serialize;

/// How often the window gets a batch. Each delivery costs the webview a
/// fixed amount beyond its rows (the IPC channel's fetch, a render): at
/// 100 ms the log window's web process took 80% of a core while 1,600
/// requests a second went through the bridge, at 250 ms 66% with 2,000
/// (bench figures in the note on issue 5; `GANGWAY_E2E_RELEASE=1 npm run e2e`).
pub const TICK: Duration = Duration::from_millis(250);
/// The most events one batch carries (10,000 a second); beyond that the
/// display drops rows.
pub const MAX_PER_BATCH: usize = 2_500;
/// Events kept for a window that opens later.
pub const BACKLOG: usize = 500;
/// The span of "errors in the last minute".
const ERROR_WINDOW_SECS: u64 = 60;
/// The span requests per second are averaged over.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// What the window gets each tick.
#[derive(Clone, Debug, Serialize)]
pub struct LogBatch {
    /// New rows, and updates to rows already shown (a tunnel that closed
    /// has the same `id` as its open row), oldest first.
    pub events: Vec<Arc<ConnectionEvent>>,
    /// Rows dropped from the display since the window opened, because it
    /// fell behind.
    pub dropped: u64,
    pub counters: Counters,
    /// The program behind a client address, where known
    /// ([`crate::process_names`]).
    pub names: HashMap<String, String>,
}

/// The window header's live figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Finished requests and tunnels per second, over the last two seconds.
    pub requests_per_second: f64,
    pub open_tunnels: u64,
    /// Requests and tunnels that ended in an error or a 5xx, in the last minute.
    pub errors_last_minute: u64,
    /// Authentication handshakes with the upstream since the bridge started.
    pub handshakes: u64,
    /// Events seen since the window opened (shown or dropped).
    pub events: u64,
    /// Whether the bridge is running; the window says so when it is not.
    pub bridging: bool,
}

/// The feed's state; cheap to lock, never held across an await.
#[derive(Debug)]
pub struct ConnectionLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    backlog: VecDeque<Arc<ConnectionEvent>>,
    /// Set while a window listens; `pending` fills only then.
    watching: bool,
    pending: Vec<Arc<ConnectionEvent>>,
    dropped: u64,
    events: u64,
    finished: u64,
    /// (when, `finished` then), one sample per tick, over [`RATE_WINDOW`].
    rate_samples: VecDeque<(Instant, u64)>,
    /// Errors per second for the last minute: (second, count).
    errors: VecDeque<(u64, u64)>,
    clock: Instant,
}

impl Default for ConnectionLog {
    fn default() -> Self {
        ConnectionLog {
            inner: Mutex::new(Inner {
                backlog: VecDeque::with_capacity(BACKLOG),
                watching: false,
                pending: Vec::new(),
                dropped: 0,
                events: 0,
                finished: 0,
                rate_samples: VecDeque::new(),
                errors: VecDeque::new(),
                clock: Instant::now(),
            }),
        }
    }
}

impl ConnectionLog {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.inner.lock() {
            Ok(mut i) => f(&mut i),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Takes one event from the engine. Never blocks for long: a push and
    /// a few counters.
    pub fn record(&self, event: &Arc<ConnectionEvent>) {
        self.with(|i| {
            if event.phase == Phase::Done && event.kind != Kind::Local {
                i.finished += 1;
            }
            if event.is_error() {
                let now = i.clock.elapsed().as_secs();
                match i.errors.back_mut() {
                    Some((sec, n)) if *sec == now => *n += 1,
                    _ => i.errors.push_back((now, 1)),
                }
            }
            if i.backlog.len() == BACKLOG {
                i.backlog.pop_front();
            }
            i.backlog.push_back(event.clone());
            if i.watching {
                i.events += 1;
                if i.pending.len() < MAX_PER_BATCH {
                    i.pending.push(event.clone());
                } else {
                    i.dropped += 1;
                }
            }
        });
    }

    /// The engine's buffer overflowed before this feed read it: those
    /// events are gone for the display too.
    pub fn lagged(&self, missed: u64) {
        self.with(|i| {
            if i.watching {
                i.events += missed;
                i.dropped += missed;
            }
        });
    }

    /// A window starts listening: it gets the backlog first, and counts
    /// start from zero.
    pub fn watch(&self) {
        self.with(|i| {
            i.watching = true;
            i.dropped = 0;
            i.events = i.backlog.len() as u64;
            i.pending = i.backlog.iter().cloned().collect();
        });
    }

    /// The window closed: stop buffering for it.
    pub fn unwatch(&self) {
        self.with(|i| {
            i.watching = false;
            i.pending = Vec::new();
        });
    }

    pub fn is_watching(&self) -> bool {
        self.with(|i| i.watching)
    }

    /// The batch for this tick: the rows since the last one, and the
    /// counters now. `stats` are the engine's, when a bridge runs.
    pub fn take_batch(&self, stats: Option<&StatsSnapshot>) -> LogBatch {
        self.with(|i| {
            let now = Instant::now();
            i.rate_samples.push_back((now, i.finished));
            while i
                .rate_samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
            {
                i.rate_samples.pop_front();
            }
            let requests_per_second = match (i.rate_samples.front(), i.rate_samples.back()) {
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    (n1 - n0) as f64 / t1.duration_since(*t0).as_secs_f64()
                }
                _ => 0.0,
            };
            let this_second = i.clock.elapsed().as_secs();
            while i
                .errors
                .front()
                .is_some_and(|(sec, _)| sec + ERROR_WINDOW_SECS <= this_second)
            {
                i.errors.pop_front();
            }
            LogBatch {
                events: std::mem::take(&mut i.pending),
                dropped: i.dropped,
                counters: Counters {
                    requests_per_second,
                    open_tunnels: stats.map(|s| s.tunnels_open).unwrap_or(0),
                    errors_last_minute: i.errors.iter().map(|(_, n)| n).sum(),
                    handshakes: stats.map(|s| s.handshakes).unwrap_or(0),
                    events: i.events,
                    bridging: stats.is_some(),
                },
                names: HashMap::new(),
            }
        })
    }
}

/// Whether a batch tells the window anything new. An idle bridge sends
/// the window nothing: each delivery makes the webview restyle and
/// repaint, and with a software compositor (a machine without a GPU, as
/// in many remote desktops) four empty batches a second cost the window's
/// web process about a fifth of a core.
#[derive(Debug, Default)]
pub struct NewsFilter {
    last: Option<(u64, Counters)>,
}

impl NewsFilter {
    /// True for the first batch, and for any with rows, newly dropped rows
    /// or a changed counter; remembers what was sent.
    pub fn is_news(&mut self, batch: &LogBatch) -> bool {
        let now = (batch.dropped, batch.counters.clone());
        if batch.events.is_empty() && self.last.as_ref() == Some(&now) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangway_engine::events::EventSink;
    use gangway_engine::stats::Stats;

    /// Real events from the engine's own recorder, not hand-built ones.
    fn events(n: usize, error_every: usize) -> Vec<Arc<ConnectionEvent>> {
        let sink = EventSink::new(Arc::new(Stats::default()));
        let mut rx = sink.subscribe();
        for k in 0..n {
            let mut r = sink.start(
                Kind::Request,
                "127.0.0.1:5000".parse().expect("addr"),
                "GET",
                format!("http://example.test/{k}"),
            );
            if error_every > 0 && k % error_every == 0 {
                r.set_status(502);
                r.set_error("cannot reach the upstream");
            } else {
                r.set_status(200);
            }
            r.finish();
        }
        (0..n).filter_map(|_| rx.try_recv().ok()).collect()
    }

    #[test]
    fn nothing_is_buffered_without_a_window_but_the_backlog() {
        let log = ConnectionLog::default();
        for e in events(BACKLOG + 20, 0) {
            log.record(&e);
        }
        // A window that opens now gets the last BACKLOG events.
        log.watch();
        let batch = log.take_batch(None);
        assert_eq!(batch.events.len(), BACKLOG);
        assert_eq!(batch.events.first().map(|e| e.id), Some(21));
        assert_eq!(batch.dropped, 0);
        assert!(!batch.counters.bridging);
        // Then only what is new.
        assert!(log.take_batch(None).events.is_empty());
    }

    #[test]
    fn a_window_that_falls_behind_loses_rows_and_is_told_how_many() {
        let log = ConnectionLog::default();
        log.watch();
        let all = events(MAX_PER_BATCH + 250, 0);
        for e in &all {
            log.record(e);
        }
        log.lagged(7);
        let batch = log.take_batch(None);
        assert_eq!(batch.events.len(), MAX_PER_BATCH);
        assert_eq!(batch.dropped, 257);
        assert_eq!(batch.counters.events, (MAX_PER_BATCH + 257) as u64);
        // The next tick starts with room again; dropped stays a total.
        log.record(&all[0]);
        let next = log.take_batch(None);
        assert_eq!(next.events.len(), 1);
        assert_eq!(next.dropped, 257);
    }

    #[test]
    fn errors_are_counted_even_when_rows_are_dropped() {
        let log = ConnectionLog::default();
        log.watch();
        // More than a batch holds (and within the engine's event channel).
        let all = events(MAX_PER_BATCH + 1_000, 10);
        assert_eq!(all.len(), MAX_PER_BATCH + 1_000);
        for e in &all {
            log.record(e);
        }
        let batch = log.take_batch(None);
        assert!(batch.dropped > 0);
        assert_eq!(
            batch.counters.errors_last_minute,
            ((MAX_PER_BATCH + 1_000) / 10) as u64
        );
    }

    #[test]
    fn closing_the_window_stops_buffering() {
        let log = ConnectionLog::default();
        log.watch();
        log.unwatch();
        for e in events(10, 0) {
            log.record(&e);
        }
        assert!(!log.is_watching());
        assert!(log.take_batch(None).events.is_empty());
    }

    #[test]
    fn rate_is_measured_between_ticks() {
        let log = ConnectionLog::default();
        log.watch();
        let _first = log.take_batch(None);
        std::thread::sleep(Duration::from_millis(50));
        for e in events(100, 0) {
            log.record(&e);
        }
        let rate = log.take_batch(None).counters.requests_per_second;
        // 100 requests in about 50 ms: far more than zero, at most 100 / 0.05.
        assert!(rate > 100.0 && rate <= 2_000.0 + 1.0, "rate {rate}");
    }

    #[test]
    fn an_idle_log_sends_nothing_new() {
        let log = ConnectionLog::default();
        log.watch();
        let mut news = NewsFilter::default();
        // The first batch always goes: the window needs its counters.
        assert!(news.is_news(&log.take_batch(None)));
        assert!(!news.is_news(&log.take_batch(None)));
        assert!(!news.is_news(&log.take_batch(None)));
        // A row is news, and so is the rate falling back to zero after it.
        for e in events(1, 0) {
            log.record(&e);
        }
        assert!(news.is_news(&log.take_batch(None)));
        let mut settled = false;
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            let batch = log.take_batch(None);
            news.is_news(&batch);
            if batch.counters.requests_per_second == 0.0 {
                settled = true;
                break;
            }
        }
        assert!(settled, "the rate never fell back to zero");
        assert!(!news.is_news(&log.take_batch(None)));
        // Dropped rows are news even without rows.
        log.lagged(3);
        let batch = log.take_batch(None);
        assert!(batch.events.is_empty());
        assert!(news.is_news(&batch));
    }
}
