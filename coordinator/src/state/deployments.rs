//! Deployments in the replicated state: records, their commands, and the pure rules.
//!
//! The sequencer (leader only) decides what to do; every decision lands here as one
//! command, and every state change goes through `sluice_common::deployment::transition`,
//! so each replica holds exactly the table's states. Taking the service lock and moving
//! `pending → validating` is one entry (the lock's token is that entry's index); finishing a
//! deployment and releasing its lock is one entry too, so nothing is ever half-applied.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_common::api::{
    CheckResult, CreateDeploymentRequest, DeploymentView, ServerStepState, ServerStepView,
    ServiceServerView, ServiceView, TransitionView,
};
use sluice_common::deployment::{transition, DeploymentEvent, DeploymentState, Phase};
use sluice_common::locks::{Acquire, FencingToken, LockError, LockTable};
use sluice_common::names::{Holder, LockKey, ServerName, ServiceName};
use sluice_common::time::Timestamp;
use uuid::Uuid;

/// A deployment, with everything needed to finish it after a leader change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Its id (also the agent operation id of its deploy on each server).
    pub id: Uuid,
    /// Creation order, for listing.
    pub seq: u64,
    /// The request as accepted (secrets included: they must reach the agents after a
    /// failover; views redact them).
    pub request: CreateDeploymentRequest,
    /// The resolved target servers.
    pub targets: Vec<ServerName>,
    /// Where it stands.
    pub state: DeploymentState,
    /// Progress within the state.
    pub phase: Phase,
    /// The service lock's token, once taken.
    pub token: Option<FencingToken>,
    /// State changes.
    pub transitions: Vec<TransitionView>,
    /// Pre-flight results.
    pub validation: Vec<CheckResult>,
    /// Per-server progress.
    pub servers: BTreeMap<ServerName, ServerStepView>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Nothing to do: the image already ran healthy everywhere.
    pub noop: bool,
    /// A manual rollback was asked for.
    pub rollback_requested: bool,
    /// A cancel was asked for.
    pub cancel_requested: bool,
    /// Failed after touching servers: the previous version is being restored.
    pub rolling_back: bool,
    /// Who asked.
    pub actor: String,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed (progress deadline is measured from here).
    pub updated_at: Timestamp,
}

impl Deployment {
    /// Whether the sequencer still has work to do on it.
    pub fn needs_driving(&self) -> bool {
        self.state.is_active()
            || self.rolling_back
            || (self.rollback_requested && self.state == DeploymentState::Success)
    }

    /// The service lock's key.
    pub fn lock_key(&self) -> LockKey {
        LockKey::for_service(&self.request.service)
    }

    fn holder(&self) -> Holder {
        Holder::parse(&format!("deployment {}", self.id)).expect("a uuid makes a valid holder")
    }

