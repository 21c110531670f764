//! The commands that change deployments, and why one may be refused.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_common::api::{
    CanaryControl, CheckResult, CreateDeploymentRequest, Measurement, ServerStepView,
};
use sluice_common::deployment::{DeploymentEvent, Phase};
use sluice_common::locks::LockError;
use sluice_common::names::ServerName;
use uuid::Uuid;

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
    /// The sequencer starts the rollback that is due (automatic after a failure that touched
    /// servers, or manual after a request); repeating it changes nothing.
    BeginRollback {
        /// The deployment.
        id: Uuid,
    },
    /// Ask to cancel an active deployment.
    RequestCancel {
        /// The deployment.
        id: Uuid,
    },
    /// The same environment with its secret values sealed under the current cluster key
    /// (after a key rotation; maintenance, not audited). Refused unless the names and
    /// secret flags are those already stored.
    ResealEnv {
        /// The deployment.
        id: Uuid,
        /// The environment, sealed anew.
        env: std::collections::BTreeMap<sluice_common::names::EnvName, sluice_common::api::EnvVar>,
    },
    /// A canary reached `step` on every target server (the number of steps: the final
    /// switch to 100 %). One entry per step.
    CanaryStep {
        /// The deployment.
        id: Uuid,
        /// The step, 0-based.
        step: u32,
    },
    /// Measurements of a canary's analysis at `step`.
    CanaryMeasured {
        /// The deployment.
        id: Uuid,
        /// The step they judged.
        step: u32,
        /// What was measured.
        measurements: Vec<Measurement>,
    },
    /// Promote, pause or resume a canary.
    CanaryControl {
        /// The deployment.
        id: Uuid,
        /// What to do.
        control: CanaryControl,
        /// Why (a pause records it).
        reason: String,
    },
    /// Validation resolved the image's tag to `digest` in its registry: every server pulls
    /// that digest. Refused once a server was touched (the fleet never mixes builds).
    PinImage {
        /// The deployment.
        id: Uuid,
        /// `sha256:…`.
        digest: String,
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

impl DeploymentCommand {
    /// The deployment it is about.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Create { id, .. }
            | Self::Start { id, .. }
            | Self::Refence { id, .. }
            | Self::Renew { id, .. }
            | Self::Event { id, .. }
            | Self::Progress { id, .. }
            | Self::RequestRollback { id }
            | Self::RequestCancel { id }
            | Self::ResealEnv { id, .. }
            | Self::BeginRollback { id }
            | Self::GiveUp { id, .. }
            | Self::CanaryStep { id, .. }
            | Self::CanaryMeasured { id, .. }
            | Self::CanaryControl { id, .. }
            | Self::PinImage { id, .. } => *id,
        }
    }
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
    /// `check_index` is not the service's version index any more.
    #[error("service {service} changed since the plan: its index is {current}, the request expected {expected}")]
    ServiceChanged {
        /// The service.
        service: String,
        /// The index the request was planned at.
        expected: u64,
        /// The index now.
        current: u64,
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
