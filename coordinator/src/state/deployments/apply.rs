//! One function per [`DeploymentCommand`](super::DeploymentCommand): each checks what it
//! needs, moves the deployment through [`Lifecycle::apply`](sluice_common::deployment::Lifecycle::apply)
//! and applies the lock effect in the same step, or refuses and changes nothing.

use std::time::Duration;

use sluice_common::api::{CheckResult, CreateDeploymentRequest, ServerStepView, TransitionView};
use sluice_common::deployment::{
    DeploymentEvent, DeploymentState, Input, Lifecycle, LockEffect, Phase, Refused,
};
use sluice_common::locks::{Acquire, FencingToken, LockError, LockTable};
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::{Deployment, DeploymentError, DeploymentOutcome, Deployments, IdempotencyRecord};

/// Where in the log a command applies: the index is the token of a lock it grants.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub index: u64,
    pub now: Timestamp,
}

type Applied = Result<DeploymentOutcome, DeploymentError>;

fn done(id: Uuid) -> Applied {
    Ok(DeploymentOutcome { id, created: false })
}

pub(super) fn phase(text: &str) -> Phase {
    Phase::new(text).unwrap_or_default()
}

impl From<Refused> for DeploymentError {
    fn from(e: Refused) -> Self {
        DeploymentError::Transition {
            message: e.to_string(),
        }
    }
}

/// What [`advance`] needs to take the lock.
struct Lease {
    ttl: Duration,
    reason: String,
}

impl Lease {
    /// The lease `d` asks for on its service lock, saying what it deploys (`resumed`: taken
    /// again by a new leader, or for a manual rollback).
    fn of(d: &Deployment, ttl: Duration, resumed: bool) -> Self {
        let mut reason = format!("deploying {} to {}", d.request.image, d.request.service);
        if resumed {
            reason.push_str(" (resumed)");
        }
        Self { ttl, reason }
    }
}

/// Moves `d` by `input` and applies the lock effect; a refused input, or a lock that cannot
/// be had, changes nothing. A change of the public state is recorded with `why`.
fn advance(
    d: &mut Deployment,
    locks: &mut LockTable,
    input: Input,
    lease: Option<Lease>,
    why: &str,
    at: At,
) -> Result<Lifecycle, DeploymentError> {
    let from = d.lifecycle;
    let t = from.apply(input)?;
    match (t.lock, lease) {
        (LockEffect::Take, Some(lease)) => take_lock(d, locks, lease, at)?,
        (LockEffect::Take, None) => {
            return Err(DeploymentError::Transition {
                message: format!("deployment {} starts only by taking its lock", d.id),
            })
        }
        (LockEffect::Release, _) => {
            if let Some(token) = d.token {
                // Not held any more (lapsed, taken over) is fine: it is not ours either way.
                let _ = locks.release(&d.lock_key(), token);
            }
        }
        (LockEffect::Keep, _) => {}
    }
    if t.to.state() != from.state() {
        d.transitions.push(TransitionView {
            from: from.state(),
            to: t.to.state(),
            at: at.now,
            reason: why.to_string(),
        });
    }
    d.lifecycle = t.to;
    d.updated_at = at.now;
    Ok(from)
}

/// Moves `d` by an input that changes no public state and no lock (a request, the start of
/// a rollback), with a new phase if given.
fn mark(
    d: &mut Deployment,
    input: Input,
    new_phase: Option<&str>,
    now: Timestamp,
) -> Result<(), DeploymentError> {
    d.lifecycle = d.lifecycle.apply(input)?.to;
    if let Some(p) = new_phase {
        d.phase = phase(p);
    }
    d.updated_at = now;
    Ok(())
}

/// Grants `d` its service lock; the token is the entry's index.
fn take_lock(
    d: &mut Deployment,
    locks: &mut LockTable,
    lease: Lease,
    at: At,
) -> Result<(), DeploymentError> {
    let grant = locks.acquire(
        Acquire {
            key: d.lock_key(),
            holder: d.holder(),
            reason: lease.reason,
            ttl: lease.ttl,
        },
        FencingToken(at.index),
        at.now,
    )?;
    d.token = Some(grant.lease.token);
    Ok(())
}

