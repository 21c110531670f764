//! The request body as sent to a target. It takes the client's body out of a shared slot
//! only when the target connection first polls it: if the connect fails before that, the
//! body is still in the slot and the request can be retried on another target. It also
//! enforces the body limit and counts rx bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus::IntCounter;

/// A boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The slot a request body waits in until the target connection reads it.
pub type BodySlot = Arc<Mutex<Option<Incoming>>>;

/// The request body as sent to a target.
#[derive(Debug)]
pub struct ReqBody {
    slot: BodySlot,
    inner: Option<Incoming>,
    hint: SizeHint,
    end: bool,
    left: u64,
    too_large: Arc<AtomicBool>,
    rx: IntCounter,
}

impl ReqBody {
    /// Wraps the body waiting in `slot`, whose size hint and end-of-stream flag were `hint`
    /// and `end`; more than `limit` bytes fail the request and set `too_large`.
    pub fn new(
        slot: BodySlot,
        hint: SizeHint,
        end: bool,
        limit: u64,
        too_large: Arc<AtomicBool>,
        rx: IntCounter,
    ) -> Self {
        Self {
            slot,
            inner: None,
            hint,
            end,
            left: limit,
            too_large,
            rx,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit")]
struct TooLarge;

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            this.inner = this.slot.lock().expect("body slot").take();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.left {
                        this.too_large.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    this.left -= n;
                    this.rx.inc_by(n);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(i) => i.is_end_stream(),
            None => self.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(i) => i.size_hint(),
            None => self.hint,
        }
    }
}
