//! The executor: performs what [`plan`](super::plan::plan) decides, one action at a time,
//! until the deployment needs no more driving or this node may no longer drive it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use sluice_common::agent_api::{
    AbortRequest, DeployRequest, RemoveServiceRequest, RollbackRequest,
};
use sluice_common::api::{ServerStepState, ServerStepView};
use sluice_common::deployment::Lifecycle;
use sluice_common::fence::FenceClaim;
use sluice_common::locks::{FencingToken, LockError};
use sluice_common::names::ServerName;
use sluice_common::ports::Port;
use sluice_common::time::{DurationSpec, Timestamp};
use uuid::Uuid;

use super::history;
use super::operation::{Call, Ended, Kind};
use super::plan::{plan, step_of, Action, Observed, Restore, Validated};
use super::{validate, Driver, Stop, LOCK_TTL};
use crate::agent_client::{AgentClient, AgentError};
use crate::state::deployments::{Deployment, DeploymentCommand, DeploymentError};
use crate::state::{Command, Response};

/// The type of a submit that is never made (only waiting for an operation).
type Waiting = std::future::Ready<Result<sluice_common::agent_api::OperationView, AgentError>>;

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

impl Driver {
    /// Drives deployment `id` while this node leads.
    pub(super) async fn drive(self: &Arc<Self>, id: Uuid) -> Result<(), Stop> {
        let renewer = self.spawn_renewer(id);
        let result = self.drive_loop(id).await;
        renewer.abort();
        result
    }

    async fn drive_loop(&self, id: Uuid) -> Result<(), Stop> {
        let mut seen = Observed::default();
        loop {
            let Some(d) = self.read(id) else {
                return Ok(());
            };
            self.observe(&d, &mut seen);
            let action = plan(&d, &seen);
            tracing::debug!(deployment = %id, ?action, "planned");
            match action {
                Action::Done => return Ok(()),
                Action::Stop(why) => return Err(Stop::Leadership(why)),
                Action::Propose(cmd) => self.propose_planned(cmd, &mut seen).await?,
                Action::Refence => {
                    let cmd = DeploymentCommand::Refence {
                        id,
                        lock_ttl: LOCK_TTL,
                    };
                    match self.deployment_cmd(cmd).await {
                        Ok(()) => seen.fenced = true,
                        // The view lagged (it has ended: the next plan says so), or someone
                        // else holds the lock now (the next plan gives up).
                        Err(Stop::Refused(why)) => seen.lock_lost = Some(why),
                        Err(e) => return Err(e),
                    }
                }
                Action::WaitForLock(until) => {
                    let mut applied = self.node.applied_watch();
                    tokio::select! {
                        _ = applied.changed() => {}
                        _ = tokio::time::sleep(until) => {}
                    }
                }
                Action::Validate => seen.validated = Some(self.validate(&d).await?),
                Action::Deploy { servers, deadline } => {
                    let token = d
                        .token
                        .ok_or_else(|| Stop::Refused("no fencing token".into()))?;
                    let runs = servers
                        .into_iter()
                        .map(|s| self.deploy_on(&d, token, s, deadline, &seen, None));
                    let mut failures = Vec::new();
                    for r in join_all(runs).await {
                        failures.extend(r?);
                    }
                    seen.batch_failures = Some(failures);
                }
                Action::Wait(until) => {
                    let mut applied = self.node.applied_watch();
                    tokio::select! {
                        _ = applied.changed() => {}
                        _ = tokio::time::sleep(until) => {}
                    }
                }
                Action::Shift {
                    step,
                    weight,
                    last,
                    deadline,
                } => {
                    self.shift(&d, step, weight, last, deadline, &mut seen)
                        .await?
                }
                Action::Measure { step } => self.measure(&d, step, &mut seen).await?,
                Action::RollBack { restore, failed } => {
                    let token = d
                        .token
                        .ok_or_else(|| Stop::Refused("no fencing token".into()))?;
                    // A canary goes back as one unit: every server's weight to 0 at once.
                    self.abort_canary(&d, token).await;
                    let mut failures = failed;
                    for (server, how) in restore {
                        failures.extend(self.restore_on(&d, token, server, how).await?);
                    }
                    seen.rollback_failures = Some(failures);
                }
            }
        }
    }

    /// Refreshes what the plan reads from outside the record.
    fn observe(&self, d: &Deployment, seen: &mut Observed) {
        seen.now = now();
        seen.deposed = !self.is_leader();
        if d.needs_driving() && d.token.is_none() && !d.lifecycle.wants_lock() {
            // A deployment that never took its lock has nothing to re-fence.
            seen.fenced = true;
        }
        let (held, previous) = self.node.read(|a| {
            let held = match d.lifecycle {
                // The leader's view of the lock is current: while someone holds it, wait
                // instead of proposing a start that would be refused (a Raft entry per
                // attempt, and every entry wakes every other waiter).
                Lifecycle::Pending { .. } => a
                    .state
                    .locks
                    .get(&d.lock_key(), a.state.clock.now().max(seen.now))
                    .cloned(),
                _ => None,
            };
            (held, history::restored(&a.state.deployments, d))
        });
        seen.lock_held = held;
        seen.previous = previous;
    }

