//! The one place that knows how coordinators talk on the wire: mutual TLS both ways.
//!
//! Incoming: one listener for the CI API, the agent-facing endpoints and Raft, served by
//! `sluice_common::tls::serve_tls` with client certificates *optional* (CI clients are
//! anonymous and carry a bearer token; coordinators and agents present certificates), and
//! the route guards in `api::auth` decide who may call what. Outgoing (Raft RPC, forwarded
//! writes, agent calls): HTTPS presenting this node's coordinator certificate, trusting
//! only the project CA, and only servers whose certificate names a coordinator or an agent.
//!
//! Both sides follow certificate rotation without a restart: the server configuration is
//! swapped by the reloader (SIGHUP or a changed file), and [`Transport::client`] rebuilds
//! its client when it sees the reloaded certificate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use sluice_common::tls::{self, Role, ServerTls, TlsError, TlsFiles, TlsMaterial};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the TLS files are checked for changes (SIGHUP reloads at once).
pub const TLS_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The roles an outgoing call may reach: peers (Raft, forwarding) and agents.
const SERVER_ROLES: [Role; 2] = [Role::Coordinator, Role::Agent];

/// An HTTPS client presenting this node's identity. Cheap to clone (one shared pool).
#[derive(Debug, Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The listener's live configuration; its `not_after` changing means a reload happened.
    server: Option<ServerTls>,
    files: Option<TlsFiles>,
    current: Mutex<(SystemTime, reqwest::Client)>,
}

fn build_client(material: &TlsMaterial) -> Result<reqwest::Client, TlsError> {
    // Short connect timeouts: a dead peer must be noticed within an election timeout,
    // not a TCP retry cycle.
    Ok(material
        .https_client(&SERVER_ROLES)?
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .no_proxy()
        .build()?)
}

impl Transport {
    /// A transport presenting `material`'s certificate, following `server`'s reloads of
    /// `files` when given.
    pub fn new(
        material: &TlsMaterial,
        server: Option<ServerTls>,
        files: Option<TlsFiles>,
    ) -> Result<Self, TlsError> {
        let client = build_client(material)?;
        Ok(Self {
            inner: Arc::new(Inner {
                server,
                files,
                current: Mutex::new((material.not_after(), client)),
            }),
        })
    }

    /// The client (rebuilt from the files first if the certificate was rotated).
    pub fn client(&self) -> reqwest::Client {
        let mut current = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(server), Some(files)) = (&self.inner.server, &self.inner.files) {
            let seen = server.not_after();
            if seen != current.0 {
                match files.read().and_then(|m| build_client(&m)) {
                    Ok(c) => {
                        tracing::info!("outgoing TLS client rebuilt with the rotated certificate");
                        *current = (seen, c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot rebuild the outgoing TLS client; keeping the old one");
                        current.0 = seen;
                    }
                }
            }
        }
        current.1.clone()
    }

    /// `https://addr/path`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("https://{addr}{path}")
    }
}

/// Reads the TLS files, refusing a certificate that does not name a coordinator.
pub fn load(files: &TlsFiles) -> Result<(TlsMaterial, ServerTls), TlsError> {
    let material = files.read()?;
    material
        .identity()
        .require_role(&[Role::Coordinator])
        .map_err(TlsError::Identity)?;
    let server = ServerTls::from_files(files.clone(), tls::ClientAuth::Optional)?;
    Ok((material, server))
}

/// Serves `router` over mutual TLS on `listener` until `shutdown` is cancelled, then drains;
/// the files behind `tls` are watched for rotation meanwhile.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: ServerTls,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let reloader = tls::spawn_reloader(tls.clone(), TLS_RELOAD_EVERY, shutdown.clone());
    let served = tls::serve_tls(listener, router, tls, shutdown).await;
    let _ = reloader.await;
    served
}