    /// The API view, secret env values redacted.
    pub fn view(&self) -> DeploymentView {
        DeploymentView {
            id: self.id,
            service: self.request.service.clone(),
            image: self.request.image.clone(),
            state: self.state,
            phase: self.phase.clone(),
            token: self.token,
            targets: self.targets.clone(),
            transitions: self.transitions.clone(),
            validation: self.validation.clone(),
            servers: self.servers.values().cloned().collect(),
            failure: self.failure.clone(),
            noop: self.noop,
            rollback_requested: self.rollback_requested,
            cancel_requested: self.cancel_requested,
            env: self
                .request
                .env
                .iter()
                .map(|(k, v)| {
                    let shown = if v.secret {
                        "<redacted>".to_string()
                    } else {
                        v.value.clone()
                    };
                    (k.clone(), shown)
                })
                .collect(),
            actor: self.actor.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What runs where, per service, after successful deployments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Per server: image, port and the deployment that put it there.
    pub servers: BTreeMap<ServerName, Placement>,
    /// Successful deployments, oldest first (manual rollback pops the last).
    pub history: Vec<Uuid>,
}

/// A service's version on one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The image.
    pub image: sluice_common::image::ImageRef,
    /// The host port.
    pub port: u16,
    /// The deployment.
    pub deployment: Uuid,
    /// The health check it was deployed with: restoring this version later judges it by
    /// this check, not by the one of the version that failed (absent in older records).
    #[serde(default)]
    pub health: Option<sluice_common::api::HealthCheck>,
}

/// Deployment commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum DeploymentCommand {
    /// Accept a deployment (idempotent by key).
    Create {
        /// The new id.
        id: Uuid,
        /// The request.
        request: Box<CreateDeploymentRequest>,
        /// Resolved targets.
        targets: Vec<ServerName>,
        /// `Idempotency-Key` and the hash of the body it came with.
        idempotency: Option<(String, String)>,
        /// Who asked.
        actor: String,
    },
    /// Take the service lock and move `pending → validating`, in one entry.
    Start {
        /// The deployment.
        id: Uuid,
        /// Lease length.
        lock_ttl: Duration,
    },
    /// A new leader re-takes the lock with a fresh token before resuming.
    Refence {
        /// The deployment.
        id: Uuid,
        /// Lease length.
        lock_ttl: Duration,
    },
    /// Extend the deployment's lease.
    Renew {
        /// The deployment.
        id: Uuid,
        /// Lease length.
        lock_ttl: Duration,
    },
    /// A state-machine event; finishing releases the service lock in the same entry.
    Event {
        /// The deployment.
        id: Uuid,
        /// The event.
        event: DeploymentEvent,
        /// Why.
        reason: String,
        /// A failure description to record.
        failure: Option<String>,
        /// Mark it a no-op.
        noop: bool,
    },
    /// Progress without a state change.
    Progress {
        /// The deployment.
        id: Uuid,
        /// New phase.
        phase: Option<Phase>,
        /// Validation results (replacing earlier ones).
        validation: Option<Vec<CheckResult>>,
        /// A server's new step.
        server: Option<ServerStepView>,
    },
    /// Ask for a manual rollback of a successful deployment.
    RequestRollback {
        /// The deployment.
        id: Uuid,
    },
    /// Ask to cancel an active deployment.
    RequestCancel {
        /// The deployment.
        id: Uuid,
    },
    /// A rollback could not restore the previous version: record it loudly, stop driving
    /// the deployment, and release the service lock for a human to act.
    GiveUp {
        /// The deployment.
        id: Uuid,
        /// What went wrong.
        failure: String,
    },
}

/// Why a deployment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
// Not "kind": the wrapped LockError is itself tagged "kind".
#[serde(tag = "error", rename_all = "snake_case")]
pub enum DeploymentError {
    /// No such deployment.
    #[error("deployment {id} does not exist")]
    NotFound {
        /// The id.
        id: Uuid,
    },
    /// The key was used before with a different body.
    #[error("Idempotency-Key {key:?} was used for deployment {id} with a different request")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The original deployment.
        id: Uuid,
    },
    /// The service lock is held by someone else.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The event is not allowed in the current state.
    #[error("{message}")]
    Transition {
        /// What was refused.
        message: String,
    },
    /// A request that makes no sense now (rollback of a deployment that is not the latest
    /// success, cancel of a finished one).
    #[error("{message}")]
    Conflict {
        /// Why.
        message: String,
    },
}

/// The outcome of a deployment command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentOutcome {
    /// The deployment's id (for `Create`: the existing one on an idempotent replay).
    pub id: Uuid,
    /// For `Create`: false when the key matched an earlier deployment.
    pub created: bool,
}

/// The deployment part of the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployments {
    /// Every deployment.
    pub all: BTreeMap<Uuid, Deployment>,
    /// `Idempotency-Key` → (deployment, body hash).
    pub idempotency: BTreeMap<String, (Uuid, String)>,
    /// What runs where.
    pub services: BTreeMap<ServiceName, ServiceRecord>,
    next_seq: u64,
}

impl Deployments {
    /// The deployment in flight for `service`, if any.
    pub fn active_for(&self, service: &ServiceName) -> Option<&Deployment> {
        self.all
            .values()
            .filter(|d| &d.request.service == service)
            .find(|d| d.state.is_active())
    }

