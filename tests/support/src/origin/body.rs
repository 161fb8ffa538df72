//! Response bodies that are produced as they are sent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::stream::fill_pattern;

/// Size of one frame of a [`PatternBody`].
const PATTERN_FRAME: u64 = 64 * 1024;

/// `len` pattern bytes, generated one 64 KiB frame at a time as hyper asks
/// for them, so a large download is never held in memory whole.
///
/// The exact size hint makes hyper send `Content-Length`.
pub struct PatternBody {
    offset: u64,
    len: u64,
}

impl PatternBody {
    /// A body of the first `len` pattern bytes.
    pub fn new(len: u64) -> Self {
        PatternBody { offset: 0, len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.offset >= this.len {
            return Poll::Ready(None);
        }
        let end = this.len.min(this.offset + PATTERN_FRAME);
        let mut chunk = vec![0u8; (end - this.offset) as usize];
        fill_pattern(this.offset, &mut chunk);
        this.offset = end;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

/// A body of separate frames with no declared length: hyper sends it with
/// `Transfer-Encoding: chunked` to HTTP/1.1 clients (and close-delimited to
/// HTTP/1.0 ones).
pub struct FramesBody {
    frames: VecDeque<Bytes>,
}

impl FramesBody {
    /// A body that yields `frames` one by one.
    pub fn new(frames: impl IntoIterator<Item = Bytes>) -> Self {
        FramesBody {
            frames: frames.into_iter().collect(),
        }
    }
}

impl Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .frames
                .pop_front()
                .map(|b| Ok(Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
    // The default size hint (unknown) is the point: it forces chunking.
}
