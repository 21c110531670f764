//! The mTLS accept loop: TLS handshake with a deadline, HTTP/1.1 or h2 by ALPN, the peer's
//! [`PeerIdentity`] in every request's extensions, header-read timeouts against slowloris,
//! and a graceful drain on shutdown.
//!
//! Handlers read the identity with `Option<axum::Extension<PeerIdentity>>` (absent when an
//! anonymous client was allowed in) and check the role themselves; a client certificate
//! that verifies against the project CA but carries no identity closes the connection.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::files::ServerTls;
use super::identity::PeerIdentity;
use super::unread::{discard, RequestBody};

/// Timeouts of the accept loop.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A TLS handshake not done by then is dropped.
    pub handshake_timeout: Duration,
    /// A request whose headers have not fully arrived by then closes the connection
    /// (HTTP/1.1; this also bounds how long an idle keep-alive connection is kept).
    pub header_read_timeout: Duration,
    /// h2 pings idle connections this often and closes them when a ping goes unanswered
    /// for as long.
    pub h2_keep_alive: Duration,
    /// After shutdown, in-flight connections get this long to finish before being cut.
    pub drain_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            h2_keep_alive: Duration::from_secs(20),
            drain_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `service` over TLS on `listener` with [`ServeOptions::default`] until `shutdown`
/// is cancelled, then drains. `axum::Router` fits `service` as is.
pub async fn serve_tls<S, B>(
    listener: TcpListener,
    service: S,
    tls: ServerTls,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_tls_with(listener, service, tls, ServeOptions::default(), shutdown).await
}

/// [`serve_tls`] with explicit timeouts.
pub async fn serve_tls_with<S, B>(
    listener: TcpListener,
    service: S,
    tls: ServerTls,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.h2_keep_alive)
        .keep_alive_timeout(options.h2_keep_alive);

    let mut connections = JoinSet::new();
    loop {
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current());
        let service = service.clone();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        let handshake_timeout = options.handshake_timeout;
        connections.spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = match stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                None => None,
                Some(der) => match PeerIdentity::from_der(der) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "client certificate has no identity");
                        return;
                    }
                },
            };
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                if let Some(peer) = &peer {
                    req.extensions_mut().insert(peer.clone());
                }
                let (parts, body) = req.into_parts();
                let (body, leftover) = RequestBody::new(body);
                let answer = service.clone().oneshot(Request::from_parts(parts, body));
                async move {
                    let resp = answer.await;
                    // Refused before its body was read: read the rest after answering.
                    let rest = leftover.lock().ok().and_then(|mut l| l.take());
                    if let Some(rest) = rest {
                        tokio::spawn(discard(rest));
                    }
                    resp
                }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drain(connections, options.drain_grace).await;
    Ok(())
}

async fn drain(mut connections: JoinSet<()>, grace: Duration) {
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(
            cut = connections.len(),
            "connections still open after the drain grace period; closing them"
        );
        connections.shutdown().await;
    }
}

/// Keeps `tls` in step with its files: reloads on SIGHUP and whenever a file's size or
/// modification time changes (checked every `every`). A failed reload is logged and the
/// old certificate stays in use. Ends when `shutdown` is cancelled.
pub fn spawn_reloader(
    tls: ServerTls,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(reload_loop(tls, every, shutdown))
}

async fn reload_loop(tls: ServerTls, every: Duration, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            () = shutdown.cancelled() => return,
            () = hangup => true,
            _ = tick.tick() => false,
        };
        let result = if forced {
            tls.reload().map(|()| true)
        } else {
            tls.reload_if_changed()
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "TLS reload failed; keeping the current certificate");
        }
    }
}
