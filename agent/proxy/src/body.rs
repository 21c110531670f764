//! The response body the HTTP path relays to clients: [`RespBody`] counts tx bytes, drives
//! the target connection the answer comes on (and gives it back to the pool after the last
//! byte), holds the request's in-flight guards until the last byte, and stops at the
//! target's drain deadline (the request side is [`crate::reqbody`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::conn::InFlight;
use crate::pool::Upstream;
use crate::reqbody::BoxError;
use crate::target::RequestGuard;

/// The response body as sent to the client.
#[derive(Debug)]
pub enum RespBody {
    /// A body the proxy made itself.
    Full(Option<Bytes>),
    /// A target's body, relayed.
    Relayed(Relayed),
}

/// A target's response body on its way to the client.
pub struct Relayed {
    inner: Incoming,
    guard: RequestGuard,
    /// The pooled connection the answer comes on (`None`: driven elsewhere, or gone).
    up: Option<Upstream>,
    inflight: Option<InFlight>,
    /// The body's own deadline, when the target was cut before the answer started.
    own_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The target's cut, waited on once the body has had to wait for the target (a body
    /// read in one go never registers anything).
    cut_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl std::fmt::Debug for Relayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relayed").finish_non_exhaustive()
    }
}

impl Relayed {
    /// The request ends: its guards go, and the target connection back to the pool if the
    /// answer was read to its end (closed otherwise).
    fn finish(&mut self, complete: bool) {
        if self.guard.is_done() {
            return;
        }
        let now = self.guard.end();
        if let Some(up) = self.up.take() {
            if complete {
                self.guard
                    .target
                    .pool
                    .give_back(up, crate::clock::millis(now));
            }
        }
        if let Some(i) = self.inflight.take() {
            i.end_at(now);
        }
    }

    fn cut(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish(false);
        Poll::Ready(Some(Err("target drained".into())))
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        // The server drops a body it knows is complete without reading its end.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

impl RespBody {
    /// A complete body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        Self::Full(Some(b.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// Relays `inner`, which arrives on `up` (if a pooled connection the body must drive);
    /// `guard` and `inflight` end with the last byte or the cut. The body is cut at the
    /// target's drain deadline; one that only starts after that deadline (a slow answer
    /// to a request in flight at the switch) gets `drain_timeout` of its own.
    pub fn relayed(
        inner: Incoming,
        guard: RequestGuard,
        up: Option<Upstream>,
        inflight: InFlight,
        drain_timeout: std::time::Duration,
    ) -> Self {
        let own_deadline = guard
            .target
            .is_cut()
            .then(|| Box::pin(tokio::time::sleep(drain_timeout)));
        Self::Relayed(Relayed {
            inner,
            guard,
            up,
            inflight: Some(inflight),
            own_deadline,
            cut_wait: None,
        })
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = match &mut *self {
            Self::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Relayed(r) => r,
        };
        if !r.guard.is_done() {
            let cut = match r.own_deadline.as_mut() {
                Some(d) => d.as_mut().poll(cx).is_ready(),
                None => r.guard.target.is_cut(),
            };
            if cut {
                return r.cut();
            }
        }
        if let Some(up) = r.up.as_mut() {
            // Reads what the target sent into `inner`.
            up.poll_conn(cx);
        }
        match Pin::new(&mut r.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    r.guard.target.metrics.tx.inc_by(d.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                r.finish(false);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                r.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !r.guard.is_done() && r.own_deadline.is_none() {
                    let target = &r.guard.target;
                    let wait = r
                        .cut_wait
                        .get_or_insert_with(|| Box::pin(target.cut.clone().cancelled_owned()));
                    if wait.as_mut().poll(cx).is_ready() {
                        return r.cut();
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Relayed(r) => r.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Relayed(r) => r.inner.size_hint(),
        }
    }
}
