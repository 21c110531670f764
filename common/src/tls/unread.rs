//! Request bodies a handler left unread are read to their end before the stream is let go.
//!
//! A handler that refuses a request early (401, 403, 415, or 413 at the body limit) drops
//! the body unread. Over HTTP/2, dropping the receiving half of a stream that is still open
//! makes h2 reset it (`RST_STREAM(CANCEL)`), and clients such as curl then report a stream
//! error instead of the problem+json answer they were sent. So every request body is
//! wrapped in [`RequestBody`]: when it is dropped before its end, the rest is handed back,
//! and [`discard`] reads it (bounded in bytes and time) after the answer has been sent, so
//! the stream ends normally from the client's side.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};

/// At most this much of an unread body is read and thrown away; past it the stream is reset
/// after all (a client sending that much to a refusal is not waited for).
pub const DISCARD_LIMIT: usize = 16 * 1024 * 1024;
/// And for at most this long.
pub const DISCARD_TIME: Duration = Duration::from_secs(30);

/// Where the unread rest of a dropped body lands.
pub type Leftover = Arc<Mutex<Option<Incoming>>>;

/// A request body that hands back its unread rest when dropped early.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    leftover: Leftover,
}

impl RequestBody {
    /// Wraps `body`; the returned slot holds its rest if it is dropped before its end.
    pub fn new(body: Incoming) -> (Self, Leftover) {
        let leftover = Leftover::default();
        (
            Self {
                inner: Some(body),
                leftover: leftover.clone(),
            },
            leftover,
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(b) = self.inner.take().filter(|b| !b.is_end_stream()) {
            if let Ok(mut slot) = self.leftover.lock() {
                *slot = Some(b);
            }
        }
    }
}

/// Reads `body` to its end and drops what it reads, up to [`DISCARD_LIMIT`] bytes and
/// [`DISCARD_TIME`]; returns how many bytes it read.
pub async fn discard(mut body: Incoming) -> usize {
    let mut read = 0;
    let all = async {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            match frame {
                Ok(f) => {
                    read += f.data_ref().map_or(0, Bytes::len);
                    if read > DISCARD_LIMIT {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, all).await;
    read
}
