//! Body types and the metering wrapper that counts bytes as they stream,
//! hands a finished upstream connection back to its pool, and closes the
//! connection event. Nothing here buffers a whole body.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

use crate::events::Recorder;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the engine sends, to a client or upstream.
pub type ResBody = UnsyncBoxBody<Bytes, BoxError>;
pub type ReqBody = ResBody;

pub fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ResBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Called once when a metered body ends: `true` when it was read to the end.
pub type OnEnd = Box<dyn FnOnce(bool) + Send>;

/// Wraps a body: counts its bytes into `counter`; when it ends (or is
/// dropped early) runs `on_end` and then lets the recorder emit its event.
pub struct Metered<B: Body> {
    inner: B,
    counter: Arc<AtomicU64>,
    on_end: Option<OnEnd>,
    recorder: Option<Recorder>,
    done: bool,
}

impl<B: Body> Metered<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Metered {
            inner,
            counter,
            on_end: None,
            recorder: None,
            done: false,
        }
    }

    pub fn on_end(mut self, f: OnEnd) -> Self {
        self.on_end = Some(f);
        self
    }

    pub fn recorder(mut self, rec: Recorder) -> Self {
        self.recorder = Some(rec);
        self
    }

    fn end(&mut self, complete: bool, error: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(f) = self.on_end.take() {
            f(complete);
        }
        if let Some(mut rec) = self.recorder.take() {
            if let Some(e) = error {
                rec.set_error(e);
            } else if !complete {
                rec.set_error("the client closed the connection before the response was complete");
            }
            rec.finish();
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.fetch_add(data.len() as u64, Relaxed);
                }
                if this.inner.is_end_stream() {
                    this.end(true, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(false, Some(format!("body transfer failed: {e}")));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.end(true, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for Metered<B> {
    fn drop(&mut self) {
        // A body that was empty from the start may never be polled: it
        // still counts as complete.
        let complete = self.inner.is_end_stream();
        self.end(complete, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn counts_bytes_and_reports_completion() {
        let counter = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let body = Metered::new(Full::new(Bytes::from_static(b"hello")), counter.clone()).on_end(
            Box::new(move |complete| {
                if let Ok(mut s) = seen2.lock() {
                    *s = Some(complete);
                }
            }),
        );
        let collected = body.collect().await.expect("collect").to_bytes();
        assert_eq!(&collected[..], b"hello");
        assert_eq!(counter.load(Relaxed), 5);
        assert_eq!(*seen.lock().expect("lock"), Some(true));
    }

    #[tokio::test]
    async fn early_drop_reports_incomplete() {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let body = Metered::new(Full::new(Bytes::from_static(b"x")), Arc::default()).on_end(
            Box::new(move |complete| {
                if let Ok(mut s) = seen2.lock() {
                    *s = Some(complete);
                }
            }),
        );
        drop(body);
        assert_eq!(*seen.lock().expect("lock"), Some(false));
    }
}
