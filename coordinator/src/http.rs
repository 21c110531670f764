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
    current: Mutex<Clients>,
}

/// The clients built from one certificate.
#[derive(Debug)]
struct Clients {
    not_after: SystemTime,
    peers: reqwest::Client,
    agents: reqwest::Client,
}

/// Connecting to a peer coordinator (connect plus TLS): a dead peer must be noticed
/// within an election timeout, not a TCP retry cycle.
const PEER_CONNECT: Duration = Duration::from_millis(500);

/// Connecting to an agent. An agent is not timed against an election: a busy host that
/// answers in a second is reachable, and calling it unreachable fails a deployment. Each
/// call's own timeout still bounds the whole exchange.
const AGENT_CONNECT: Duration = Duration::from_secs(5);

fn build_client(material: &TlsMaterial, connect: Duration) -> Result<reqwest::Client, TlsError> {
    Ok(material
        .https_client(&SERVER_ROLES)?
        .connect_timeout(connect)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .no_proxy()
        .build()?)
}

impl Clients {
    fn build(material: &TlsMaterial) -> Result<Self, TlsError> {
        Ok(Self {
            not_after: material.not_after(),
            peers: build_client(material, PEER_CONNECT)?,
            agents: build_client(material, AGENT_CONNECT)?,
        })
    }
}

impl Transport {
    /// A transport presenting `material`'s certificate, following `server`'s reloads of
    /// `files` when given.
    pub fn new(
        material: &TlsMaterial,
        server: Option<ServerTls>,
        files: Option<TlsFiles>,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            inner: Arc::new(Inner {
                server,
                files,
                current: Mutex::new(Clients::build(material)?),
            }),
        })
    }

    /// The client for peer coordinators (Raft, forwarded writes), rebuilt from the files
    /// first if the certificate was rotated.
    pub fn client(&self) -> reqwest::Client {
        self.with_current(|c| c.peers.clone())
    }

    /// The client for agents (same identity, a connect timeout for busy hosts).
    pub fn agent_client(&self) -> reqwest::Client {
        self.with_current(|c| c.agents.clone())
    }

    fn with_current<T>(&self, f: impl FnOnce(&Clients) -> T) -> T {
        let mut current = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(server), Some(files)) = (&self.inner.server, &self.inner.files) {
            let seen = server.not_after();
            if seen != current.not_after {
                match files.read().and_then(|m| Clients::build(&m)) {
                    Ok(c) => {
                        tracing::info!("outgoing TLS clients rebuilt with the rotated certificate");
                        *current = Clients {
                            not_after: seen,
                            ..c
                        };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot rebuild the outgoing TLS clients; keeping the old ones");
                        current.not_after = seen;
                    }
                }
            }
        }
        f(&current)
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
