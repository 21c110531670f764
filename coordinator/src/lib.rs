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
//! - [`api`]: the `/v1` HTTP API and the problem+json edge.
//! - [`config`]: the TOML config.
//! - [`http`]: the one place that knows the wire (plain HTTP today, mTLS later).

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
pub mod http;
pub mod node;
pub mod raft;
pub mod sequencer;
pub mod state;

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
}

impl Running {
    /// Waits for shutdown (the token passed to [`start`]) and drains.
    pub async fn wait(self) -> Result<(), StartError> {
        let served = self.server.await;
        let _ = self.monitor.await;
        let _ = self.sequencer.await;
        let _ = self.node.raft.shutdown().await;
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
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(&format!("creating {}", config.data_dir.display())))?;
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

    let transport = http::Transport::new();
    let transport_for_agents = transport.clone();
    let raft = raft::Raft::new(
        config.node_id,
        Arc::new(raft_config),
        raft::network::Network::new(transport.clone()),
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
    let router = api::router(api::App {
        node: node.clone(),
        agents: tracker.clone(),
    })
    .merge(raft::rpc::routes(node.clone()));
    let server = tokio::spawn(http::serve(listener, router, shutdown.clone()));
    let monitor = tokio::spawn(tracker.monitor(node.clone(), shutdown.clone()));
    let agents =
        agent_client::AgentClient::new(transport_for_agents, std::time::Duration::from_secs(5));
    let sequencer =
        tokio::spawn(sequencer::Driver::new(node.clone(), agents).run(shutdown.clone()));

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
    tracing::info!(node_id = config.node_id, %addr, %advertise, "coordinator started");
    Ok(Running {
        addr,
        node,
        server,
        monitor,
        sequencer,
    })
}
