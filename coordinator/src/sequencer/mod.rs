//! The sequencer: on the leader only, drives every deployment through the state machine.
//!
//! One task per deployment that needs driving. Each step reads the replicated record,
//! talks to agents, and proposes the outcome as one entry; it proposes only locally, so a
//! node that loses leadership cannot keep writing through the new leader, and its agent
//! commands carry a token the new leader has superseded (agents refuse them). A new leader
//! resumes a deployment by re-fencing first (a new grant, hence a larger token), then asking
//! the agents what their operations did: deploys and rollbacks are keyed by id, so asking
//! again never runs anything twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use sluice_common::agent_api::{
    AbortRequest, DeployRequest, OperationState, OperationView, RemoveServiceRequest,
    RollbackRequest,
};
use sluice_common::api::{ServerStepState, ServerStepView};
use sluice_common::backoff::Backoff;
use sluice_common::deployment::{DeploymentEvent, DeploymentState, Phase};
use sluice_common::fence::FenceClaim;
use sluice_common::names::ServerName;
use sluice_common::ports::Port;
use sluice_common::time::Timestamp;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::agent_client::{AgentClient, AgentError};
use crate::node::{Node, Proposal, ProposeError};

/// The audit trail's actor for the sequencer's own decisions.
pub const SEQUENCER: &str = "system:sequencer";
use crate::state::deployments::{Deployment, DeploymentCommand, DeploymentError};
use crate::state::{Command, Response};

pub mod validate;

/// The service lock's lease while a deployment runs; renewed every quarter of it.
const LOCK_TTL: Duration = Duration::from_secs(60);
/// How long one long-poll of an agent operation waits.
const POLL: Duration = Duration::from_secs(10);
/// Retrying an agent that is unreachable or busy: 250 ms doubling to 1 s, jittered (short:
/// a deploy waits on it, and the progress deadline bounds the whole).
const AGENT_RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));

/// A jitter seed per operation and server.
fn jitter_seed(id: Uuid, server: &ServerName) -> u64 {
    let (hi, lo) = id.as_u64_pair();
    server
        .as_str()
        .bytes()
        .fold(hi ^ lo, |h, b| h.rotate_left(5) ^ u64::from(b))
}

/// Default progress deadline.
const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

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
    running: Mutex<HashSet<Uuid>>,
}

