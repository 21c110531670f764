//! Operation records are kept for a retention period, then forgotten.
//!
//! [`prunable`] decides, purely, from the store's in-memory summary of each record (no
//! record is decoded for it): a finished operation whose end is older than the retention
//! period goes, except the newest operation of each service, which always stays (it says
//! what the service's last deploy did, and a retry of it is still recognised). A running
//! operation is never forgotten. [`run`] is the thin shell: on start and then every
//! [`EVERY`], it removes what [`prunable`] names.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sluice_common::agent_api::OperationState;
use sluice_common::names::ServiceName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use crate::store::OpSummary;
use crate::Agent;

/// Between two prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

/// The records that `keep_for` forgets at `now`, in id order.
pub fn prunable(ops: &BTreeMap<Uuid, OpSummary>, now: Timestamp, keep_for: Duration) -> Vec<Uuid> {
    let mut newest: HashMap<&ServiceName, (Timestamp, Uuid)> = HashMap::new();
    for (id, s) in ops {
        let e = newest.entry(&s.service).or_insert((s.started_at, *id));
        if (s.started_at, *id) > *e {
            *e = (s.started_at, *id);
        }
    }
    ops.iter()
        .filter(|(id, s)| {
            s.state != OperationState::Running
                && s.finished_at.is_some_and(|f| now.since(f) > keep_for)
                && newest.get(&s.service).map(|n| n.1) != Some(**id)
        })
        .map(|(id, _)| *id)
        .collect()
}

/// Prunes on start and every [`EVERY`] until the agent shuts down.
pub async fn run(agent: Arc<Agent>) {
    let keep_for = agent.config.operation_retention.get();
    loop {
        let store = agent.ops.store();
        let gone = prunable(&store.summaries(), crate::now(), keep_for);
        if !gone.is_empty() {
            match store.remove_ops(&gone) {
                Ok(()) => tracing::info!(records = gone.len(), "pruned old operation records"),
                Err(e) => tracing::warn!(error = %e, "could not prune operation records"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = agent.cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::agent_api::OperationKind;

    const DAY: u64 = 86_400_000;

    fn op(service: &str, state: OperationState, started: u64, finished: Option<u64>) -> OpSummary {
        OpSummary {
            kind: OperationKind::Deploy,
            state,
            service: ServiceName::parse(service).unwrap(),
            started_at: Timestamp(started),
            finished_at: finished.map(Timestamp),
        }
    }

    #[test]
    fn old_finished_records_go_but_the_newest_per_service_and_running_ones_stay() {
        let week = Duration::from_millis(7 * DAY);
        let ids: Vec<Uuid> = (1..=6).map(Uuid::from_u128).collect();
        let ops = BTreeMap::from([
            (
                ids[0],
                op("api", OperationState::Succeeded, DAY, Some(DAY + 1)),
            ),
            (
                ids[1],
                op("api", OperationState::Failed, 2 * DAY, Some(2 * DAY + 1)),
            ),
            (
                ids[2],
                op("api", OperationState::Succeeded, 20 * DAY, Some(20 * DAY)),
            ),
            // Old, but the only (hence newest) record of its service.
            (ids[3], op("web", OperationState::Succeeded, DAY, Some(DAY))),
            // Running for weeks (an agent that was down): never forgotten.
            (ids[4], op("db", OperationState::Running, DAY, None)),
            (ids[5], op("db", OperationState::Succeeded, 0, Some(DAY))),
        ]);
        let now = Timestamp(21 * DAY);
        assert_eq!(prunable(&ops, now, week), vec![ids[0], ids[1], ids[5]]);
        // Within the period nothing goes.
        assert!(prunable(&ops, Timestamp(8 * DAY), week).is_empty());
    }
}
