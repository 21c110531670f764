//! Upgraded HTTP/1.1 connections (WebSocket and the like) and TCP-mode connections: bytes
//! copied both ways, counted, on one target until its drain deadline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::runtime::Runtime;
use crate::target::{ConnectionGuard, TargetRt};

/// Wraps the client side of a relayed connection: reads count as rx, writes as tx.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    rx: IntCounter,
    tx: IntCounter,
}

impl<S> Counted<S> {
    /// Counts into the target's byte counters.
    pub fn new(inner: S, target: &TargetRt) -> Self {
        Self {
            inner,
            rx: target.metrics.rx.clone(),
            tx: target.metrics.tx.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.rx.inc_by(n as u64);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.tx.inc_by(n as u64);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies `client` <-> `upstream` until either closes or the target's drain deadline. The
/// caller took `guard` before it connected, so the drain never misses the connection.
pub async fn relay<A, B>(guard: ConnectionGuard, client: A, mut upstream: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let target = guard.0.clone();
    let mut client = Counted::new(client, &target);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, target = %target.target.name, "relayed connection ended");
            }
        }
        _ = target.cut.cancelled() => {
            tracing::debug!(target = %target.target.name, "drain deadline: closing a relayed connection");
        }
    }
    drop(guard);
}

/// Spawns the relay of an upgraded connection once both sides have upgraded.
pub fn spawn(rt: &Runtime, guard: ConnectionGuard, client: OnUpgrade, upstream: OnUpgrade) {
    rt.tracker.spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => relay(guard, TokioIo::new(c), TokioIo::new(u)).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
}
