//! The sequencer: on the leader only, drives every deployment through the state machine.
//!
//! One task per deployment that needs driving. Each step reads the replicated record,
//! talks to agents, and proposes the outcome as one entry; it proposes only locally, so a
//! node that loses leadership cannot keep writing through the new leader, and its agent
//! commands carry a token the new leader has superseded (agents refuse them). A new leader
//! resumes a deployment by re-fencing first (a new grant, hence a larger token), then asking
//! the agents what their operations did: deploys and rollbacks are keyed by id, so asking
//! again never runs anything twice.
//!
//! - `plan`: what to do next, as a pure function of the record and what was observed;
//! - `execute`: the loop that performs each planned action;
//! - `operation`: one driver for every agent operation (submit, long-poll, record);
//! - `history`: what ran before a deployment (what a rollback restores);
//! - `validate`: the pre-flight checks;
//! - `canary`, `analysis`, `prometheus`: a canary's shifts, its measurements (decided
//!   purely in `analysis`) and the Prometheus its `prometheus` checks query.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_common::api::ServerStepView;
use sluice_common::backoff::Backoff;
use sluice_common::names::ServerName;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::agent_client::AgentClient;
use crate::config::{AnalysisConfig, DeployDefaults};
use crate::node::{Node, Proposal, ProposeError};
use crate::state::deployments::{Deployment, DeploymentCommand};
use crate::state::{Command, Response};

mod analysis;
mod canary;
mod execute;
pub mod history;
pub mod operation;
pub mod plan;
mod prometheus;
mod registry_check;
mod spec_check;
pub mod validate;

/// The audit trail's actor for the sequencer's own decisions.
pub const SEQUENCER: &str = "system:sequencer";

/// The service lock's lease while a deployment runs; renewed every quarter of it.
pub const LOCK_TTL: Duration = Duration::from_secs(60);
/// How long one long-poll of an agent operation waits.
const POLL: Duration = Duration::from_secs(10);
/// Retrying an agent that is unreachable or busy: 250 ms doubling to 1 s, jittered (short:
/// a deploy waits on it, and the progress deadline bounds the whole).
const AGENT_RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));

/// Why a driver stopped early.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// This node is no longer the leader, or cannot commit: the next leader takes over.
    #[error("lost leadership or quorum: {0}")]
    Leadership(String),
    /// The record refused a command (a concurrent change); re-read and continue.
    #[error("refused: {0}")]
    Refused(String),
}

impl From<ProposeError> for Stop {
    fn from(e: ProposeError) -> Self {
        Stop::Leadership(e.to_string())
    }
}

/// What drivers share.
#[derive(Debug)]
pub struct Driver {
    /// The node.
    pub node: Arc<Node>,
    /// The agent client.
    pub agents: AgentClient,
    /// What requests that leave a knob out get.
    pub defaults: DeployDefaults,
    /// The Prometheus of canary analyses, when one is configured.
    prometheus: Option<prometheus::Prometheus>,
    /// Resolves images in their registries (validation).
    registries: crate::registry::RegistryClient,
    /// Opens the sealed registry logins.
    secrets: Arc<crate::secrets::Secrets>,
    running: Mutex<HashSet<Uuid>>,
    /// The key every stored environment was last re-sealed under (see `reseal_env`).
    resealed_env_under: Mutex<Option<String>>,
}

impl Driver {
    /// A driver over `node`.
    pub fn new(
        node: Arc<Node>,
        agents: AgentClient,
        defaults: DeployDefaults,
        analysis: AnalysisConfig,
        registries: crate::registry::RegistryClient,
        secrets: Arc<crate::secrets::Secrets>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node,
            agents,
            defaults,
            prometheus: prometheus::Prometheus::from_config(&analysis),
            registries,
            secrets,
            running: Mutex::default(),
            resealed_env_under: Mutex::new(None),
        })
    }

    fn is_leader(&self) -> bool {
        self.node.is_leader()
    }

    /// Proposes on this node only, as [`SEQUENCER`]: a deposed leader must not write through
    /// the new one.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::Unavailable("no longer the leader".into()));
        }
        self.node
            .propose_local(Proposal {
                actor: SEQUENCER.into(),
                cmd,
            })
            .await
    }

    async fn deployment_cmd(&self, cmd: DeploymentCommand) -> Result<(), Stop> {
        match self.propose(Command::Deployment { cmd }).await? {
            Response::Deployment { outcome: Ok(_) } => Ok(()),
            Response::Deployment { outcome: Err(e) } => Err(Stop::Refused(e.to_string())),
            other => Err(Stop::Refused(format!("unexpected {other:?}"))),
        }
    }

    fn read(&self, id: Uuid) -> Option<Deployment> {
        self.node.read(|a| {
            a.state
                .deployments
                .all
                .get(&id)
                .map(std::borrow::Cow::into_owned)
        })
    }

    /// Watches for work while this node leads; spawns one driver per deployment.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut applied = self.node.applied_watch();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = applied.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if !self.is_leader() {
                continue;
            }
            self.reseal_registries().await;
            self.reseal_env().await;
            // From the in-flight index: the work per applied entry is proportional to the
            // deployments in flight, not to every deployment kept.
            let work: Vec<Uuid> = self.node.read(|a| {
                a.state
                    .deployments
                    .in_flight()
                    .filter(|d| d.needs_driving())
                    .map(|d| d.id)
                    .collect()
            });
            for id in work {
                if !self.running.lock().expect("running lock").insert(id) {
                    continue;
                }
                let me = self.clone();
                let shutdown = shutdown.clone();
                let span = tracing::info_span!("deployment", %id);
                tokio::spawn(
                    async move {
                        let r = tokio::select! {
                            r = me.drive(id) => r,
                            _ = shutdown.cancelled() => Ok(()),
                        };
                        if let Err(e) = r {
                            tracing::info!(error = %e, "driver stopped");
                        }
                        me.running.lock().expect("running lock").remove(&id);
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// Renews the deployment's lease while it holds one.
    fn spawn_renewer(self: &Arc<Self>, id: Uuid) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_TTL / 4).await;
                let holds = me
                    .read(id)
                    .is_some_and(|d| d.token.is_some() && d.needs_driving());
                if holds && me.is_leader() {
                    let cmd = DeploymentCommand::Renew {
                        id,
                        lock_ttl: LOCK_TTL,
                    };
                    if let Err(e) = me.deployment_cmd(cmd).await {
                        tracing::warn!(deployment = %id, error = %e, "could not renew the service lock");
                    }
                }
            }
        })
    }

    async fn step(&self, id: Uuid, step: ServerStepView) -> Result<(), Stop> {
        self.deployment_cmd(DeploymentCommand::Progress {
            id,
            phase: None,
            validation: None,
            server: Some(step),
        })
        .await
    }

    fn agent_addr(&self, server: &ServerName) -> Option<String> {
        self.node
            .read(|a| a.state.servers.get(server).map(|r| r.agent_addr.clone()))
    }

    /// The step as the record holds it now.
    fn recorded_step(&self, id: Uuid, server: &ServerName) -> Option<ServerStepView> {
        self.read(id).and_then(|d| d.servers.get(server).cloned())
    }
}