impl Deployments {
    /// The deployment a lock command (`what`: re-fenced, renewed) is for, refused when it
    /// needs no lock: no lock may be granted to, or kept alive for, a deployment that has
    /// ended (or not started).
    fn needing_lock(&mut self, id: Uuid, what: &str) -> Result<&mut Deployment, DeploymentError> {
        let d = self.get_mut(id)?;
        if d.lifecycle.wants_lock() {
            return Ok(d);
        }
        Err(DeploymentError::Conflict {
            message: format!(
                "deployment {} is {} ({}): it needs no service lock, so its lock cannot be {what}",
                d.id,
                d.state(),
                d.lifecycle.sub_state()
            ),
        })
    }

    pub(super) fn create(
        &mut self,
        id: Uuid,
        request: &CreateDeploymentRequest,
        targets: &[ServerName],
        idempotency: Option<&(String, String)>,
        actor: &str,
        now: Timestamp,
    ) -> Applied {
        // A replayed entry never resets an existing deployment (its progress, its lock):
        // ids are fresh, so the same id means the same request.
        if self.all.contains_key(&id) {
            return done(id);
        }
        if let Some((key, hash)) = idempotency {
            // An expired key is forgotten even before the next prune removes it.
            let ttl = self.retention.map(|r| r.idempotency_ttl);
            let live = self
                .idempotency
                .get(key)
                .filter(|k| !ttl.is_some_and(|t| k.expired(t, now)));
            if let Some(k) = live {
                if k.body_hash != *hash {
                    return Err(DeploymentError::IdempotencyConflict {
                        key: key.clone(),
                        id: k.deployment,
                    });
                }
                return done(k.deployment);
            }
        }
        // Judged here, in the entry, so no deployment can slip in between the check and
        // this one's creation.
        if let Some(expected) = request.check_index {
            let current = self.service_index(&request.service);
            if current != expected {
                return Err(DeploymentError::ServiceChanged {
                    service: request.service.to_string(),
                    expected,
                    current,
                });
            }
        }
        if let Some((key, hash)) = idempotency {
            self.idempotency.insert(
                key.clone(),
                IdempotencyRecord {
                    deployment: id,
                    body_hash: hash.clone(),
                    at: Some(now),
                },
            );
        }
        self.next_seq += 1;
        let servers = targets
            .iter()
            .map(|s| (s.clone(), ServerStepView::pending(s)))
            .collect();
        self.all.insert(Deployment {
            id,
            seq: self.next_seq,
            request: request.clone(),
            targets: targets.to_vec(),
            lifecycle: Lifecycle::NEW,
            phase: phase("waiting for the service lock"),
            token: None,
            transitions: Vec::new(),
            validation: Vec::new(),
            servers,
            failure: None,
            cancel_requested_at: None,
            image_digest: None,
            canary: None,
            actor: actor.to_string(),
            created_at: now,
            updated_at: now,
        });
        Ok(DeploymentOutcome { id, created: true })
    }

    pub(super) fn start(
        &mut self,
        locks: &mut LockTable,
        id: Uuid,
        ttl: Duration,
        at: At,
    ) -> Applied {
        let d = self.get_mut(id)?;
        let lease = Lease::of(d, ttl, false);
        let input = Input::event(DeploymentEvent::Start);
        advance(d, locks, input, Some(lease), "took the service lock", at)?;
        d.phase = phase("validating");
        done(id)
    }

