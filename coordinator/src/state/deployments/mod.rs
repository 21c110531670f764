//! Deployments in the replicated state: records, their commands, and the pure rules.
//!
//! The sequencer (leader only) decides what to do; every decision lands here as one
//! [`DeploymentCommand`], and every change of a deployment's state goes through
//! [`Lifecycle::apply`], so each replica holds exactly the lifecycle's states and the lock
//! moves with them: taking the service lock and moving `pending → validating` is one entry
//! (the lock's token is that entry's index); finishing a deployment and releasing its lock is
//! one entry too, so nothing is ever half-applied.
//!
//! - `command`: the commands and their errors;
//! - `apply`: one function per command;
//! - `canary`: a canary's steps, measurements, promote/pause/resume;
//! - `services`: what runs where, kept in step with finished deployments;
//! - `retention`: what a prune forgets (bounded history, expiring idempotency keys);
//! - `index`: the derived indexes (by service, in flight), rebuilt when a snapshot loads;
//! - `records`: how the records are held (in flight whole, settled ones compressed).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::api::{
    CheckResult, CreateDeploymentRequest, DeploymentView, ServerStepView, ServiceServerView,
    ServiceView, TransitionView,
};
use sluice_common::deployment::{DeploymentState, Lifecycle, Phase};
use sluice_common::locks::{FencingToken, LockTable};
use sluice_common::names::{Holder, LockKey, ServerName, ServiceName};
use sluice_common::time::Timestamp;
use uuid::Uuid;

mod apply;
mod canary;
mod command;
mod deflate;
mod index;
mod pin;
mod records;
mod retention;
mod services;

pub use canary::CanaryProgress;
pub use command::{DeploymentCommand, DeploymentError, DeploymentOutcome};
pub use records::{Meta, Records};
pub use retention::{
    IdempotencyRecord, PruneSummary, PrunedCounts, PrunedTally, Retention, DURATION_BOUNDS_MS,
};
pub use services::{Placement, ServiceRecord};

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
    /// Where it stands, sub-state included.
    pub lifecycle: Lifecycle,
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
    /// When a cancel was asked for: what the API shows as `cancel_requested`, during and
    /// after (the lifecycle says whether one is still to be honoured).
    #[serde(default)]
    pub cancel_requested_at: Option<Timestamp>,
    /// The digest validation resolved the image to in its registry (see
    /// [`Deployment::pinned_image`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// `canary`: where it stands, once it reached its first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryProgress>,
    /// Who asked.
    pub actor: String,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed (progress deadline is measured from here).
    pub updated_at: Timestamp,
}

impl Deployment {
    /// The public state.
    pub fn state(&self) -> DeploymentState {
        self.lifecycle.state()
    }

    /// Whether the sequencer still has work to do on it.
    pub fn needs_driving(&self) -> bool {
        self.lifecycle.needs_driving()
    }

    /// Whether any server was touched (so a failure needs a rollback).
    pub fn touched(&self) -> bool {
        self.servers
            .values()
            .any(|s| s.state != sluice_common::api::ServerStepState::Pending)
    }

