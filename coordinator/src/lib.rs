//! # sluice-coordinator
//!
//! The coordinator: a Raft-replicated store (openraft over sled) holding locks fenced by
//! log indices, the port ledger and the server registry, behind the CI-facing HTTP API.
//! Any node accepts any request; writes are forwarded to the leader.
//!
//! # Layout
//! - [`state`]: the replicated state and its pure `apply` (no I/O, no clock).
//! - [`raft`]: type config, sled store, HTTP transport for Raft RPC.
//! - [`node`]: proposing, forwarding, linearizable reads, membership.
//! - [`agents`]: agent heartbeats in the leader's memory.
//! - [`sequencer`]: drives deployments on the leader; [`agent_client`] talks to agents.
//! - [`retention`]: the leader's pruner of old deployments and idempotency keys.
//! - [`api`]: the `/v1` HTTP API and the problem+json edge; [`metrics`]: `/metrics`.
//! - [`ui`]: the web console at `/ui/` (server-rendered, assets in the binary).
//! - [`registry`]: container registries (an image's digest, checked without pulling).
//! - [`secrets`]: secrets sealed under the cluster key before they enter the Raft log.
//! - [`config`]: the TOML config.
//! - [`http`]: the one place that knows the wire (mutual TLS both ways).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod agent_client;
pub mod agents;
pub mod api;
pub mod cli;
pub mod config;
pub mod counters;
pub mod http;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod raft;
pub mod registry;
pub mod retention;
pub mod secrets;
pub mod sequencer;
pub mod state;
pub mod ui;

use config::Config;
use node::Node;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or the listener.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The sled store.
    #[error("cannot open the Raft store: {0}")]
    Store(#[from] sled::Error),
    /// Raft settings.
    #[error("invalid Raft settings: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    /// Raft itself.
    #[error("raft failed: {0}")]
    Raft(String),
    /// The TLS files.
    #[error("TLS: {0}")]
    Tls(#[from] sluice_common::tls::TlsError),
    /// Notifications.
    #[error("notify: {0}")]
    Notify(#[from] notify::NotifyError),
    /// A secret file (the bootstrap admin token).
    #[error("{path}: {reason}")]
    SecretFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why it was refused (never its content).
        reason: String,
    },
}

/// Reads the bootstrap admin secret and returns its hash. Refuses a file readable by group
/// or others, and a secret shorter than 16 characters.
fn bootstrap_admin(path: &std::path::Path) -> Result<Arc<str>, String> {
    let secret = config::read_secret_file(path)?;
    if secret.len() < 16 {
        return Err("the secret must be at least 16 characters".into());
    }
    Ok(api::auth::hash_secret(&secret).into())
}

/// A started node.
#[derive(Debug)]
pub struct Running {
    /// The bound API/Raft address.
    pub addr: SocketAddr,
    /// The node.
    pub node: Arc<Node>,
    server: JoinHandle<std::io::Result<()>>,
    monitor: JoinHandle<()>,
    sequencer: JoinHandle<()>,
    notifier: JoinHandle<()>,
    pruner: JoinHandle<()>,
    raft_failed: JoinHandle<Option<String>>,
    watchdog: JoinHandle<()>,
}

impl Running {
    /// Waits for shutdown (the token passed to [`start`]) and drains. If Raft stopped on
    /// a storage error (a full disk, a failing device), the node shuts itself down and
    /// this returns the error, so the process exits non-zero and systemd restarts it once
    /// the cause is fixed, instead of answering 500 forever.
    pub async fn wait(self) -> Result<(), StartError> {
        let served = self.server.await;
        let fatal = self.raft_failed.await.ok().flatten();
        let _ = self.monitor.await;
        let _ = self.sequencer.await;
        let _ = self.notifier.await;
        let _ = self.watchdog.await;
        let _ = self.pruner.await;
        let _ = self.node.raft.shutdown().await;
        if let Some(why) = fatal {
            return Err(StartError::Raft(why));
        }
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StartError::Io {
                what: "serving".into(),
                source: e,
            }),
            Err(e) => Err(StartError::Raft(format!("server task: {e}"))),
        }
    }
}

