//! Faster failover: a follower calls the election as soon as its leader's lease is over.
//!
//! In openraft 0.9 a follower that has seen a committed leader waits the leader lease
//! (`election_timeout_max`) *plus* its own randomised election timeout (`election_timeout_min`
//! to `election_timeout_max`) after the last append, checked on ticks, before it campaigns;
//! voters refuse any vote inside the lease. etcd overlaps the two. This watchdog does the
//! same from outside openraft: once nothing has come from the leader for the lease plus a
//! random jitter below half of `election_timeout_min` (so the survivors rarely campaign in
//! the same instant and split the vote), it triggers the election. If that election splits
//! or fails, openraft's own timer still runs.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use super::Node;

/// How often the watchdog looks.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// The silence after which a follower campaigns: the lease plus `jitter` (0 ≤ jitter < 1
/// as a fraction of half the minimal election timeout). Pure.
pub fn campaign_after(lease: Duration, election_min: Duration, jitter: f64) -> Duration {
    lease + election_min.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0
}

/// Runs until `shutdown` is cancelled.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let cfg = node.raft.config().clone();
    let lease = Duration::from_millis(cfg.election_timeout_max);
    let min = Duration::from_millis(cfg.election_timeout_min);
    let mut limit = campaign_after(lease, min, jitter());
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let follower = {
            let m = node.raft.metrics().borrow().clone();
            m.state == ServerState::Follower
                && m.current_leader.is_some()
                && m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == node.id)
        };
        if !follower {
            continue;
        }
        let Some(silent) = node.since_leader_contact() else {
            continue;
        };
        if silent >= limit {
            tracing::info!(
                silent_ms = silent.as_millis() as u64,
                "no word from the leader for its lease: calling an election"
            );
            if node.raft.trigger().elect().await.is_err() {
                return;
            }
            // Wait a whole limit again before the next try; openraft's timer also runs.
            node.note_leader_contact();
            limit = campaign_after(lease, min, jitter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaigns_after_the_lease_and_within_half_the_minimal_timeout() {
        let lease = Duration::from_millis(300);
        let min = Duration::from_millis(150);
        assert_eq!(campaign_after(lease, min, 0.0), lease);
        assert_eq!(campaign_after(lease, min, 1.0), Duration::from_millis(375));
        assert_eq!(campaign_after(lease, min, 7.0), Duration::from_millis(375));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
