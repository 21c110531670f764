//! The `tcp` data path: each connection picks a target and stays on it.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::route::RouteShared;
use crate::runtime::Runtime;
use crate::upgrade::relay;

/// Relays one client connection. A failed connect is retried once on the route's current
/// pick; if that fails too, the client connection is closed.
pub async fn serve(rt: Arc<Runtime>, route: Arc<RouteShared>, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let mut failed = None;
    for _ in 0..2 {
        let Some(target) = route.pick_avoiding(failed.as_ref()) else {
            break;
        };
        // Counted before the connect, so that a drain never misses it; re-checked after
        // the count, in case a switch came in between.
        let guard = target.begin_connection();
        if !route.is_live(&target) {
            drop(guard);
            continue;
        }
        let connect = tokio::time::timeout(
            route.limits.connect_timeout,
            TcpStream::connect(target.target.addr),
        )
        .await;
        match connect {
            Ok(Ok(up)) => {
                let _ = up.set_nodelay(true);
                relay(guard, client, up).await;
                return;
            }
            _ => {
                tracing::debug!(target = %target.target.name, "tcp connect failed");
                failed = Some(target);
            }
        }
    }
    rt.error(&route, failed.as_ref());
}