/// Opens the store, starts Raft, binds the listener and, on first start, forms the cluster.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| StartError::Io { what, source }
    };
    let files = config.tls.files();
    let (material, server_tls) = http::load(&files)?;
    let bootstrap_admin = match config.admin_token_file.as_deref() {
        None => None,
        Some(path) => Some(
            bootstrap_admin(path).map_err(|reason| StartError::SecretFile {
                path: path.to_owned(),
                reason,
            })?,
        ),
    };
    let notifier = notify::Notifier::from_config(&config.notify)?;
    let registries =
        registry::RegistryClient::from_config(&config.registries).map_err(|e| StartError::Io {
            what: "registries.ca_file".into(),
            source: std::io::Error::other(e),
        })?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(&format!("creating {}", config.data_dir.display())))?;
    let keyring = Arc::new(secrets::Secrets::new(
        secrets::keyfile::load(config.secrets.key_file.as_deref()).map_err(|e| StartError::Io {
            what: "secrets.key_file".into(),
            source: std::io::Error::other(e),
        })?,
    ));
    let (log, sm) = raft::store::open(&config.data_dir.join("raft"))?;
    let state = sm.handle();
    let applied = sm.applied_index();

    let r = &config.raft;
    let raft_config = openraft::Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: r.heartbeat_interval.get().as_millis() as u64,
        election_timeout_min: r.election_timeout_min.get().as_millis() as u64,
        election_timeout_max: r.election_timeout_max.get().as_millis() as u64,
        install_snapshot_timeout: 5_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every),
        max_in_snapshot_log_to_keep: r.logs_to_keep,
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        ..Default::default()
    }
    .validate()?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(&format!("binding {}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the bound address"))?;
    let advertise = config.advertise.clone().unwrap_or_else(|| addr.to_string());

    let transport = http::Transport::new(&material, Some(server_tls.clone()), Some(files))?;
    let transport_for_agents = transport.clone();
    let raft = raft::Raft::new(
        config.node_id,
        Arc::new(raft_config),
        raft::network::Network::new(transport.clone(), config.raft.election_timeout_min.get()),
        log,
        sm,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let node = Node::new(
        config.node_id,
        raft.clone(),
        state,
        applied,
        transport,
        config.request_timeout.get(),
    );
    let tracker = agents::AgentTracker::new(config.agents.heartbeat_timeout.get());
    let counters = Arc::new(counters::Counters::default());
    let agents =
        agent_client::AgentClient::new(transport_for_agents, std::time::Duration::from_secs(5));
    let driver = sequencer::Driver::new(
        node.clone(),
        agents,
        config.deploy,
        config.analysis.clone(),
        registries,
        keyring.clone(),
    );
    let app = api::App {
        node: node.clone(),
        agents: tracker.clone(),
        bootstrap_admin,
        tls: Some(server_tls.clone()),
        counters: counters.clone(),
        secrets: keyring.clone(),
        driver: driver.clone(),
    };
    let router = api::guarded(
        api::router(app.clone())
            .merge(ui::router().with_state(app.clone()))
            .merge(node::rpc::routes(node.clone())),
        app,
    );
    let server = tokio::spawn(http::serve(listener, router, server_tls, shutdown.clone()));
    let monitor = tokio::spawn(tracker.monitor(node.clone(), shutdown.clone()));
    let sequencer = tokio::spawn(driver.run(shutdown.clone()));
    let notifier = tokio::spawn(notifier.run(node.clone(), counters.clone(), shutdown.clone()));
    let pruner = tokio::spawn(retention::run(
        node.clone(),
        config.retention,
        shutdown.clone(),
    ));
    let raft_failed = tokio::spawn(stop_on_fatal(raft.clone(), shutdown.clone()));
    let watchdog = tokio::spawn(node::run_watchdog(node.clone(), shutdown.clone()));

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    if !initialized && !config.cluster.join {
        let members: BTreeMap<u64, BasicNode> = if config.cluster.initial_members.is_empty() {
            BTreeMap::from([(config.node_id, BasicNode::new(advertise.clone()))])
        } else {
            config
                .cluster
                .initial_members
                .iter()
                .map(|m| (m.id, BasicNode::new(m.addr.clone())))
                .collect()
        };
        tracing::info!(?members, "initializing a new cluster");
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(StartError::Raft(e.to_string())),
        }
    }
    tracing::info!(
        node_id = config.node_id,
        %addr,
        %advertise,
        identity = %material.identity(),
        "coordinator started"
    );
    Ok(Running {
        addr,
        node,
        server,
        monitor,
        sequencer,
        notifier,
        pruner,
        raft_failed,
        watchdog,
    })
}

/// Cancels `shutdown` when Raft stops on a fatal error and returns it; `None` on a normal
/// shutdown.
async fn stop_on_fatal(raft: raft::Raft, shutdown: CancellationToken) -> Option<String> {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow().running_state {
            let why = fatal.to_string();
            tracing::error!(error = %why, "raft stopped; shutting this node down");
            shutdown.cancel();
            return Some(why);
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() {
                // The metrics sender lives in RaftCore: it is gone only when the core
                // stopped, and a core that panicked never reports `running_state` as
                // failed. Unless this is our own shutdown, that is fatal too.
                if shutdown.is_cancelled() {
                    return None;
                }
                let why = "raft core stopped (panicked)".to_string();
                tracing::error!(error = %why, "raft stopped; shutting this node down");
                shutdown.cancel();
                return Some(why);
            },
            _ = shutdown.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_bootstrap_admin_file_must_be_private_and_is_only_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let secret = "sluice_0123456789abcdef0123456789abcdef";
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = bootstrap_admin(&path).unwrap_err();
        assert!(err.contains("group or others"), "{err}");
        assert!(!err.contains(secret));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let hash = bootstrap_admin(&path).unwrap();
        assert_eq!(&*hash, api::auth::hash_secret(secret));
        std::fs::write(&path, "short").unwrap();
        assert!(bootstrap_admin(&path).unwrap_err().contains("16"));
    }
}