    async fn propose_planned(
        &self,
        cmd: DeploymentCommand,
        seen: &mut Observed,
    ) -> Result<(), Stop> {
        if let DeploymentCommand::Event {
            id, event, reason, ..
        } = &cmd
        {
            tracing::info!(deployment = %id, ?event, %reason, "transition");
        }
        if let DeploymentCommand::GiveUp { id, failure } = &cmd {
            tracing::error!(deployment = %id, %failure, "deployment needs an operator");
        }
        let is_start = matches!(cmd, DeploymentCommand::Start { .. });
        match self.propose(Command::Deployment { cmd }).await? {
            Response::Deployment { outcome: Ok(_) } => Ok(()),
            Response::Deployment {
                outcome: Err(DeploymentError::Lock(LockError::Held { lease })),
            } if is_start => {
                seen.lock_held = Some(*lease);
                Ok(())
            }
            Response::Deployment { outcome: Err(e) } => Err(Stop::Refused(e.to_string())),
            other => Err(Stop::Refused(format!("unexpected {other:?}"))),
        }
    }

    /// Runs the pre-flight checks, records them and the ports chosen, and says whether the
    /// same container already runs everywhere.
    async fn validate(&self, d: &Deployment) -> Result<Validated, Stop> {
        let v = validate::run(self, d).await;
        let mut pinned = d.clone();
        if let Some(digest) = &v.digest {
            self.deployment_cmd(DeploymentCommand::PinImage {
                id: d.id,
                digest: digest.clone(),
            })
            .await?;
            pinned.image_digest = Some(digest.clone());
        }
        self.deployment_cmd(DeploymentCommand::Progress {
            id: d.id,
            phase: None,
            validation: Some(v.results.clone()),
            server: None,
        })
        .await?;
        for (server, port) in &v.ports {
            let mut s = step_of(d, server);
            s.port = Some(*port);
            self.step(d.id, s).await?;
        }
        let failures = v.failures();
        let already_running = failures.is_empty()
            && validate::already_running(self, d, &v.ports, &pinned.pinned_image()).await;
        Ok(Validated {
            failures,
            already_running,
        })
    }

    /// Deploys on one server; `Some(why)` when it failed. A canary deploy (`canary`: its
    /// first weight, and whether that is the final switch) is driven until the new version
    /// holds that weight, or (final) until it ends.
    pub(super) async fn deploy_on(
        &self,
        d: &Deployment,
        token: FencingToken,
        server: ServerName,
        deadline: Duration,
        seen: &Observed,
        canary: Option<(u32, bool)>,
    ) -> Result<Option<String>, Stop> {
        let mut step = step_of(d, &server);
        let Some(addr) = self.agent_addr(&server) else {
            return Ok(Some(format!("{server}: not registered")));
        };
        let Some(port) = step.port else {
            return Ok(Some(format!("{server}: no port allocated")));
        };
        let fence = FenceClaim {
            key: d.lock_key(),
            token,
        };
        let env = match crate::secrets::env::open(&self.secrets, &d.request.service, &d.request.env)
        {
            Ok(env) => env,
            Err(e) => {
                return Ok(Some(format!(
                    "{server}: a secret value cannot be opened: {e}"
                )))
            }
        };
        let registry_auth = match self.registry_login(&d.request.image) {
            Ok(a) => a,
            Err(e) => return Ok(Some(format!("{server}: {e}"))),
        };
        let req = DeployRequest {
            fence: fence.clone(),
            service: d.request.service.clone(),
            image: d.pinned_image(),
            container_port: d.request.container_port,
            host_port: Port::new(u32::from(port)).map_err(|e| Stop::Refused(e.to_string()))?,
            env,
            health: d.request.health.clone(),
            previous_health: seen.previous.get(&server).cloned(),
            // The agent stops on its own at the same deadline if it loses us (a canary
            // holds its step as long as its pauses say: the coordinator judges it).
            deadline: canary.is_none().then_some(DurationSpec(deadline)),
            limits: Default::default(),
            privileged: false,
            network_mode: None,
            pid_mode: None,
            cap_add: Vec::new(),
            mounts: Vec::new(),
            strategy: d.request.strategy,
            min_healthy: Some(d.request.min_healthy.unwrap_or(self.defaults.min_healthy)),
            drain_timeout: Some(
                d.request
                    .drain_timeout
                    .unwrap_or(self.defaults.drain_timeout),
            ),
            canary_weight: canary.map(|(w, _)| w),
            registry_auth,
            spec: d.request.spec.clone(),
        };
        // The step turns `deploying` only once the agent has accepted the operation: a
        // server the agent never heard from was not touched and needs no rollback.
        step.operation = Some(d.id);
        self.deployment_cmd(DeploymentCommand::Progress {
            id: d.id,
            phase: sluice_common::deployment::Phase::new(format!("deploying to {server}")).ok(),
            validation: None,
            server: None,
        })
        .await?;
        let submit = || self.agents.deploy(&addr, d.id, &req);
        let call = Call {
            deployment: d.id,
            op: d.id,
            addr: &addr,
            kind: Kind::Deploy,
            submit: Some(submit),
            deadline: Some(deadline),
            until_weight: canary.filter(|(_, last)| !last).map(|(w, _)| w),
        };
        match self.run_operation(&mut step, call).await? {
            Ended::Ok => Ok(None),
            Ended::Failed(why) => Ok(Some(why)),
            Ended::DeadlinePassed(deadline) => {
                step.detail = format!("no progress within {deadline:?}");
                step.state = ServerStepState::Deploying;
                self.step(d.id, step).await?;
                // Tell the agent at once: it stops checking the new container and restores
                // the previous one (it would also stop at its own copy of the deadline).
                let abort = AbortRequest {
                    fence,
                    reason: format!("the progress deadline of {deadline:?} passed"),
                };
                if let Err(e) = self.agents.abort(&addr, d.id, &abort).await {
                    tracing::warn!(%server, error = %e, "could not abort the agent's deploy; it stops at its own deadline");
                }
                Ok(Some(format!(
                    "{server}: progress deadline of {deadline:?} passed"
                )))
            }
        }
    }