impl Driver {
    /// A driver over `node`.
    pub fn new(node: Arc<Node>, agents: AgentClient) -> Arc<Self> {
        Arc::new(Self {
            node,
            agents,
            running: Mutex::default(),
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
        self.node
            .read(|a| a.state.deployments.all.get(&id).cloned())
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
            let work: Vec<Uuid> = self.node.read(|a| {
                a.state
                    .deployments
                    .all
                    .values()
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

    async fn drive(self: &Arc<Self>, id: Uuid) -> Result<(), Stop> {
        // A deployment found mid-flight (this node just became leader, or a driver stopped)
        // is re-fenced before anything is sent to an agent.
        let mut fenced = false;
        let renewer = self.spawn_renewer(id);
        let result = async {
            loop {
                let Some(d) = self.read(id) else {
                    return Ok(());
                };
                if !d.needs_driving() {
                    return Ok(());
                }
                let holds_lock = d.token.is_some()
                    && (d.state != DeploymentState::Success || d.rollback_requested);
                if holds_lock && !fenced {
                    let cmd = DeploymentCommand::Refence {
                        id,
                        lock_ttl: LOCK_TTL,
                    };
                    if let Err(e) = self.deployment_cmd(cmd).await {
                        // This node's view lagged: the deployment ended meanwhile, and the
                        // state machine refused to hand it the lock again.
                        if !self.read(id).is_some_and(|d| d.needs_driving()) {
                            return Ok(());
                        }
                        if let Stop::Refused(why) = &e {
                            // Someone else holds the service lock now: this deployment can
                            // no longer act on its servers.
                            self.give_up(id, format!("lost the service lock: {why}"))
                                .await?;
                            return Ok(());
                        }
                        return Err(e);
                    }
                    fenced = true;
                    continue;
                }
                fenced = true;
                match d.state {
                    DeploymentState::Pending => self.pending(&d).await?,
                    DeploymentState::Validating => self.validating(&d).await?,
                    DeploymentState::InProgress => self.in_progress(&d).await?,
                    DeploymentState::Failed if d.rolling_back => self.roll_back(&d, false).await?,
                    DeploymentState::Success if d.rollback_requested => {
                        self.roll_back(&d, true).await?
                    }
                    _ => return Ok(()),
                }
            }
        }
        .await;
        renewer.abort();
        result
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

    async fn event(
        &self,
        id: Uuid,
        event: DeploymentEvent,
        reason: impl Into<String>,
        failure: Option<String>,
        noop: bool,
    ) -> Result<(), Stop> {
        let reason = reason.into();
        tracing::info!(deployment = %id, ?event, %reason, "transition");
        self.deployment_cmd(DeploymentCommand::Event {
            id,
            event,
            reason,
            failure,
            noop,
        })
        .await
    }

    async fn phase(&self, id: Uuid, phase: &str) -> Result<(), Stop> {
        self.deployment_cmd(DeploymentCommand::Progress {
            id,
            phase: Phase::new(phase).ok(),
            validation: None,
            server: None,
        })
        .await
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

    async fn give_up(&self, id: Uuid, failure: String) -> Result<(), Stop> {
        tracing::error!(deployment = %id, %failure, "deployment needs an operator");
        self.deployment_cmd(DeploymentCommand::GiveUp { id, failure })
            .await
    }

    /// Ends a deployment on a cancel request with `event`.
    async fn cancelled(&self, id: Uuid, event: DeploymentEvent) -> Result<(), Stop> {
        self.event(id, event, "cancelled", Some("cancelled".into()), false)
            .await
    }

    fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    // ------------------------------------------------------------------ pending

    async fn pending(&self, d: &Deployment) -> Result<(), Stop> {
        if d.cancel_requested {
            return self.cancelled(d.id, DeploymentEvent::Cancel).await;
        }
        // The leader's view of the lock is current: while someone holds it, wait here
        // instead of proposing a start that would be refused (a Raft entry per attempt, and
        // every entry wakes every other waiter).
        let now = Self::now();
        let held = self.node.read(|a| {
            a.state
                .locks
                .get(&d.lock_key(), a.state.clock.now().max(now))
                .cloned()
        });
        let lease = match held {
            Some(lease) => lease,
            None => {
                let cmd = DeploymentCommand::Start {
                    id: d.id,
                    lock_ttl: LOCK_TTL,
                };
                match self.propose(Command::Deployment { cmd }).await? {
                    Response::Deployment { outcome: Ok(_) } => return Ok(()),
                    Response::Deployment {
                        outcome:
                            Err(DeploymentError::Lock(sluice_common::locks::LockError::Held { lease })),
                    } => *lease,
                    Response::Deployment { outcome: Err(e) } => {
                        return Err(Stop::Refused(e.to_string()))
                    }
                    other => return Err(Stop::Refused(format!("unexpected {other:?}"))),
                }
            }
        };
        let wait = d.request.lock_wait.map_or(Duration::ZERO, |w| w.get());
        let waited = Self::now().since(d.created_at);
        if waited >= wait {
            let why = format!(
                "the service lock is held by {} ({}) until {}",
                lease.holder, lease.reason, lease.expires_at
            );
            return self
                .event(
                    d.id,
                    DeploymentEvent::LockTimeout,
                    why.clone(),
                    Some(why),
                    false,
                )
                .await;
        }
        // Wake on anything applied (a release), when the lease would lapse, or when the
        // wait runs out, whichever comes first.
        let until = (wait - waited)
            .min(lease.expires_at.since(Self::now()) + Duration::from_millis(5))
            .max(Duration::from_millis(5));
        let mut applied = self.node.applied_watch();
        tokio::select! {
            _ = applied.changed() => {}
            _ = tokio::time::sleep(until) => {}
        }
        Ok(())
    }

    // --------------------------------------------------------------- validating

    async fn validating(&self, d: &Deployment) -> Result<(), Stop> {
        if d.cancel_requested {
            return self.cancelled(d.id, DeploymentEvent::ChecksFailed).await;
        }
        let v = validate::run(self, d).await;
        let failures = v.failures();
        self.deployment_cmd(DeploymentCommand::Progress {
            id: d.id,
            phase: None,
            validation: Some(v.results.clone()),
            server: None,
        })
        .await?;
        for (server, port) in &v.ports {
            let mut s = d
                .servers
                .get(server)
                .cloned()
                .unwrap_or_else(|| pending_step(server));
            s.port = Some(*port);
            self.step(d.id, s).await?;
        }
        if !failures.is_empty() {
            let n = failures.len();
            return self
                .event(
                    d.id,
                    DeploymentEvent::ChecksFailed,
                    format!("{n} check(s) failed"),
                    Some(failures.join("; ")),
                    false,
                )
                .await;
        }
        if self.already_running(d, &v.ports).await {
            self.event(
                d.id,
                DeploymentEvent::ChecksPassed,
                "every check passed",
                None,
                false,
            )
            .await?;
            return self
                .event(
                    d.id,
                    DeploymentEvent::AllHealthy,
                    "no-op: this image already runs on every target server",
                    None,
                    true,
                )
                .await;
        }
        self.event(
            d.id,
            DeploymentEvent::ChecksPassed,
            "every check passed",
            None,
            false,
        )
        .await
    }

    /// The same container (image, container port, environment) already runs, on the same
    /// port, from a successful deployment, and the agents confirm a running container of
    /// it. A changed environment with the same image is not a no-op.
    async fn already_running(&self, d: &Deployment, ports: &[(ServerName, u16)]) -> bool {
        let placements = self.node.read(|a| {
            let st = &a.state.deployments;
            let record = st.services.get(&d.request.service)?;
            let same = |placed_by: &Uuid| {
                st.all.get(placed_by).is_some_and(|p| {
                    p.request.env == d.request.env
                        && p.request.container_port == d.request.container_port
                })
            };
            Some(
                record
                    .servers
                    .iter()
                    .filter(|(_, p)| same(&p.deployment))
                    .map(|(s, p)| (s.clone(), p.clone()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        });
        let Some(placements) = placements else {
            return false;
        };
        for (server, port) in ports {
            match placements.get(server) {
                Some(p) if p.image == d.request.image && p.port == *port => {}
                _ => return false,
            }
            let Some(addr) = self.agent_addr(server) else {
                return false;
            };
            match self.agents.service(&addr, &d.request.service).await {
                Ok(Some(s)) => {
                    let running = s.containers.iter().any(|c| {
                        c.current && c.state == "running" && c.image == d.request.image.to_string()
                    });
                    if !running {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        ports.len() == d.targets.len()
    }

    fn agent_addr(&self, server: &ServerName) -> Option<String> {
        self.node
            .read(|a| a.state.servers.get(server).map(|r| r.agent_addr.clone()))
    }

    // -------------------------------------------------------------- in_progress

    async fn in_progress(&self, d: &Deployment) -> Result<(), Stop> {
        let token = d
            .token
            .ok_or_else(|| Stop::Refused("no fencing token".into()))?;
        let max_parallel = d.request.max_parallel.unwrap_or(1).max(1) as usize;
        let deadline = d
            .request
            .progress_deadline
            .map_or(DEFAULT_PROGRESS_DEADLINE, |p| p.get());
        let todo: Vec<ServerStepView> = d
            .targets
            .iter()
            .map(|s| d.servers.get(s).cloned().unwrap_or_else(|| pending_step(s)))
            .filter(|s| !matches!(s.state, ServerStepState::Succeeded))
            .collect();
        for chunk in todo.chunks(max_parallel) {
            let outcomes = join_all(
                chunk
                    .iter()
                    .map(|s| self.deploy_one(d, token, s.clone(), deadline)),
            )
            .await;
            let mut failed = Vec::new();
            for o in outcomes {
                if let Some(f) = o? {
                    failed.push(f);
                }
            }
            if !failed.is_empty() {
                return self
                    .event(
                        d.id,
                        DeploymentEvent::StepFailed,
                        "a server failed",
                        Some(failed.join("; ")),
                        false,
                    )
                    .await;
            }
            if self.read(d.id).is_some_and(|d| d.cancel_requested) {
                return self.cancelled(d.id, DeploymentEvent::StepFailed).await;
            }
        }
        self.event(
            d.id,
            DeploymentEvent::AllHealthy,
            "every server runs the new version healthy",
            None,
            false,
        )
        .await
    }

    /// Deploys on one server; `Ok(Some(why))` when that server failed.
    async fn deploy_one(
        &self,
        d: &Deployment,
        token: sluice_common::locks::FencingToken,
        mut step: ServerStepView,
        deadline: Duration,
    ) -> Result<Option<String>, Stop> {
        let server = step.server.clone();
        let Some(addr) = self.agent_addr(&server) else {
            return Ok(Some(format!("{server}: not registered")));
        };
        let Some(port) = step.port else {
            return Ok(Some(format!("{server}: no port allocated")));
        };
        let req = DeployRequest {
            fence: FenceClaim {
                key: d.lock_key(),
                token,
            },
            service: d.request.service.clone(),
            image: d.request.image.clone(),
            container_port: d.request.container_port,
            host_port: Port::new(u32::from(port)).map_err(|e| Stop::Refused(e.to_string()))?,
            env: d
                .request
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            health: d.request.health.clone(),
            previous_health: self.placed_health(d, &server),
            // The agent stops on its own at the same deadline if it loses us.
            deadline: Some(sluice_common::time::DurationSpec(deadline)),
            limits: Default::default(),
            privileged: false,
            network_mode: None,
            pid_mode: None,
            cap_add: Vec::new(),
            mounts: Vec::new(),
            strategy: Default::default(),
        };
        // The step turns `deploying` only once the agent has accepted the operation: a
        // server the agent never heard from was not touched and needs no rollback.
        step.operation = Some(d.id);
        self.phase(d.id, &format!("deploying to {server}")).await?;
        let started = tokio::time::Instant::now();
        let mut submitted = false;
        let mut retries = AGENT_RETRY.retries(jitter_seed(d.id, &server));
        loop {
            if !self.is_leader() {
                return Err(Stop::Leadership("deposed mid-deploy".into()));
            }
            if started.elapsed() > deadline {
                step.detail = format!("no progress within {deadline:?}");
                step.state = ServerStepState::Deploying;
                self.step(d.id, step.clone()).await?;
                // Tell the agent at once: it stops checking the new container and restores
                // the previous one (it would also stop at its own copy of the deadline).
                let abort = AbortRequest {
                    fence: req.fence.clone(),
                    reason: format!("the progress deadline of {deadline:?} passed"),
                };
                if let Err(e) = self.agents.abort(&addr, d.id, &abort).await {
                    tracing::warn!(%server, error = %e, "could not abort the agent's deploy; it stops at its own deadline");
                }
                return Ok(Some(format!(
                    "{server}: progress deadline of {deadline:?} passed"
                )));
            }
            let op = if submitted {
                self.agents
                    .operation(
                        &addr,
                        d.id,
                        // Never long-poll past the progress deadline.
                        POLL.min(
                            deadline.saturating_sub(started.elapsed()) + Duration::from_millis(50),
                        ),
                    )
                    .await
                    .map(|o| o.map(Box::new))
            } else {
                self.agents
                    .deploy(&addr, d.id, &req)
                    .await
                    .map(|o| Some(Box::new(o)))
            };
            match op {
                Ok(Some(op)) => {
                    submitted = true;
                    if step.state == ServerStepState::Pending {
                        step.state = ServerStepState::Deploying;
                    }
                    if let Some(outcome) = self.record_op(d.id, &mut step, &op, false).await? {
                        return Ok(outcome);
                    }
                }
                Ok(None) => submitted = false,
                Err(AgentError::Stale { detail }) => {
                    step.detail = detail.clone();
                    self.step(d.id, step.clone()).await?;
                    return Err(Stop::Leadership(format!("{server}: {detail}")));
                }
                Err(AgentError::Busy { detail }) => {
                    // Another operation for the service runs there: wait for it.
                    step.detail = detail;
                    self.step(d.id, step.clone()).await?;
                    tokio::time::sleep(retries.next_delay()).await;
                }
                Err(AgentError::Refused { detail, .. }) => {
                    step.detail = detail.clone();
                    self.step(d.id, step.clone()).await?;
                    return Ok(Some(format!("{server}: agent refused: {detail}")));
                }
                Err(e) => {
                    tracing::warn!(%server, error = %e, "agent unreachable; retrying until the progress deadline");
                    tokio::time::sleep(retries.next_delay()).await;
                }
            }
        }
    }

    /// Records an agent operation's state in the step; `Some(outcome)` once it is final
    /// (`None` inside means success).
    async fn record_op(
        &self,
        id: Uuid,
        step: &mut ServerStepView,
        op: &OperationView,
        rollback: bool,
    ) -> Result<Option<Option<String>>, Stop> {
        let server = step.server.clone();
        let before = self.read(id).and_then(|d| d.servers.get(&server).cloned());
        // What went wrong, and for a restore what was done about it.
        step.detail = match (&op.error, op.state) {
            (Some(e), OperationState::RolledBack) => format!("{e}; {}", op.phase),
            (Some(e), _) => e.clone(),
            (None, _) => op.phase.clone(),
        };
        if op.log_tail.is_some() {
            step.log_tail = op.log_tail.clone();
        }
        let outcome = match (op.state, rollback) {
            (OperationState::Running, _) => None,
            (OperationState::Succeeded, false) => {
                step.state = ServerStepState::Succeeded;
                Some(None)
            }
            (OperationState::Succeeded, true) => {
                step.state = ServerStepState::RolledBack;
                Some(None)
            }
            (OperationState::RolledBack, _) => {
                step.state = if rollback {
                    ServerStepState::RolledBack
                } else {
                    ServerStepState::RestoredByAgent
                };
                Some(Some(format!("{server}: {}", step.detail)))
            }
            (OperationState::Failed, false) => {
                // With no previous container nothing ran before, and the agent removed
                // the failed one: the server is as it was.
                step.state = if op.previous_container.is_none() {
                    ServerStepState::RestoredByAgent
                } else {
                    ServerStepState::Failed
                };
                Some(Some(format!("{server}: {}", step.detail)))
            }
            (OperationState::Failed, true) => {
                step.state = ServerStepState::RollbackFailed;
                Some(Some(format!("{server}: {}", step.detail)))
            }
        };
        if before.as_ref() != Some(step) {
            self.step(id, step.clone()).await?;
        }
        Ok(outcome)
    }

    // ---------------------------------------------------------------- roll back

    /// Restores the previous version on every server this deployment moved. `manual`: a
    /// successful deployment rolled back on request (every target server).
    async fn roll_back(&self, d: &Deployment, manual: bool) -> Result<(), Stop> {
        let token = d
            .token
            .ok_or_else(|| Stop::Refused("no fencing token".into()))?;
        self.phase(d.id, "rolling back").await?;
        let mut failures = Vec::new();
        for server in &d.targets {
            let step = d
                .servers
                .get(server)
                .cloned()
                .unwrap_or_else(|| pending_step(server));
            match step.state {
                // Untouched, already back, or restored by the agent itself (with no previous
                // version the agent removed the failed container: nothing ran, nothing runs).
                ServerStepState::Pending
                | ServerStepState::RolledBack
                | ServerStepState::RestoredByAgent => continue,
                ServerStepState::Failed | ServerStepState::RollbackFailed if !manual => {
                    failures.push(format!("{server}: {}", step.detail));
                    continue;
                }
                _ => {}
            }
            let fresh = self.nothing_before(d, server, manual);
            if let Some(f) = self.roll_back_one(d, token, step, fresh, manual).await? {
                failures.push(f);
            }
        }
        if failures.is_empty() {
            let why = if manual {
                "manual rollback: the previous version runs healthy again"
            } else {
                "the previous version runs healthy again on every server touched"
            };
            self.event(d.id, DeploymentEvent::RollbackCompleted, why, None, false)
                .await
        } else {
            self.give_up(d.id, format!("ROLLBACK FAILED: {}", failures.join("; ")))
                .await
        }
    }

    /// The health check the version now placed on `server` was deployed with.
    fn placed_health(
        &self,
        d: &Deployment,
        server: &ServerName,
    ) -> Option<sluice_common::api::HealthCheck> {
        self.node.read(|a| {
            let deps = &a.state.deployments;
            let placed = deps.services.get(&d.request.service)?.servers.get(server)?;
            placed.health.clone().or_else(|| {
                deps.all
                    .get(&placed.deployment)
                    .map(|p| p.request.health.clone())
            })
        })
    }

    /// The health check of the version a rollback of `d` restores on `server`: after a
    /// failure, the one placed there still; after a success (manual), the one before `d`.
    fn restored_health(
        &self,
        d: &Deployment,
        server: &ServerName,
        manual: bool,
    ) -> sluice_common::api::HealthCheck {
        let before = if manual {
            self.node.read(|a| {
                let deps = &a.state.deployments;
                let history = &deps.services.get(&d.request.service)?.history;
                let pos = history.iter().position(|x| *x == d.id)?;
                let prev = deps.all.get(&history[pos.checked_sub(1)?])?;
                Some(prev.request.health.clone())
            })
        } else {
            self.placed_health(d, server)
        };
        before.unwrap_or_else(|| d.request.health.clone())
    }

    /// Whether the service had no version on `server` before this deployment.
    fn nothing_before(&self, d: &Deployment, server: &ServerName, manual: bool) -> bool {
        self.node.read(|a| {
            let deps = &a.state.deployments;
            let rec = deps.services.get(&d.request.service);
            if !manual {
                // The deployment failed, so the record still shows what ran before it.
                return rec.is_none_or(|r| !r.servers.contains_key(server));
            }
            let prev = rec.and_then(|r| {
                let pos = r.history.iter().position(|x| *x == d.id)?;
                pos.checked_sub(1).map(|p| r.history[p])
            });
            prev.and_then(|p| deps.all.get(&p))
                .is_none_or(|p| p.servers.get(server).is_none_or(|s| s.port.is_none()))
        })
    }

    async fn roll_back_one(
        &self,
        d: &Deployment,
        token: sluice_common::locks::FencingToken,
        mut step: ServerStepView,
        fresh: bool,
        manual: bool,
    ) -> Result<Option<String>, Stop> {
        let server = step.server.clone();
        let Some(addr) = self.agent_addr(&server) else {
            return Ok(Some(format!("{server}: not registered")));
        };
        // A deploy still running there must finish first (the agent runs one operation
        // per service at a time).
        if step.state == ServerStepState::Deploying {
            loop {
                match self.agents.operation(&addr, d.id, POLL).await {
                    Ok(Some(op)) if op.state == OperationState::Running => continue,
                    Ok(Some(op)) => {
                        self.record_op(d.id, &mut step, &op, false).await?;
                        break;
                    }
                    Ok(None) => break,
                    Err(e) => return Ok(Some(format!("{server}: {e}"))),
                }
            }
            if step.state != ServerStepState::Succeeded {
                return Ok(match step.state {
                    ServerStepState::RestoredByAgent | ServerStepState::Pending => None,
                    _ => Some(format!("{server}: {}", step.detail)),
                });
            }
        }
        if fresh {
            // Nothing ran here before: the previous state is "no container".
            let req = RemoveServiceRequest {
                fence: FenceClaim {
                    key: d.lock_key(),
                    token,
                },
            };
            return match self
                .agents
                .remove_service(&addr, &d.request.service, &req)
                .await
            {
                Ok(_) => {
                    step.state = ServerStepState::RolledBack;
                    step.detail = "removed: there was no previous version here".into();
                    self.step(d.id, step).await?;
                    Ok(None)
                }
                Err(AgentError::Stale { detail }) => Err(Stop::Leadership(detail)),
                Err(e) => Ok(Some(format!("{server}: {e}"))),
            };
        }
        let op_id = match step.rollback_operation {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4();
                step.rollback_operation = Some(id);
                step.state = ServerStepState::RollingBack;
                self.step(d.id, step.clone()).await?;
                id
            }
        };
        let req = RollbackRequest {
            fence: FenceClaim {
                key: d.lock_key(),
                token,
            },
            service: d.request.service.clone(),
            health: self.restored_health(d, &server, manual),
            discard_replaced: !manual,
        };
        let mut submitted = false;
        let mut retries = AGENT_RETRY.retries(jitter_seed(op_id, &server));
        for _ in 0..120 {
            if !self.is_leader() {
                return Err(Stop::Leadership("deposed mid-rollback".into()));
            }
            let op = if submitted {
                self.agents.operation(&addr, op_id, POLL).await
            } else {
                self.agents.rollback(&addr, op_id, &req).await.map(Some)
            };
            match op {
                Ok(Some(op)) => {
                    submitted = true;
                    if let Some(outcome) = self.record_op(d.id, &mut step, &op, true).await? {
                        return Ok(outcome);
                    }
                }
                Ok(None) => submitted = false,
                Err(AgentError::Stale { detail }) => return Err(Stop::Leadership(detail)),
                Err(AgentError::Refused { detail, .. }) => {
                    return Ok(Some(format!("{server}: {detail}")))
                }
                Err(e) => {
                    // Unreachable, or busy with the deploy it has not finished yet.
                    tracing::warn!(%server, error = %e, "agent not ready for the rollback; retrying");
                    tokio::time::sleep(retries.next_delay()).await;
                }
            }
        }
        Ok(Some(format!("{server}: rollback did not finish")))
    }
}

fn pending_step(server: &ServerName) -> ServerStepView {
    ServerStepView {
        server: server.clone(),
        port: None,
        state: ServerStepState::Pending,
        operation: None,
        rollback_operation: None,
        detail: String::new(),
        log_tail: None,
    }
}
