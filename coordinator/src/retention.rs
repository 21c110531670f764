//! The leader's pruner: proposes a [`Command::Prune`] when the state holds something the
//! configured limits forget, and a [`Command::CheckpointAudit`] when the live audit chain
//! is longer than configured (see `raft::archive` for the files). What is forgotten is decided inside the pure apply, from the
//! entry's limits and time (`state::deployments::retention`); this loop only asks, on the
//! leader, whether a prune would change anything, so an idle cluster writes no entries.

use std::sync::Arc;
use std::time::SystemTime;

use sluice_common::time::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::node::Node;
use crate::state::{Command, Response};

/// The audit trail's actor for prunes.
const ACTOR: &str = "system:retention";

/// Runs until `shutdown`: every `prune_interval`, on the leader, proposes a prune if one
/// is due.
pub async fn run(node: Arc<Node>, config: RetentionConfig, shutdown: CancellationToken) {
    let retention = config.limits();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.prune_interval.get()) => {}
            _ = shutdown.cancelled() => return,
        }
        if !node.is_leader() {
            continue;
        }
        let (due, checkpoint) = node.read(|a| {
            let st = &a.state;
            let now = st
                .clock
                .now()
                .max(Timestamp::from_system(SystemTime::now()));
            (
                st.deployments.prune_due(&retention, now),
                st.audit
                    .checkpoint_due(config.audit_live_records, config.audit_segment_records),
            )
        });
        if let Some(upto) = checkpoint {
            if let Err(e) = node.propose(ACTOR, Command::CheckpointAudit { upto }).await {
                tracing::warn!(error = %e, "could not checkpoint the audit chain");
            }
        }
        if !due {
            continue;
        }
        match node.propose(ACTOR, Command::Prune { retention }).await {
            Ok(Response::Pruned { summary }) => tracing::info!(
                deployments = summary.deployments,
                idempotency_keys = summary.idempotency_keys,
                "pruned history"
            ),
            Ok(other) => tracing::warn!(?other, "unexpected answer to a prune"),
            Err(e) => tracing::warn!(error = %e, "could not prune history"),
        }
    }
}