    /// The image every server pulls and runs: `repository@digest` once validation pinned
    /// a digest, else the image as requested.
    pub fn pinned_image(&self) -> sluice_common::image::ImageRef {
        pin::pinned(&self.request.image, self.image_digest.as_deref())
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
            image_digest: self.image_digest.clone(),
            state: self.state(),
            sub_state: self.lifecycle.sub_state(),
            phase: self.phase.clone(),
            token: self.token,
            targets: self.targets.clone(),
            transitions: self.transitions.clone(),
            validation: self.validation.clone(),
            servers: self.servers.values().cloned().collect(),
            failure: self.failure.clone(),
            canary: self.canary_view(),
            noop: self.lifecycle.noop(),
            rollback_requested: self.lifecycle.rollback_requested(),
            cancel_requested: self.cancel_requested_at.is_some(),
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
            spec: self.request.spec.clone(),
            actor: self.actor.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The deployment part of the replicated state. Snapshots hold everything but the indexes,
/// which are derived and rebuilt on load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "index::Stored")]
pub struct Deployments {
    /// Every deployment kept (see `retention` for which are forgotten; `records` for how).
    pub all: Records,
    /// `Idempotency-Key` → the deployment it created.
    pub idempotency: BTreeMap<String, IdempotencyRecord>,
    /// What runs where.
    pub services: BTreeMap<ServiceName, ServiceRecord>,
    next_seq: u64,
    /// The limits the last prune applied (keys expire by them between prunes too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention: Option<Retention>,
    /// Deployments forgotten, per service and final state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned: PrunedCounts,
    #[serde(skip)]
    index: index::Index,
}

impl Deployments {
    /// The deployment in flight for `service`, if any.
    /// From the service's own index, newest first: the work is the service's history kept,
    /// not every deployment in flight.
    pub fn active_for(&self, service: &ServiceName) -> Option<&Deployment> {
        self.index
            .by_service
            .get(service)?
            .iter()
            .rev()
            .filter(|(_, id)| self.index.in_flight.contains(id))
            .filter_map(|(_, id)| self.all.live(id))
            .find(|d| d.state().is_active())
    }

    /// Deployments the sequencer may still have to drive (pending, validating, deploying,
    /// rolling back, or a rollback asked for), from the index: proportional to the
    /// deployments in flight, not to all of them.
    pub fn in_flight(&self) -> impl Iterator<Item = &Deployment> + '_ {
        self.index
            .in_flight
            .iter()
            .filter_map(|id| self.all.live(id))
    }

    /// The searchable fields of the deployments kept: of `service` only (from the index)
    /// when given, else of all.
    pub fn metas_of<'a>(
        &'a self,
        service: Option<&ServiceName>,
    ) -> Box<dyn Iterator<Item = (Uuid, Cow<'a, Meta>)> + 'a> {
        match service {
            None => Box::new(self.all.metas()),
            Some(s) => Box::new(
                self.index
                    .by_service
                    .get(s)
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, id)| Some((*id, self.all.meta(id)?))),
            ),
        }
    }

    /// Deployment `id`'s version and, when it differs from `seen`, its view and whether it
    /// is still driven: what a watcher woken by every applied entry reads, so an entry
    /// that did not touch this deployment costs a lookup, not a view. `None` if not kept.
    pub fn view_since(
        &self,
        id: &Uuid,
        seen: Option<u64>,
    ) -> Option<(u64, Option<(DeploymentView, bool)>)> {
        let version = self.all.version(id)?;
        if seen == Some(version) {
            return Some((version, None));
        }
        let d = self.all.get(id)?;
        Some((version, Some((d.view(), d.needs_driving()))))
    }

    /// The deployments of `service` kept, newest first.
    pub fn of_service<'a>(
        &'a self,
        service: &ServiceName,
    ) -> impl Iterator<Item = Cow<'a, Deployment>> + 'a {
        self.index
            .by_service
            .get(service)
            .into_iter()
            .flat_map(|ids| ids.iter().rev())
            .filter_map(|(_, id)| self.all.get(id))
    }

    /// Per service with a deployment kept, its newest.
    pub fn latest_per_service(
        &self,
    ) -> impl Iterator<Item = (&ServiceName, Cow<'_, Deployment>)> + '_ {
        self.index
            .by_service
            .iter()
            .filter_map(|(s, ids)| Some((s, self.all.get(&ids.last()?.1)?)))
    }

    /// The `GET /v1/services` view.
    pub fn service_views(&self, agent_up: impl Fn(&ServerName) -> bool) -> Vec<ServiceView> {
        // One pass over the deployments in flight, not one per service.
        let active: BTreeMap<&ServiceName, Uuid> = self
            .in_flight()
            .filter(|d| d.state().is_active())
            .map(|d| (&d.request.service, d.id))
            .collect();
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
                active_deployment: active.get(name).copied(),
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
        let at = apply::At { index, now };
        let outcome = match cmd {
            C::Create {
                id,
                request,
                targets,
                idempotency,
                actor,
            } => self.create(*id, request, targets, idempotency.as_ref(), actor, now),
            C::Start { id, lock_ttl } => self.start(locks, *id, *lock_ttl, at),
            C::Refence { id, lock_ttl } => self.refence(locks, *id, *lock_ttl, at),
            C::Renew { id, lock_ttl } => self.renew(locks, *id, *lock_ttl, now),
            C::Event {
                id,
                event,
                reason,
                failure,
                noop,
            } => self.event(locks, *id, *event, reason, failure.as_deref(), *noop, at),
            C::Progress {
                id,
                phase,
                validation,
                server,
            } => self.progress(
                *id,
                phase.as_ref(),
                validation.as_deref(),
                server.as_ref(),
                now,
            ),
            C::RequestRollback { id } => self.request_rollback(*id, now),
            C::BeginRollback { id } => self.begin_rollback(*id, now),
            C::RequestCancel { id } => self.request_cancel(*id, now),
            C::GiveUp { id, failure } => self.give_up(locks, *id, failure, at),
            C::CanaryStep { id, step } => self.canary_step(*id, *step, now),
            C::CanaryMeasured {
                id,
                step,
                measurements,
            } => self.canary_measured(*id, *step, measurements, now),
            C::CanaryControl {
                id,
                control,
                reason,
            } => self.canary_control(*id, *control, reason, now),
            C::PinImage { id, digest } => self.pin_image(*id, digest, now),
            C::ResealEnv { id, env } => self.reseal_env(*id, env),
        };
        self.reindex(cmd.id());
        outcome
    }

    fn get_mut(&mut self, id: Uuid) -> Result<&mut Deployment, DeploymentError> {
        self.all
            .get_mut(&id)
            .ok_or(DeploymentError::NotFound { id })
    }
}

#[cfg(test)]
mod tests;
