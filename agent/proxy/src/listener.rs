//! A route's accept loop. Stopping it never loses a connection: a connection is taken from
//! the kernel only inside a completed `accept`, so one the loop did not take stays in the
//! socket's backlog for whoever else holds the socket (a successor after a handoff).

use std::sync::Arc;

use sluice_common::proxy::ProxyMode;
use tokio::net::{TcpListener, TcpStream};

use crate::route::RouteShared;
use crate::runtime::Runtime;

/// Accepts until `route.stop` is cancelled; each connection is served on a data thread
/// ([`crate::workers`]).
pub fn spawn(rt: Arc<Runtime>, route: Arc<RouteShared>, listener: TcpListener) {
    let stop = route.stop.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
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
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, service = %route.service, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}
