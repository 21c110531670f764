//! Operation records: what was asked ([`OpRequest`]), how far its runner got ([`Stage`]),
//! and what the API shows ([`OperationView`]), as one value ([`OpRecord`]) that the store
//! persists and the runners change.
//!
//! Plain data with its own small rules (what counts as a retry, when an operation must stop
//! going forward, how a step is recorded); no I/O. [`crate::ops`] admits and persists
//! records, [`crate::store`] encodes them, the runners change them.

use serde::{Deserialize, Serialize};
use sluice_common::agent_api::{
    DeployRequest, OperationKind, OperationState, OperationView, RollbackRequest, StepView,
};
use sluice_common::fence::FenceClaim;
use sluice_common::names::ServiceName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use crate::runtime::ErrorKind;

/// What was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpRequest {
    /// A recreate deploy.
    Deploy(Box<DeployRequest>),
    /// A switch back to the kept previous container.
    Rollback(RollbackRequest),
    /// The removal of every container of a service (`DELETE /agent/v1/services/{service}`).
    Remove(RemoveRequest),
}

/// A service's removal, as an operation: the path's service with the body's claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The lock the coordinator holds for this service.
    pub fence: FenceClaim,
    /// The service.
    pub service: ServiceName,
}

impl RemoveRequest {
    /// The operation id of this removal: derived from the service and the claim, so a
    /// retried `DELETE` (same service, key and token) is the same operation, while a later
    /// removal (a higher token) is a new one.
    pub fn operation_id(&self) -> Uuid {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            "sluice remove-service",
            self.service.as_str(),
            self.fence.key.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.fence.token.0.to_be_bytes());
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

impl OpRequest {
    /// The claim it carries.
    pub fn fence(&self) -> &FenceClaim {
        match self {
            Self::Deploy(r) => &r.fence,
            Self::Rollback(r) => &r.fence,
            Self::Remove(r) => &r.fence,
        }
    }

    /// The service it is for.
    pub fn service(&self) -> &ServiceName {
        match self {
            Self::Deploy(r) => &r.service,
            Self::Rollback(r) => &r.service,
            Self::Remove(r) => &r.service,
        }
    }

    /// Equal apart from the fence token: a retry (perhaps re-fenced by a new leader) of the
    /// same operation.
    pub fn same_operation(&self, other: &Self) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        for r in [&mut a, &mut b] {
            match r {
                Self::Deploy(d) => d.fence.token = Default::default(),
                Self::Rollback(d) => d.fence.token = Default::default(),
                Self::Remove(d) => d.fence.token = Default::default(),
            }
        }
        a == b && self.fence().key == other.fence().key
    }
}

/// How far the runner got; persisted before each step that changes Docker, so a restarted
/// agent knows what may have happened. Stored by name; the order matters only to
/// [`OpRecord::halt_reason`]: from `RollingBack` on, nothing halts an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Nothing changed on the host yet (image pull, container creation are harmless).
    Start,
    /// The old container is being stopped and the new one started.
    Switching,
    /// The new container was started; its health is being checked.
    Started,
    /// `canary`: the proxy splits new requests between the new container and the old one
    /// by the weight the coordinator set last; the new one is watched all along.
    Canary,
    /// `blue_green`: the proxy routes to the new container; the old one drains and the new
    /// one is watched (`min_healthy`). The old one still runs.
    Routed,
    /// The new container failed; the previous one is being restored.
    RollingBack,
    /// A removal: the containers listed in [`OpRecord::removal`] are being removed.
    Removing,
    /// Finished.
    Done,
}

/// How an operation ends, as a plan decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The final state.
    pub state: OperationState,
    /// The final phase.
    pub phase: String,
    /// The error to record, replacing the one recorded so far (`None`: keep it).
    pub error: Option<String>,
}

/// An operation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRecord {
    /// What the API shows.
    pub view: OperationView,
    /// What was asked (environment values included: never log it).
    pub request: OpRequest,
    /// How far the runner got.
    pub stage: Stage,
    /// Whether `view.previous_container` was serving when the operation began (only then is
    /// it restarted on failure).
    pub previous_was_running: bool,
    /// Past this (wall clock, from the request's `deadline`) the deploy stops going forward
    /// and the previous version is restored, whether or not the coordinator says so.
    #[serde(default)]
    pub deadline_at: Option<Timestamp>,
    /// Why the coordinator aborted it, once it has: the runner stops going forward and
    /// restores the previous version (persisted, so a restarted agent does the same).
    #[serde(default)]
    pub aborted: Option<String>,
    /// `canary`: the new version's weight the coordinator asked for last (the deploy's
    /// first weight, then each `PUT .../weight`); 100 ends the canary like a `blue_green`
    /// switch. `view.canary_weight` is what the proxy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_want: Option<u32>,
    /// A removal's containers (listed before the first is removed, so a resumed removal
    /// reports them all) and how it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<Removal>,
}

/// What a removal removes, and how it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The ids of the service's containers when the removal began.
    pub containers: Vec<String>,
    /// How Docker failed it, if it did (the HTTP answer mirrors it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ErrorKind>,
}