    /// Restores one server as planned; `Some(why)` when that failed.
    async fn restore_on(
        &self,
        d: &Deployment,
        token: FencingToken,
        server: ServerName,
        how: Restore,
    ) -> Result<Option<String>, Stop> {
        let mut step = step_of(d, &server);
        let Some(addr) = self.agent_addr(&server) else {
            return Ok(Some(format!("{server}: not registered")));
        };
        let fence = FenceClaim {
            key: d.lock_key(),
            token,
        };
        // A deploy still running there must finish first (the agent runs one operation per
        // service at a time).
        if step.state == ServerStepState::Deploying {
            if d.request.strategy == sluice_common::api::Strategy::Canary {
                // A canary's deploy holds both versions until told otherwise: abort it
                // (again: asking twice is harmless) and wait for the agent's restore.
                let req = AbortRequest {
                    fence: fence.clone(),
                    reason: d.failure.clone().unwrap_or_else(|| "rolled back".into()),
                };
                let abort =
                    || async { AgentClient::known(self.agents.abort(&addr, d.id, &req).await?) };
                let call = Call {
                    deployment: d.id,
                    op: d.id,
                    addr: &addr,
                    kind: Kind::Deploy,
                    submit: Some(abort),
                    deadline: None,
                    until_weight: None,
                };
                self.run_operation(&mut step, call).await?;
            } else {
                let call = Call::<fn() -> Waiting> {
                    deployment: d.id,
                    op: d.id,
                    addr: &addr,
                    kind: Kind::Deploy,
                    submit: None,
                    deadline: None,
                    until_weight: None,
                };
                self.run_operation(&mut step, call).await?;
            }
            match step.state {
                ServerStepState::Succeeded => {}
                ServerStepState::RestoredByAgent | ServerStepState::Pending => return Ok(None),
                _ => return Ok(Some(format!("{server}: {}", step.detail))),
            }
        }
        let (health, discard_replaced) = match how {
            Restore::Remove => return self.remove_on(d, &addr, fence, step).await,
            Restore::Previous {
                health,
                discard_replaced,
            } => (health, discard_replaced),
        };
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
            fence,
            service: d.request.service.clone(),
            health,
            discard_replaced,
            strategy: d.request.strategy,
            drain_timeout: Some(
                d.request
                    .drain_timeout
                    .unwrap_or(self.defaults.drain_timeout),
            ),
        };
        let submit = || self.agents.rollback(&addr, op_id, &req);
        let call = Call {
            deployment: d.id,
            op: op_id,
            addr: &addr,
            kind: Kind::Rollback,
            submit: Some(submit),
            deadline: None,
            until_weight: None,
        };
        Ok(match self.run_operation(&mut step, call).await? {
            Ended::Ok => None,
            Ended::Failed(why) => Some(why),
            Ended::DeadlinePassed(_) => Some(format!("{server}: rollback did not finish")),
        })
    }

    /// Nothing ran on the server before: the previous state is "no container".
    async fn remove_on(
        &self,
        d: &Deployment,
        addr: &str,
        fence: FenceClaim,
        mut step: ServerStepView,
    ) -> Result<Option<String>, Stop> {
        let req = RemoveServiceRequest { fence };
        match self
            .agents
            .remove_service(addr, &d.request.service, &req)
            .await
        {
            Ok(_) => {
                step.state = ServerStepState::RolledBack;
                step.detail = "removed: there was no previous version here".into();
                self.step(d.id, step).await?;
                Ok(None)
            }
            Err(AgentError::Stale { detail }) => Err(Stop::Leadership(detail)),
            Err(e) => Ok(Some(format!("{}: {e}", step.server))),
        }
    }
}