    /// The `GET /v1/services` view.
    pub fn service_views(&self, agent_up: impl Fn(&ServerName) -> bool) -> Vec<ServiceView> {
        self.services
            .iter()
            .map(|(name, rec)| ServiceView {
                service: name.clone(),
                servers: rec
                    .servers
                    .iter()
                    .map(|(s, p)| ServiceServerView {
                        server: s.clone(),
                        image: p.image.clone(),
                        port: p.port,
                        deployment: p.deployment,
                        agent_up: agent_up(s),
                    })
                    .collect(),
                active_deployment: self.active_for(name).map(|d| d.id),
            })
            .collect()
    }

    /// Applies one command at log index `index` and time `now`.
    pub fn apply(
        &mut self,
        locks: &mut LockTable,
        cmd: &DeploymentCommand,
        index: u64,
        now: Timestamp,
    ) -> Result<DeploymentOutcome, DeploymentError> {
        use DeploymentCommand as C;
        match cmd {
            C::Create {
                id,
                request,
                targets,
                idempotency,
                actor,
            } => {
                // A replayed entry never resets an existing deployment (its progress, its
                // lock): ids are fresh, so the same id means the same request.
                if self.all.contains_key(id) {
                    return Ok(DeploymentOutcome {
                        id: *id,
                        created: false,
                    });
                }
                if let Some((key, hash)) = idempotency {
                    if let Some((orig, orig_hash)) = self.idempotency.get(key) {
                        if orig_hash != hash {
                            return Err(DeploymentError::IdempotencyConflict {
                                key: key.clone(),
                                id: *orig,
                            });
                        }
                        return Ok(DeploymentOutcome {
                            id: *orig,
                            created: false,
                        });
                    }
                    self.idempotency.insert(key.clone(), (*id, hash.clone()));
                }
                self.next_seq += 1;
                let servers = targets
                    .iter()
                    .map(|s| {
                        (
                            s.clone(),
                            ServerStepView {
                                server: s.clone(),
                                port: None,
                                state: ServerStepState::Pending,
                                operation: None,
                                rollback_operation: None,
                                detail: String::new(),
                                log_tail: None,
                            },
                        )
                    })
                    .collect();
                self.all.insert(
                    *id,
                    Deployment {
                        id: *id,
                        seq: self.next_seq,
                        request: (**request).clone(),
                        targets: targets.clone(),
                        state: DeploymentState::Pending,
                        phase: Phase::new("waiting for the service lock").expect("valid"),
                        token: None,
                        transitions: Vec::new(),
                        validation: Vec::new(),
                        servers,
                        failure: None,
                        noop: false,
                        rollback_requested: false,
                        cancel_requested: false,
                        rolling_back: false,
                        actor: actor.clone(),
                        created_at: now,
                        updated_at: now,
                    },
                );
                Ok(DeploymentOutcome {
                    id: *id,
                    created: true,
                })
            }
            C::Start { id, lock_ttl } => {
                let d = self.get_mut(*id)?;
                // Check the transition first so a refused event takes no lock.
                let next = transition(d.state, DeploymentEvent::Start).map_err(|e| {
                    DeploymentError::Transition {
                        message: e.to_string(),
                    }
                })?;
                let grant = locks.acquire(
                    Acquire {
                        key: d.lock_key(),
                        holder: d.holder(),
                        reason: format!("deploying {} to {}", d.request.image, d.request.service),
                        ttl: *lock_ttl,
                    },
                    FencingToken(index),
                    now,
                )?;
                d.token = Some(grant.lease.token);
                record(d, next, now, "took the service lock".into());
                d.phase = Phase::new("validating").expect("valid");
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::Refence { id, lock_ttl } => {
                let d = self.get_mut(*id)?;
                // A new leader may propose this from a view that lags the entry which
                // finished the deployment: a deployment that has ended never takes its
                // service lock again.
                refuse_unless_in_flight(d, "re-fenced")?;
                let key = d.lock_key();
                if let Some(old) = d.token {
                    // Our lease may still be live or may have lapsed; either way release it
                    // by token. If someone else took the lock meanwhile this fails, and the
                    // deployment must not continue.
                    match locks.release(&key, old) {
                        Ok(_) | Err(LockError::NotHeld { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let grant = locks.acquire(
                    Acquire {
                        key,
                        holder: d.holder(),
                        reason: format!(
                            "deploying {} to {} (resumed)",
                            d.request.image, d.request.service
                        ),
                        ttl: *lock_ttl,
                    },
                    FencingToken(index),
                    now,
                )?;
                d.token = Some(grant.lease.token);
                d.updated_at = now;
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::Renew { id, lock_ttl } => {
                let d = self.get_mut(*id)?;
                refuse_unless_in_flight(d, "renewed")?;
                let token = d.token.ok_or_else(|| DeploymentError::Conflict {
                    message: format!("deployment {id} holds no lock"),
                })?;
                locks.renew(&d.lock_key(), token, *lock_ttl, now)?;
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::Event {
                id,
                event,
                reason,
                failure,
                noop,
            } => {
                let d = self
                    .all
                    .get_mut(id)
                    .ok_or(DeploymentError::NotFound { id: *id })?;
                let from = d.state;
                // `start` only through `Start`, which takes the service lock in the same
                // entry: as a bare event it would validate and deploy without the lock.
                if *event == DeploymentEvent::Start {
                    return Err(DeploymentError::Transition {
                        message: format!("deployment {id} starts only by taking its lock"),
                    });
                }
                let next = transition(from, *event).map_err(|e| DeploymentError::Transition {
                    message: e.to_string(),
                })?;
                record(d, next, now, reason.clone());
                if failure.is_some() {
                    d.failure = failure.clone();
                }
                d.noop |= *noop;
                d.phase = Phase::new(match next {
                    DeploymentState::Success if d.noop => "nothing to do: already running",
                    DeploymentState::Success => "done",
                    DeploymentState::Failed => "failed",
                    DeploymentState::RolledBack => "rolled back",
                    DeploymentState::InProgress => "deploying",
                    _ => d.phase.as_str(),
                })
                .unwrap_or_default();
                let settled = !next.is_active();
                // Release the lock when the deployment is done with it. A failed deployment
                // that touched servers keeps it until its rollback finishes.
                let touched = d
                    .servers
                    .values()
                    .any(|s| s.state != ServerStepState::Pending);
                let keep_for_rollback = next == DeploymentState::Failed && touched;
                d.rolling_back = keep_for_rollback;
                if next == DeploymentState::RolledBack {
                    d.rollback_requested = false;
                }
                if settled && !keep_for_rollback {
                    if let Some(t) = d.token {
                        let _ = locks.release(&d.lock_key(), t);
                    }
                }
                let d = d.clone();
                self.on_settled(&d, from, next);
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::Progress {
                id,
                phase,
                validation,
                server,
            } => {
                let d = self.get_mut(*id)?;
                if let Some(p) = phase {
                    d.phase = p.clone();
                }
                if let Some(v) = validation {
                    d.validation = v.clone();
                }
                if let Some(s) = server {
                    d.servers.insert(s.server.clone(), s.clone());
                }
                d.updated_at = now;
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::RequestRollback { id } => {
                let d = self
                    .all
                    .get(id)
                    .ok_or(DeploymentError::NotFound { id: *id })?;
                if d.state != DeploymentState::Success || d.noop {
                    return Err(DeploymentError::Conflict {
                    message: format!(
                        "only a successful deployment that changed something can be rolled back; {id} is {}{}",
                        d.state,
                        if d.noop { " (a no-op)" } else { "" }
                    ),
                });
                }
                let latest = self
                    .services
                    .get(&d.request.service)
                    .and_then(|r| r.history.last().copied());
                if latest != Some(*id) {
                    return Err(DeploymentError::Conflict {
                    message: format!(
                        "{id} is not the latest successful deployment of {}; roll back the latest first",
                        d.request.service
                    ),
                });
                }
                if let Some(active) = self.active_for(&d.request.service) {
                    return Err(DeploymentError::Conflict {
                        message: format!(
                            "deployment {} of {} is in flight",
                            active.id, d.request.service
                        ),
                    });
                }
                let d = self.get_mut(*id)?;
                d.rollback_requested = true;
                d.phase = Phase::new("rollback requested").expect("valid");
                d.updated_at = now;
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::GiveUp { id, failure } => {
                let d = self.get_mut(*id)?;
                refuse_unless_in_flight(d, "given up")?;
                d.failure = Some(failure.clone());
                d.rolling_back = false;
                d.rollback_requested = false;
                d.phase = Phase::new("rollback failed: needs an operator").expect("valid");
                d.updated_at = now;
                if let Some(t) = d.token {
                    let _ = locks.release(&d.lock_key(), t);
                }
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
            C::RequestCancel { id } => {
                let d = self.get_mut(*id)?;
                if !d.state.is_active() {
                    return Err(DeploymentError::Conflict {
                        message: format!("deployment {id} is already {}", d.state),
                    });
                }
                d.cancel_requested = true;
                d.updated_at = now;
                Ok(DeploymentOutcome {
                    id: *id,
                    created: false,
                })
            }
        }
    }

    fn get_mut(&mut self, id: Uuid) -> Result<&mut Deployment, DeploymentError> {
        self.all
            .get_mut(&id)
            .ok_or(DeploymentError::NotFound { id })
    }

    /// Keeps the service record in step with finished deployments.
    fn on_settled(&mut self, d: &Deployment, from: DeploymentState, to: DeploymentState) {
        match (from, to) {
            // A no-op changed nothing: the service record (and its history) stays as it was.
            (DeploymentState::InProgress, DeploymentState::Success) if !d.noop => {
                let rec = self.services.entry(d.request.service.clone()).or_default();
                for s in d.servers.values() {
                    if let Some(port) = s.port {
                        rec.servers.insert(
                            s.server.clone(),
                            Placement {
                                image: d.request.image.clone(),
                                port,
                                deployment: d.id,
                                health: Some(d.request.health.clone()),
                            },
                        );
                    }
                }
                rec.history.push(d.id);
            }
            (DeploymentState::Success, DeploymentState::RolledBack) => {
                // A manual rollback: the service is back on the previous success.
                let prev = {
                    let rec = self.services.entry(d.request.service.clone()).or_default();
                    rec.history.retain(|x| *x != d.id);
                    rec.history.last().copied()
                };
                let prev = prev.and_then(|p| self.all.get(&p)).cloned();
                let rec = self.services.entry(d.request.service.clone()).or_default();
                for server in &d.targets {
                    match prev
                        .as_ref()
                        .and_then(|p| p.servers.get(server).map(|s| (p, s)))
                    {
                        Some((p, s)) if s.port.is_some() => {
                            rec.servers.insert(
                                server.clone(),
                                Placement {
                                    image: p.request.image.clone(),
                                    port: s.port.unwrap_or_default(),
                                    deployment: p.id,
                                    health: Some(p.request.health.clone()),
                                },
                            );
                        }
                        _ => {
                            rec.servers.remove(server);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Refuses a lock command for a deployment that no longer needs driving: no lock may be
/// granted to, or kept alive for, a finished deployment.
fn refuse_unless_in_flight(d: &Deployment, what: &str) -> Result<(), DeploymentError> {
    if d.needs_driving() {
        return Ok(());
    }
    Err(DeploymentError::Conflict {
        message: format!(
            "deployment {} has ended ({}); its service lock cannot be {what}",
            d.id, d.state
        ),
    })
}

fn record(d: &mut Deployment, next: DeploymentState, now: Timestamp, reason: String) {
    d.transitions.push(TransitionView {
        from: d.state,
        to: next,
        at: now,
        reason,
    });
    d.state = next;
    d.updated_at = now;
}

#[cfg(test)]
mod tests;
