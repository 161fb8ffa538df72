//! The body of one request leg, instrumented for two jobs:
//!
//! - **Upload clock.** The response timeout runs from the end of the
//!   upload (or from its last progress while it stalls), so a large upload
//!   over a slow link is not cut off by `read_timeout`.
//! - **Expect gate.** A streamed body that may have to be sent again (a
//!   Digest nonce can turn stale at any request) is held back behind
//!   `Expect: 100-continue` (RFC 9110 §10.1.1) until the peer says `100
//!   Continue`, or stays silent for [`EXPECT_WAIT`]. A 407 that arrives
//!   first leaves the body unsent, so it can go out on the next leg.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{BoxError, ReqBody};

/// How long a gated body waits for `100 Continue` before it is sent anyway
/// (peers that ignore `Expect` never send one; curl waits 1 s as well).
pub const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// When the upload of a leg's body last made progress, or finished.
#[derive(Debug)]
pub struct UploadClock {
    started: Instant,
    last_ms: AtomicU64,
}

impl UploadClock {
    pub fn new() -> Arc<Self> {
        Arc::new(UploadClock {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn tick(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
    }

    /// Resolves once `limit` has passed since the upload's last progress
    /// (or its end) with no further progress.
    pub async fn expired(&self, limit: Duration) {
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Opens a gated body; shared by the body, the 1xx callback and the
/// connector.
#[derive(Debug, Default)]
pub struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// The body waiting behind the gate, until the gate opens or the
    /// connector takes it back.
    held: Mutex<Option<ReqBody>>,
}

impl Gate {
    pub fn new(body: ReqBody) -> Arc<Self> {
        Arc::new(Gate {
            open: AtomicBool::new(false),
            waker: Mutex::new(None),
            held: Mutex::new(Some(body)),
        })
    }

    pub fn open(&self) {
        self.open.store(true, Relaxed);
        if let Some(w) = self.waker.lock().ok().and_then(|mut w| w.take()) {
            w.wake();
        }
    }

    /// Takes the body back if it never went out.
    pub fn reclaim(&self) -> Option<ReqBody> {
        self.held.lock().ok().and_then(|mut h| h.take())
    }
}

impl std::fmt::Debug for LegBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegBody").finish_non_exhaustive()
    }
}

pub struct LegBody {
    inner: Option<ReqBody>,
    gate: Option<(Arc<Gate>, Pin<Box<Sleep>>)>,
    clock: Arc<UploadClock>,
    hint: SizeHint,
    end: bool,
}

impl LegBody {
    pub fn new(body: ReqBody, clock: Arc<UploadClock>) -> Self {
        let hint = body.size_hint();
        let end = body.is_end_stream();
        LegBody {
            inner: Some(body),
            gate: None,
            clock,
            hint,
            end,
        }
    }

    /// A body held behind `gate` (which owns it until opened).
    pub fn gated(gate: Arc<Gate>, hint: SizeHint, clock: Arc<UploadClock>) -> Self {
        LegBody {
            inner: None,
            gate: Some((gate, Box::pin(tokio::time::sleep(EXPECT_WAIT)))),
            clock,
            hint,
            end: false,
        }
    }
}

impl Body for LegBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some((gate, timer)) = this.gate.as_mut() {
            if !gate.open.load(Relaxed) {
                if let Ok(mut w) = gate.waker.lock() {
                    *w = Some(cx.waker().clone());
                }
                // Re-check after registering, so an open in between is seen.
                if !gate.open.load(Relaxed) && timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            this.inner = gate.reclaim();
            this.gate = None;
            this.clock.tick();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.clock.tick();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.clock.tick();
                this.end = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end || self.gate.is_none() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn gate_holds_the_body_until_opened_or_reclaimed() {
        let clock = UploadClock::new();
        let gate = Gate::new(crate::body::full("data"));
        let body = LegBody::gated(gate.clone(), SizeHint::with_exact(4), clock.clone());
        // A 407 arrived first: the body is still ours.
        assert!(gate.reclaim().is_some());
        drop(body);

        let gate = Gate::new(crate::body::full("data"));
        let body = LegBody::gated(gate.clone(), SizeHint::with_exact(4), clock);
        let reader = tokio::spawn(async move { body.collect().await.map(|c| c.to_bytes()) });
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        gate.open();
        let bytes = reader.await.expect("join").expect("body");
        assert_eq!(&bytes[..], b"data");
        assert!(gate.reclaim().is_none(), "the body went out");
    }

    #[tokio::test(start_paused = true)]
    async fn gate_opens_by_itself_after_the_wait() {
        let gate = Gate::new(crate::body::full("x"));
        let body = LegBody::gated(gate, SizeHint::with_exact(1), UploadClock::new());
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"x");
    }

    #[tokio::test(start_paused = true)]
    async fn clock_counts_from_the_last_progress() {
        let clock = UploadClock::new();
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.tick();
        let started = Instant::now();
        clock.expired(Duration::from_secs(2)).await;
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}