impl OpRecord {
    /// A new record for `request`.
    pub fn new(id: Uuid, request: OpRequest, now: Timestamp) -> Self {
        let (kind, image, deadline) = match &request {
            OpRequest::Deploy(d) => (OperationKind::Deploy, Some(d.image.clone()), d.deadline),
            OpRequest::Rollback(_) => (OperationKind::Rollback, None, None),
            OpRequest::Remove(_) => (OperationKind::Remove, None, None),
        };
        let canary_want = match &request {
            OpRequest::Deploy(d) if d.strategy == sluice_common::api::Strategy::Canary => {
                Some(d.canary_weight.unwrap_or(100).min(100))
            }
            _ => None,
        };
        Self {
            view: OperationView {
                id,
                kind,
                service: request.service().clone(),
                image,
                state: OperationState::Running,
                phase: "accepted".into(),
                steps: Vec::new(),
                log_tail: None,
                error: None,
                fence: request.fence().clone(),
                started_at: now,
                finished_at: None,
                container: None,
                previous_container: None,
                resumed: 0,
                canary_weight: None,
            },
            request,
            stage: Stage::Start,
            previous_was_running: false,
            deadline_at: deadline.map(|d| now.plus(d.get())),
            aborted: None,
            canary_want,
            removal: None,
        }
    }

    /// Why the operation must stop going forward now, if it must: aborted by the
    /// coordinator, or past its own deadline at `now`. Never once it is restoring.
    pub fn halt_reason(&self, now: Timestamp) -> Option<String> {
        if self.stage >= Stage::RollingBack {
            return None;
        }
        if let Some(why) = &self.aborted {
            return Some(format!("aborted by the coordinator: {why}"));
        }
        match self.deadline_at {
            Some(at) if now >= at => Some(format!(
                "the operation's deadline passed ({:?} after it was accepted)",
                at.since(self.view.started_at)
            )),
            _ => None,
        }
    }

    /// The watch period after the first good health check (zero: none).
    pub fn min_healthy(&self) -> std::time::Duration {
        match &self.request {
            OpRequest::Deploy(d) => d.min_healthy.map(|m| m.get()).unwrap_or_default(),
            OpRequest::Rollback(_) | OpRequest::Remove(_) => std::time::Duration::ZERO,
        }
    }

    /// How long a replaced target's connections may drain after a switch (default 30 s).
    pub fn drain_timeout(&self) -> std::time::Duration {
        let d = match &self.request {
            OpRequest::Deploy(d) => d.drain_timeout,
            OpRequest::Rollback(r) => r.drain_timeout,
            OpRequest::Remove(_) => None,
        };
        d.map(|d| d.get())
            .unwrap_or(std::time::Duration::from_secs(30))
    }

    /// Starts a step (and makes it the phase).
    pub fn begin(&mut self, name: &str) {
        self.view.phase = name.to_string();
        self.view.steps.push(StepView {
            name: name.to_string(),
            started_at: crate::now(),
            finished_at: None,
            ok: None,
            detail: String::new(),
        });
    }

    /// Ends the current step.
    pub fn end(&mut self, ok: bool, detail: impl Into<String>) {
        if let Some(s) = self.view.steps.last_mut().filter(|s| s.ok.is_none()) {
            s.finished_at = Some(crate::now());
            s.ok = Some(ok);
            s.detail = detail.into();
        }
    }

    /// Finishes the operation.
    pub fn finish(&mut self, state: OperationState, phase: &str) {
        self.end(state != OperationState::Failed, "");
        self.view.state = state;
        self.view.phase = phase.to_string();
        self.view.finished_at = Some(crate::now());
        self.stage = Stage::Done;
    }

    /// Finishes the operation as `f` says.
    pub fn conclude(&mut self, f: Finish) {
        if f.error.is_some() {
            self.view.error = f.error;
        }
        self.finish(f.state, &f.phase);
    }
}

#[cfg(test)]
mod tests {
    use sluice_common::locks::FencingToken;

    use super::*;

    fn removal(service: &str, token: u64) -> RemoveRequest {
        RemoveRequest {
            fence: FenceClaim {
                key: sluice_common::names::LockKey::parse(&format!("service/{service}"))
                    .expect("key"),
                token: FencingToken(token),
            },
            service: ServiceName::parse(service).expect("name"),
        }
    }

    #[test]
    fn a_removal_is_one_operation_per_service_and_claim() {
        let a = removal("api", 7);
        assert_eq!(a.operation_id(), removal("api", 7).operation_id());
        assert_ne!(a.operation_id(), removal("api", 8).operation_id());
        assert_ne!(a.operation_id(), removal("web", 7).operation_id());
        // A stable derivation: the same across agent versions and restarts.
        assert_eq!(a.operation_id().get_version_num(), 8);
        let r = OpRequest::Remove(a.clone());
        assert!(r.same_operation(&OpRequest::Remove(removal("api", 9))));
        assert!(!r.same_operation(&OpRequest::Remove(removal("web", 7))));
        let rec = OpRecord::new(a.operation_id(), r, crate::now());
        assert_eq!(rec.view.kind, OperationKind::Remove);
        assert_eq!(rec.halt_reason(crate::now()), None);
    }

    #[test]
    fn records_without_a_removal_keep_it_off_the_disk() {
        let rec = OpRecord::new(
            Uuid::nil(),
            OpRequest::Remove(removal("api", 1)),
            crate::now(),
        );
        let v = serde_json::to_value(&rec).expect("json");
        assert!(v.get("removal").is_none());
        let mut with = rec.clone();
        with.removal = Some(Removal {
            containers: vec!["c1".into()],
            failure: Some(ErrorKind::Refused),
        });
        let v = serde_json::to_value(&with).expect("json");
        assert_eq!(
            v["removal"],
            serde_json::json!({"containers": ["c1"], "failure": "refused"})
        );
    }
}
