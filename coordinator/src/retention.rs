//! The leader's pruner: proposes a [`Command::Prune`] when the state holds something the
//! configured limits forget, and a [`Command::CheckpointAudit`] when the live audit chain
//! is longer than configured (see `raft::archive` for the files). What is forgotten is decided inside the pure apply, from the
//! entry's limits and time (`state::deployments::retention`); this loop only asks, on the
//! leader, whether a prune would change anything, so an idle cluster writes no entries.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_common::time::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::node::Node;
use crate::state::{Command, Response};

/// The audit trail's actor for prunes.
const ACTOR: &str = "system:retention";

/// How often the leader checks the audit chain's length (a check is one comparison). The
/// chain grows by a few records per deployment; checked only every `prune_interval`, a
/// busy cluster would hold minutes of records beyond the limit in memory and snapshots.
const AUDIT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown`, on the leader: proposes an audit checkpoint when the live chain
/// is a segment over its limit (checked every few seconds), and every `prune_interval` a
/// prune if one is due.
pub async fn run(node: Arc<Node>, config: RetentionConfig, shutdown: CancellationToken) {
    let retention = config.limits();
    let every = config.prune_interval.get();
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every.min(AUDIT_CHECK_EVERY)) => {}
            _ = shutdown.cancelled() => return,
        }
        if !node.is_leader() {
            continue;
        }
        let checkpoint = node.read(|a| {
            a.state
                .audit
                .checkpoint_due(config.audit_live_records, config.audit_segment_records)
        });
        if let Some(upto) = checkpoint {
            if let Err(e) = node.propose(ACTOR, Command::CheckpointAudit { upto }).await {
                tracing::warn!(error = %e, "could not checkpoint the audit chain");
            }
        }
        if last_prune.elapsed() < every {
            continue;
        }
        last_prune = tokio::time::Instant::now();
        let due = node.read(|a| {
            let st = &a.state;
            let now = st
                .clock
                .now()
                .max(Timestamp::from_system(SystemTime::now()));
            st.deployments.prune_due(&retention, now)
        });
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
