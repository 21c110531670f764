//! The `http` data path: one hyper-util auto connection (HTTP/1.1 or HTTP/2 cleartext) per
//! client; each request picks the route's current target when it arrives ([`forward`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::clock;
use crate::conn::ClientConn;
use crate::forward::forward;
use crate::route::RouteShared;
use crate::runtime::Runtime;

pub use crate::headers::{add_forwarded, problem, strip_hop_by_hop, wants_upgrade};

/// How long an idle HTTP/1.1 connection stays open once its route or the process drains.
/// Closing an idle keep-alive connection always races a client that sends on it at that
/// instant; a client that keeps sending gets `Connection: close` on its next answer instead
/// and never sees that race. One that stays idle this long is closed.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// How often a client connection looks at its idle time and at the drain (faster once
/// draining). The drain is not waited on per connection: a wait on a shared token would be
/// polled, under its lock, on every wake-up of every connection.
const TICK: Duration = Duration::from_millis(250);
const DRAIN_TICK: Duration = Duration::from_millis(100);

/// Serves one client connection until it closes, is idle too long, or the process drains.
/// A draining HTTP/1.1 connection answers `Connection: close` from the drain's first
/// instant; the tick closes it once idle for `DRAIN_IDLE_GRACE` (1 s) and sends HTTP/2's
/// GOAWAY.
pub async fn serve(rt: Arc<Runtime>, route: Arc<RouteShared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let limits = route.limits;
    let client = ClientConn::new(rt, route, peer);
    let svc_client = client.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let c = svc_client.clone();
        async move {
            let h1 = req.version() != Version::HTTP_2;
            if !h1 {
                c.set_h2();
            }
            let mut resp = forward(&c, req).await;
            if h1 && c.draining() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(TICK);
    let (mut draining, mut shut) = (false, false);
    let idle_limit = |draining: bool| {
        let d = if draining {
            DRAIN_IDLE_GRACE
        } else {
            limits.idle_timeout
        };
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    };
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "client connection ended with an error");
                }
                return;
            }
            _ = tick.tick(), if !shut => {
                if !draining && client.draining() {
                    draining = true;
                    tick = tokio::time::interval(DRAIN_TICK);
                    // HTTP/2 says goodbye without a race (GOAWAY names the last stream
                    // served).
                    if client.is_h2() {
                        shut = true;
                        conn.as_mut().graceful_shutdown();
                        continue;
                    }
                }
                if client
                    .idle_ms(clock::now_millis())
                    .is_some_and(|idle| idle >= idle_limit(draining))
                {
                    shut = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
