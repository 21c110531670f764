//! The request body as sent to a target: the client's body, with the body limit enforced
//! and rx bytes counted. It is only read once a target connection took the request, so a
//! request that fails before (a failed connect, a pooled connection found closed) is
//! retried with its body untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus::IntCounter;

/// A boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body as sent to a target.
#[derive(Debug)]
pub struct ReqBody {
    inner: Incoming,
    left: u64,
    rx: Option<IntCounter>,
}

impl ReqBody {
    /// Wraps `inner`; more than `limit` bytes fail the request with [`TooLarge`].
    pub fn new(inner: Incoming, limit: u64) -> Self {
        Self {
            inner,
            left: limit,
            rx: None,
        }
    }

    /// Counts what is read into `rx` (the chosen target's counter). Nothing to count on a
    /// body that is already at its end.
    pub fn count_into(&mut self, rx: &IntCounter) {
        if !self.inner.is_end_stream() {
            self.rx = Some(rx.clone());
        }
    }
}

/// The body went over the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than the limit")]
pub struct TooLarge;

/// Whether `e` (or what caused it) is [`TooLarge`].
pub fn is_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<TooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.left {
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    this.left -= n;
                    if let Some(rx) = &this.rx {
                        rx.inc_by(n);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_is_found_through_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrap(#[source] BoxError);
        let e = Wrap(Box::new(TooLarge));
        assert!(is_too_large(&e));
        assert!(!is_too_large(&Wrap("other".into())));
    }
}
