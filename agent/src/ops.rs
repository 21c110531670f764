//! Operations: deploys, rollbacks and removals, keyed by id, persisted, resumable.
//!
//! An operation is admitted once (fence judged, record persisted, runner spawned — all under
//! the fence lock) and from then on is only ever changed by its runner through
//! [`OpCell::update`], which persists every change before anyone can observe it. A repeated
//! request with the same id and body gets the existing operation; the same id with another
//! body is refused. Running operations stay in memory (`live`) so long-polls can wait on them;
//! finished ones are read back from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_common::agent_api::{OperationState, OperationView};
use sluice_common::fence::FenceClaim;
use sluice_common::names::ServiceName;
use tokio::sync::watch;
use uuid::Uuid;

use crate::fence::{Admit, FenceTable};
use crate::record::{OpRecord, OpRequest, Stage};
use crate::store::{Store, StoreError};

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// A lower token than one seen.
    #[error(transparent)]
    Stale(#[from] sluice_common::fence::StaleToken),
    /// The id exists with a different request.
    #[error("operation {0} exists with a different request")]
    Reused(Uuid),
    /// Another operation is running for the service.
    #[error("operation {running} is still running for service {service}")]
    Busy {
        /// The service.
        service: ServiceName,
        /// The running operation.
        running: Uuid,
    },
    /// Persisting failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A running operation: its record plus a change signal for long-polls.
#[derive(Debug)]
pub struct OpCell {
    rec: Mutex<OpRecord>,
    /// Held across an update's persist, so updates apply one after another (an abort from
    /// the API and a step of the runner never lose each other's change).
    writing: Mutex<()>,
    store: Store,
    changed: watch::Sender<u64>,
    /// The registry login its deploy request brought: memory only, never persisted (a
    /// pull resumed after a restart goes without it).
    registry_auth: Mutex<Option<sluice_common::api::RegistryCredentials>>,
}

impl OpCell {
    /// The registry login for this operation's pull, if its request brought one.
    pub fn registry_auth(&self) -> Option<sluice_common::api::RegistryCredentials> {
        self.registry_auth.lock().expect("poisoned").clone()
    }

    /// Hands the operation its registry login (before its runner starts).
    pub fn set_registry_auth(&self, auth: Option<sluice_common::api::RegistryCredentials>) {
        *self.registry_auth.lock().expect("poisoned") = auth;
    }

    /// A copy of the record.
    pub fn record(&self) -> OpRecord {
        self.rec.lock().expect("poisoned").clone()
    }

    /// Whether it is still running, for `service`.
    fn is_running_for(&self, service: &ServiceName) -> bool {
        let r = self.rec.lock().expect("poisoned");
        r.view.state == OperationState::Running && r.view.service == *service
    }

    /// The view.
    pub fn view(&self) -> OperationView {
        self.rec.lock().expect("poisoned").view.clone()
    }

    /// Changes the record, persists it durably, and only then shows it (to views and
    /// long-polls), so nobody observes a state a crash could take back. If the persist
    /// fails, the change is shown all the same and the error returned: the runner stops
    /// on it.
    pub fn update(&self, f: impl FnOnce(&mut OpRecord)) -> Result<(), StoreError> {
        let _writing = self.writing.lock().expect("poisoned");
        let mut next = self.record();
        f(&mut next);
        let r = self.store.commit(None, Some(&next));
        *self.rec.lock().expect("poisoned") = next;
        self.changed.send_modify(|n| *n += 1);
        r
    }

    /// Sets the phase for progress reports, in memory only (progress is not worth a disk
    /// flush; the persisted step list says where the operation is).
    pub fn set_phase(&self, phase: String) {
        self.rec.lock().expect("poisoned").view.phase = phase;
        self.changed.send_modify(|n| *n += 1);
    }

    /// Resolves with a reason once the operation must stop going forward (see
    /// [`OpRecord::halt_reason`]); pending for ever while it need not.
    pub async fn halted(&self) -> String {
        let mut rx = self.changed.subscribe();
        loop {
            let rec = self.record();
            let now = crate::now();
            if let Some(why) = rec.halt_reason(now) {
                return why;
            }
            let until_deadline = match rec.deadline_at {
                Some(at) if rec.stage < Stage::RollingBack => at.since(now),
                _ => Duration::MAX,
            };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { std::future::pending::<()>().await },
                _ = tokio::time::sleep(until_deadline.min(Duration::from_secs(3600))) => {}
            }
        }
    }

    /// Resolves once `f` holds for the record (pending for ever while it does not).
    pub async fn until(&self, f: impl Fn(&OpRecord) -> bool) {
        let mut rx = self.changed.subscribe();
        while !{
            let r = self.rec.lock().expect("poisoned");
            f(&r)
        } {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until the state (or a canary's applied weight) differs from `from`, or
    /// `wait` elapses.
    pub async fn wait_state_change(&self, from: OperationState, wait: Duration) {
        let weight = self.view().canary_weight;
        let _ = tokio::time::timeout(
            wait,
            self.until(|r| r.view.state != from || r.view.canary_weight != weight),
        )
        .await;
    }
}

/// The operation table.
#[derive(Debug)]
pub struct Operations {
    store: Store,
    fence: FenceTable,
    live: Mutex<HashMap<Uuid, Arc<OpCell>>>,
}

impl Operations {
    /// The table over `store`, with the fence loaded from it.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        Ok(Self {
            fence: FenceTable::new(store.load_fence()?),
            store,
            live: Mutex::new(HashMap::new()),
        })
    }

    /// The fence.
    pub fn fence(&self) -> &FenceTable {
        &self.fence
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn cell(&self, rec: OpRecord) -> Arc<OpCell> {
        Arc::new(OpCell {
            rec: Mutex::new(rec),
            writing: Mutex::new(()),
            store: self.store.clone(),
            changed: watch::channel(0).0,
            registry_auth: Mutex::new(None),
        })
    }

    /// Admits `request` as operation `id`. Returns the operation and, when it is new, the
    /// cell its runner must drive.
    pub fn admit(
        &self,
        id: Uuid,
        request: OpRequest,
    ) -> Result<(OperationView, Option<Arc<OpCell>>), AdmitError> {
        let claim = request.fence().clone();
        self.fence
            .admit_with(&claim, |advance| {
                let existing = match self.live.lock().expect("poisoned").get(&id) {
                    Some(c) => Some(c.record()),
                    None => self.store.get_op(id)?,
                };
                if let Some(rec) = existing {
                    if !rec.request.same_operation(&request) {
                        return Err(AdmitError::Reused(id));
                    }
                    // A retry, perhaps re-fenced with a higher token: persist the fence.
                    self.store.commit(advance, None)?;
                    return Ok((rec.view, None));
                }
                let mut live = self.live.lock().expect("poisoned");
                if let Some(c) = live.values().find(|c| c.is_running_for(request.service())) {
                    return Err(AdmitError::Busy {
                        service: request.service().clone(),
                        running: c.view().id,
                    });
                }
                let rec = OpRecord::new(id, request, crate::now());
                self.store.commit(advance, Some(&rec))?;
                let cell = self.cell(rec.clone());
                live.insert(id, cell.clone());
                Ok((rec.view, Some(cell)))
            })
            .map_err(|e| match e {
                Admit::Stale(s) => AdmitError::Stale(s),
                Admit::Refused(e) => e,
            })
    }

    /// Aborts running operation `id` on behalf of `claim` (judged by the fence like every
    /// command): it stops going forward and restores the previous version. A finished or
    /// unknown operation is left as it is. Returns its view, if it exists.
    pub fn abort(
        &self,
        id: Uuid,
        claim: &FenceClaim,
        reason: &str,
    ) -> Result<Option<OperationView>, AdmitError> {
        self.command(id, claim, |r| {
            if r.view.state == OperationState::Running && r.aborted.is_none() {
                r.aborted = Some(reason.to_string());
            }
        })
    }

    /// Asks running canary `id` on behalf of `claim` (fenced like every command) for
    /// `weight`; an operation that holds no canary, or has finished, is left as it is.
    /// Returns its view, if it exists.
    pub fn set_weight(
        &self,
        id: Uuid,
        claim: &FenceClaim,
        weight: u32,
    ) -> Result<Option<OperationView>, AdmitError> {
        self.command(id, claim, |r| {
            let holding = r.view.state == OperationState::Running
                && r.canary_want.is_some()
                && r.stage < Stage::RollingBack;
            if holding {
                r.canary_want = Some(weight.min(100));
            }
        })
    }

    /// A fenced command on existing operation `id`: `change` is applied to it (persisted)
    /// if it still runs here; a finished one is only shown. Its view, if it exists.
    fn command(
        &self,
        id: Uuid,
        claim: &FenceClaim,
        change: impl FnOnce(&mut OpRecord),
    ) -> Result<Option<OperationView>, AdmitError> {
        self.fence
            .admit_with(claim, |advance| {
                self.store.commit(advance, None)?;
                let Some(cell) = self.live(id) else {
                    return Ok(self.store.get_op(id)?.map(|r| r.view));
                };
                if cell.record().request.fence().key != claim.key {
                    return Err(AdmitError::Reused(id));
                }
                cell.update(change)?;
                Ok(Some(cell.view()))
            })
            .map_err(|e| match e {
                Admit::Stale(s) => AdmitError::Stale(s),
                Admit::Refused(e) => e,
            })
    }

    /// The live cell of a running operation.
    pub fn live(&self, id: Uuid) -> Option<Arc<OpCell>> {
        self.live.lock().expect("poisoned").get(&id).cloned()
    }

    /// An operation's record, live or stored.
    pub fn record(&self, id: Uuid) -> Result<Option<OpRecord>, StoreError> {
        if let Some(c) = self.live(id) {
            return Ok(Some(c.record()));
        }
        self.store.get_op(id)
    }

    /// An operation's view, live or stored.
    pub fn get(&self, id: Uuid) -> Result<Option<OperationView>, StoreError> {
        if let Some(c) = self.live(id) {
            return Ok(Some(c.view()));
        }
        Ok(self.store.get_op(id)?.map(|r| r.view))
    }

    /// Every operation's view, live ones as they are now (for `/metrics`).
    pub fn all(&self) -> Result<Vec<OperationView>, StoreError> {
        let mut views: Vec<OperationView> =
            self.store.all_ops()?.into_iter().map(|r| r.view).collect();
        for v in views.iter_mut() {
            if let Some(c) = self.live(v.id) {
                *v = c.view();
            }
        }
        Ok(views)
    }

    /// Drops a finished operation from memory (its record stays stored).
    pub fn retire(&self, id: Uuid) {
        self.live.lock().expect("poisoned").remove(&id);
    }

    /// On start: every operation left running by a previous agent process, made live again
    /// for its runner to resume.
    pub fn resume_running(&self) -> Result<Vec<Arc<OpCell>>, StoreError> {
        let mut out = Vec::new();
        let mut live = self.live.lock().expect("poisoned");
        for rec in self.store.all_ops()? {
            if rec.view.state == OperationState::Running {
                let cell = self.cell(rec);
                live.insert(cell.view().id, cell.clone());
                out.push(cell);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::RemoveRequest;

    fn removal(token: u64) -> RemoveRequest {
        serde_json::from_value(json!({
            "fence": {"key": "service/api", "token": token}, "service": "api",
        }))
        .expect("removal")
    }

    fn table() -> Operations {
        Operations::open(Store::temporary().expect("store")).expect("table")
    }

    #[test]
    fn a_retried_removal_joins_the_first_and_a_stale_one_is_refused() {
        let ops = table();
        let r = removal(4);
        let (first, cell) = ops
            .admit(r.operation_id(), OpRequest::Remove(r.clone()))
            .expect("admitted");
        assert!(cell.is_some());
        let (again, cell) = ops
            .admit(r.operation_id(), OpRequest::Remove(r.clone()))
            .expect("joined");
        assert!(cell.is_none(), "the same operation, not a second one");
        assert_eq!(again.id, first.id);
        let stale = removal(3);
        assert!(matches!(
            ops.admit(stale.operation_id(), OpRequest::Remove(stale)),
            Err(AdmitError::Stale(_))
        ));
        // A later removal of the same service waits for this one to end.
        let later = removal(5);
        assert!(matches!(
            ops.admit(later.operation_id(), OpRequest::Remove(later)),
            Err(AdmitError::Busy { .. })
        ));
        assert_eq!(
            ops.record(first.id)
                .expect("readable")
                .expect("stored")
                .view,
            first
        );
    }
}
