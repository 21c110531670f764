//! The one place that knows how coordinators talk HTTP: the outgoing client used for Raft
//! RPC and request forwarding, and the accept loop for incoming connections.
//!
//! Plain HTTP today; mutual TLS (issue "Security") replaces [`Transport::new`] and [`serve`]
//! and nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An HTTP client with the scheme it speaks. Cheap to clone (one shared pool).
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    scheme: &'static str,
}

impl Transport {
    /// A plaintext transport with short connect timeouts: a dead peer must be noticed
    /// within an election timeout, not a TCP retry cycle.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("a client without TLS settings always builds");
        Self {
            client,
            scheme: "http",
        }
    }

    /// The client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `scheme://addr/path`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