    /// A new leader takes the lock again with a fresh token before it resumes; a manual
    /// rollback takes it this way too.
    pub(super) fn refence(
        &mut self,
        locks: &mut LockTable,
        id: Uuid,
        ttl: Duration,
        at: At,
    ) -> Applied {
        // A new leader may propose this from a view that lags the entry which finished the
        // deployment: a deployment that has ended never takes its service lock again.
        let d = self.needing_lock(id, "re-fenced")?;
        let key = d.lock_key();
        if let Some(old) = d.token {
            // Our lease may still be live or may have lapsed; either way release it by
            // token. If someone else took the lock meanwhile this fails, and the deployment
            // must not continue.
            match locks.release(&key, old) {
                Ok(_) | Err(LockError::NotHeld { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let lease = Lease::of(d, ttl, true);
        take_lock(d, locks, lease, at)?;
        d.updated_at = at.now;
        done(id)
    }

    pub(super) fn renew(
        &mut self,
        locks: &mut LockTable,
        id: Uuid,
        ttl: Duration,
        now: Timestamp,
    ) -> Applied {
        let d = self.needing_lock(id, "renewed")?;
        let token = d.token.ok_or_else(|| DeploymentError::Conflict {
            message: format!("deployment {id} holds no lock"),
        })?;
        locks.renew(&d.lock_key(), token, ttl, now)?;
        done(id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn event(
        &mut self,
        locks: &mut LockTable,
        id: Uuid,
        event: DeploymentEvent,
        reason: &str,
        failure: Option<&str>,
        noop: bool,
        at: At,
    ) -> Applied {
        let d = self.get_mut(id)?;
        let input = Input::Event {
            event,
            noop,
            touched: d.touched(),
        };
        // `start` only through `Start`, which takes the lock (no lease given here).
        let from = advance(d, locks, input, None, reason, at)?;
        if let Some(f) = failure {
            d.failure = Some(f.to_string());
        }
        d.phase = phase(match d.lifecycle {
            Lifecycle::Success { noop: true, .. } => "nothing to do: already running",
            Lifecycle::Success { .. } => "done",
            Lifecycle::Failed { .. } => "failed",
            Lifecycle::RolledBack => "rolled back",
            Lifecycle::InProgress { .. } => "deploying",
            _ => d.phase.as_str(),
        });
        let d = d.clone();
        match (from.state(), d.lifecycle) {
            (DeploymentState::InProgress, Lifecycle::Success { noop: false, .. }) => {
                self.record_success(&d)
            }
            (DeploymentState::Success, Lifecycle::RolledBack) => self.record_manual_rollback(&d),
            _ => {}
        }
        done(id)
    }

    pub(super) fn progress(
        &mut self,
        id: Uuid,
        new_phase: Option<&Phase>,
        validation: Option<&[CheckResult]>,
        server: Option<&ServerStepView>,
        now: Timestamp,
    ) -> Applied {
        let d = self.get_mut(id)?;
        if let Some(p) = new_phase {
            d.phase = p.clone();
        }
        if let Some(v) = validation {
            d.validation = v.to_vec();
        }
        if let Some(s) = server {
            d.servers.insert(s.server.clone(), s.clone());
        }
        d.updated_at = now;
        done(id)
    }

    pub(super) fn request_rollback(&mut self, id: Uuid, now: Timestamp) -> Applied {
        let d = self.all.get(&id).ok_or(DeploymentError::NotFound { id })?;
        if d.lifecycle.apply(Input::RequestRollback).is_err() {
            return Err(DeploymentError::Conflict {
                message: format!(
                    "only a successful deployment that changed something can be rolled back; {id} is {} ({})",
                    d.state(),
                    d.lifecycle.sub_state()
                ),
            });
        }
        let service = d.request.service.clone();
        let latest = self
            .services
            .get(&service)
            .and_then(|r| r.history.last().copied());
        if latest != Some(id) {
            return Err(DeploymentError::Conflict {
                message: format!(
                    "{id} is not the latest successful deployment of {service}; roll back the latest first"
                ),
            });
        }
        if let Some(active) = self.active_for(&service) {
            return Err(DeploymentError::Conflict {
                message: format!("deployment {} of {service} is in flight", active.id),
            });
        }
        mark(
            self.get_mut(id)?,
            Input::RequestRollback,
            Some("rollback requested"),
            now,
        )?;
        done(id)
    }

    pub(super) fn begin_rollback(&mut self, id: Uuid, now: Timestamp) -> Applied {
        mark(
            self.get_mut(id)?,
            Input::BeginRollback,
            Some("rolling back"),
            now,
        )?;
        done(id)
    }

    pub(super) fn request_cancel(&mut self, id: Uuid, now: Timestamp) -> Applied {
        let d = self.get_mut(id)?;
        mark(d, Input::RequestCancel, None, now).map_err(|_| DeploymentError::Conflict {
            message: format!("deployment {id} is already {}", d.state()),
        })?;
        d.cancel_requested_at.get_or_insert(now);
        done(id)
    }

    pub(super) fn give_up(
        &mut self,
        locks: &mut LockTable,
        id: Uuid,
        failure: &str,
        at: At,
    ) -> Applied {
        let d = self.get_mut(id)?;
        let from = advance(d, locks, Input::GiveUp, None, failure, at)?;
        d.failure = Some(failure.to_string());
        d.phase = phase(if from.rolling_back() {
            "rollback failed: needs an operator"
        } else {
            "stopped: needs an operator"
        });
        done(id)
    }
}
