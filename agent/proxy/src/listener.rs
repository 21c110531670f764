//! A route's accept loop. Stopping it never loses a connection: a connection is taken from
//! the kernel only inside a completed `accept`, so one the loop did not take stays in the
//! socket's backlog for whoever else holds the socket (a successor after a handoff).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::proxy::ProxyMode;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::route::RouteShared;
use crate::runtime::Runtime;

/// Accepts until `route.stop` is cancelled.
pub fn spawn(rt: Arc<Runtime>, route: Arc<RouteShared>, listener: TcpListener) {
    let stop = route.stop.clone();
    tokio::spawn(async move {
        let failed =
            |e: &io::Error| tracing::warn!(error = %e, service = %route.service, "accept failed");
        while let Some((stream, peer)) = accept_until(&stop, || listener.accept(), &failed).await {
            // Handed to a data thread: registered with its driver there.
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, service = %route.service, "cannot hand over a connection");
                    continue;
                }
            };
            let rt2 = rt.clone();
            let route = route.clone();
            rt.workers.spawn(rt.tracker.track_future(async move {
                let stream = match TcpStream::from_std(stream) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot serve a connection");
                        return;
                    }
                };
                match route.mode {
                    ProxyMode::Http => crate::http::serve(rt2, route, stream, peer).await,
                    ProxyMode::Tcp => crate::tcp::serve(rt2, route, stream).await,
                }
            }));
        }
    });
}

/// The next connection `accept` takes, or `None` once `stop` is cancelled. The stop is
/// checked first, and a connection leaves the kernel only inside a completed accept, so
/// whatever a stopped loop did not take stays in the backlog. A failed accept (EMFILE and
/// friends) goes to `failed`, then waits a little instead of spinning. Every accept loop
/// (routes, the control socket) runs on this.
pub async fn accept_until<T, F>(
    stop: &CancellationToken,
    accept: impl Fn() -> F,
    failed: impl Fn(&io::Error),
) -> Option<T>
where
    F: Future<Output = io::Result<T>>,
{
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            a = accept() => a,
        };
        match accepted {
            Ok(a) => return Some(a),
            Err(e) => {
                failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
