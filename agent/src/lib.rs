//! # sluice-agent
//!
//! The agent owns one server's Docker daemon and port table. It replaces SSH: the only way
//! Sluice touches a server is through this small, strict API, fenced by lock tokens and
//! idempotent by operation id, and every operation survives an agent restart.
//!
//! # Layout
//! - [`config`]: the TOML configuration.
//! - [`store`]: the sled database (versioned values); [`fence`]: the highest token per lock;
//!   [`retention`]: old operation records forgotten.
//! - [`record`]: operation records (request, stage, view); [`ops`]: the operation table
//!   (admission, persistence, long-poll).
//! - [`runner`]: one runner per strategy (pure plan + executor), and service removal;
//!   [`health`]: health checks.
//! - [`runtime`]: the container runtime seam (a trait; an in-memory daemon);
//!   [`docker`]: its bollard implementation, reachability; [`engine`]: the one an agent
//!   holds (Docker, or in memory); [`events`]: Docker's event stream.
//! - [`sim`]: many simulated agents in one process (in-memory engines), for scale tests.
//! - [`ports`]: the host port table and bind probes; [`policy`]: the container policy.
//! - [`api`]: the HTTP API; [`register`]: registration and heartbeats to coordinators.
//!
//! [`build`] binds the listener and starts everything; [`Running::wait`] returns once a
//! shutdown (the token passed to `build`) has drained.

pub mod api;
pub mod config;
pub mod docker;
pub mod engine;
pub mod events;
pub mod fence;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod policy;
pub mod ports;
pub mod record;
pub mod register;
pub mod retention;
pub mod runner;
pub mod runtime;
pub mod seal;
pub mod sim;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::tls::{serve_tls, spawn_reloader, ClientAuth, Role, ServerTls};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AgentConfig;
use crate::docker::Docker;
use crate::engine::Engine;
use crate::ops::Operations;
use crate::store::{Store, StoreError};

/// The agent's version, reported to coordinators.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything the agent's tasks share.
#[derive(Debug)]
pub struct Agent {
    /// The configuration.
    pub config: AgentConfig,
    /// The container engine (the host's Docker daemon, or an in-memory one).
    pub engine: Engine,
    /// Operations and the fence.
    pub ops: Operations,
    /// The HTTP client for health probes.
    pub probe_client: reqwest::Client,
    /// The host's `sluice-proxy` (its control socket).
    pub proxy: sluice_proxy::control::Client,
    /// Flipped on shutdown.
    pub cancel: CancellationToken,
    /// Operation runners and background tasks, joined on shutdown.
    pub tasks: TaskTracker,
    /// The address coordinators should dial.
    pub advertise: String,
    /// Poked when a managed container changes state (the heartbeat goes out early).
    pub state_changed: tokio::sync::Notify,
    /// The API listener's TLS configuration (follows the files; the registration client
    /// rebuilds itself when this one reloads).
    pub tls: sluice_common::tls::ServerTls,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    /// The TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] sluice_common::tls::TlsError),
    /// The certificate does not name this agent.
    #[error("the certificate names {identity}, but this agent is agent {name}")]
    Identity {
        /// What the certificate says.
        identity: sluice_common::tls::PeerIdentity,
        /// The configured name.
        name: String,
    },
}

/// A started agent.
#[derive(Debug)]
pub struct Running {
    /// The bound API address.
    pub addr: SocketAddr,
    agent: Arc<Agent>,
    server: tokio::task::JoinHandle<()>,
}

/// How often the TLS files are checked for changes (SIGHUP reloads at once).
pub const TLS_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// How long shutdown waits for tasks to stop.
const GRACE: Duration = Duration::from_secs(10);

/// Opens the store, binds the API listener, resumes interrupted operations and starts the
/// background tasks, over the Docker daemon the configuration names. `shutdown` stops it
/// all.
pub async fn build(
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let docker = Docker::new(config.docker_socket.clone(), config.name.clone());
    build_with(config, Engine::Docker(docker), shutdown).await
}

/// [`build`] over the given engine.
pub async fn build_with(
    config: AgentConfig,
    engine: Engine,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let files = config.tls.files();
    let material = files.read()?;
    let identity = material.identity().clone();
    if identity.role != Role::Agent || identity.name != config.name.as_str() {
        return Err(StartError::Identity {
            identity,
            name: config.name.to_string(),
        });
    }
    let tls = ServerTls::from_files(files, ClientAuth::Required)?;
    let store = Store::open(&config.data_dir)?;
    let ops = Operations::open(store)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let agent = Arc::new(Agent {
        engine,
        advertise: config.advertise.clone().unwrap_or_else(|| addr.to_string()),
        proxy: sluice_proxy::control::Client::new(config.proxy_socket.clone()),
        config,
        ops,
        probe_client: health::probe_client(),
        cancel: shutdown,
        tasks: TaskTracker::new(),
        state_changed: tokio::sync::Notify::new(),
        tls: tls.clone(),
    });
    // First contact with the engine before resuming, so resumed runners see a connection.
    if let Err(e) = agent.engine.refresh().await {
        tracing::warn!(error = %e, "docker is not reachable yet; retrying in the background");
    }
    {
        let a = agent.clone();
        agent
            .tasks
            .spawn(async move { a.engine.monitor(a.cancel.clone()).await });
        let a = agent.clone();
        agent.tasks.spawn(events::follow(a));
        let a = agent.clone();
        agent.tasks.spawn(register::run(a));
        let a = agent.clone();
        agent.tasks.spawn(retention::run(a));
    }
    for cell in agent.ops.resume_running()? {
        runner::resume(agent.clone(), cell);
    }
    let router = api::router(agent.clone());
    let cancel = agent.cancel.clone();
    let reloader = spawn_reloader(tls.clone(), TLS_RELOAD_EVERY, cancel.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = serve_tls(listener, router, tls, cancel).await {
            tracing::error!(error = %e, "API server failed");
        }
        let _ = reloader.await;
    });
    tracing::info!(%addr, server = %agent.config.name, "agent listening");
    Ok(Running {
        addr,
        agent,
        server,
    })
}

impl Running {
    /// Waits for shutdown (the token given to [`build`]) and drains: the API stops, running
    /// operations stop at their next step (their records say where; the next start resumes
    /// them), background tasks end; all within a grace period.
    pub async fn wait(self) {
        self.agent.cancel.cancelled().await;
        self.agent.tasks.close();
        let drained = tokio::time::timeout(GRACE, async {
            let _ = self.server.await;
            self.agent.tasks.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period elapsed with tasks still running");
        }
        if let Err(e) = self.agent.ops.store().flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    /// The shared agent state (for in-process tests).
    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }
}

/// A seed for retry jitter: differs between agents (`name`), processes and starts.
pub fn jitter_seed(name: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(name.as_bytes());
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Now, as the wire's timestamp.
pub fn now() -> sluice_common::time::Timestamp {
    sluice_common::time::Timestamp::from_system(std::time::SystemTime::now())
}
