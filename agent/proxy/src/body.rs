//! The response body the HTTP path relays to clients: [`RespBody`] counts tx bytes, holds
//! the request's in-flight guard until the last byte, and stops at the target's drain
//! deadline (the request side is [`crate::reqbody`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus::IntCounter;

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
    tx: IntCounter,
    guard: Option<RequestGuard>,
    cut: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    on_end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for Relayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relayed").finish_non_exhaustive()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
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

    /// Relays `inner`; `guard` is dropped (the request ends) with the last byte or the cut,
    /// and `on_end` runs then. The body is cut at the target's drain deadline; one that only
    /// starts after that deadline (a slow answer to a request in flight at the switch) gets
    /// `drain_timeout` of its own.
    pub fn relayed(
        inner: Incoming,
        guard: RequestGuard,
        drain_timeout: std::time::Duration,
        on_end: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        let t = guard.target.clone();
        let cut: Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if t.cut.is_cancelled() {
            Box::pin(tokio::time::sleep(drain_timeout))
        } else {
            Box::pin(t.cut.clone().cancelled_owned())
        };
        Self::Relayed(Relayed {
            inner,
            tx: t.metrics.tx.clone(),
            cut,
            guard: Some(guard),
            on_end: Some(on_end),
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
        match &mut *self {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Relayed(r) => {
                if r.guard.is_some() && std::future::Future::poll(r.cut.as_mut(), cx).is_ready() {
                    r.guard = None;
                    return Poll::Ready(Some(Err("target drained".into())));
                }
                match Pin::new(&mut r.inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            r.tx.inc_by(d.len() as u64);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        r.guard = None;
                        Poll::Ready(Some(Err(Box::new(e))))
                    }
                    Poll::Ready(None) => {
                        r.guard = None;
                        if let Some(f) = r.on_end.take() {
                            f();
                        }
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
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
