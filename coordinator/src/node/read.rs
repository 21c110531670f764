//! Linearizable reads, coalesced: one read-index round trip serves every read that arrived
//! before it started (etcd's linearizable read loop).
//!
//! A reader queues and waits. The loop takes every queued reader, asks openraft once for a
//! read index (the leader confirms its leadership with a quorum), and answers them all with
//! it; readers that arrive meanwhile wait for the next round, whose confirmation starts after
//! they arrived. Each reader then waits for its own node to apply that far. The index is
//! what was committed when the round began, never entries still in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ForwardToLeader, RaftError};
use openraft::{BasicNode, LogId, RaftMetrics};
use tokio::sync::{mpsc, oneshot};

use super::ProposeError;
use crate::raft::{NodeId, Raft};

/// What a reader gets back from a round.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Apply at least this far, then read.
    Index(u64),
    /// This node does not lead: where to ask.
    Forward(ForwardToLeader<NodeId, BasicNode>),
    /// No read index could be had.
    Failed(ProposeError),
}

/// The readers' side of the read loop.
#[derive(Debug, Clone)]
pub struct ReadLoop {
    tx: mpsc::UnboundedSender<oneshot::Sender<ReadOutcome>>,
    rounds: Arc<AtomicU64>,
}

impl ReadLoop {
    /// Starts the loop for `raft`; a round that takes longer than `timeout` fails.
    pub fn spawn(raft: Raft, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rounds = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(raft, rx, timeout, rounds.clone()));
        Self { tx, rounds }
    }

    /// Waits for the read index of the next round.
    pub async fn read_index(&self) -> ReadOutcome {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).is_err() {
            return ReadOutcome::Failed(ProposeError::Fatal("the read loop stopped".into()));
        }
        rx.await.unwrap_or_else(|_| {
            ReadOutcome::Failed(ProposeError::Fatal("the read loop stopped".into()))
        })
    }

    /// Read-index rounds made so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<oneshot::Sender<ReadOutcome>>,
    timeout: Duration,
    rounds: Arc<AtomicU64>,
) {
    let mut lead = None;
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        rounds.fetch_add(1, Ordering::Relaxed);
        let got = tokio::time::timeout(timeout, raft.get_read_log_id()).await;
        let floor = match &got {
            Ok(Ok((read, _))) => {
                let m = raft.metrics();
                let m = m.borrow();
                let l = lead_floor(lead, m.current_term, m.last_log_index);
                lead = Some(l);
                l.1.max(read_floor(&m, *read))
            }
            _ => 0,
        };
        for w in waiters {
            let outcome = match &got {
                Err(_) => ReadOutcome::Failed(ProposeError::Timeout(timeout)),
                Ok(Ok(_)) => ReadOutcome::Index(floor),
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                    ReadOutcome::Forward(f.clone())
                }
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                    ReadOutcome::Failed(ProposeError::Unavailable(q.to_string()))
                }
                Ok(Err(RaftError::Fatal(f))) => {
                    ReadOutcome::Failed(ProposeError::Fatal(f.to_string()))
                }
            };
            // A reader that gave up no longer listens.
            let _ = w.send(outcome);
        }
    }
}

/// The index a linearizable read must see applied: openraft's read log id (the leader's
/// committed index, or its term's first entry), raised to what a quorum has matched by the
/// leader's replication view. openraft 0.9 lets a lone leader restart into its old term
/// without a new entry, and then its read log id can lag an entry acknowledged before the
/// restart; that entry is in a quorum's logs, so the quorum's match covers it. Entries
/// appended but not yet on a quorum are not waited for.
pub fn read_floor(m: &RaftMetrics<NodeId, BasicNode>, read: Option<LogId<NodeId>>) -> u64 {
    let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| quorum_committed(r, &voters))
        .unwrap_or(0);
    read.map_or(0, |l| l.index).max(matched)
}

/// `(term, floor)` of this process's leadership: the last log index it held when it was
/// first seen leading `term`. Whatever was in its log then may have been acknowledged by
/// an earlier incarnation (openraft 0.9 restarts a lone leader into its old term without a
/// new entry, before its replication view knows what the followers match), so no read
/// below it is served. Later entries in the same term do not move it.
pub fn lead_floor(prev: Option<(u64, u64)>, term: u64, last_log: Option<u64>) -> (u64, u64) {
    match prev {
        Some((t, floor)) if t == term => (t, floor),
        _ => (term, last_log.unwrap_or(0)),
    }
}

/// The highest index a majority of voters has matched, from the leader's replication view.
pub fn quorum_committed(
    replication: &BTreeMap<NodeId, Option<LogId<NodeId>>>,
    voters: &BTreeSet<NodeId>,
) -> Option<u64> {
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|v| replication.get(v).copied().flatten().map_or(0, |l| l.index))
        .collect();
    if matched.is_empty() {
        return None;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    Some(matched[voters.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_reads_no_lower_than_its_log_when_it_began_leading() {
        // Restarted into term 2 holding entries up to 123: reads wait for 123.
        let l = lead_floor(None, 2, Some(123));
        assert_eq!(l, (2, 123));
        // Entries appended later in the same term do not raise it.
        assert_eq!(lead_floor(Some(l), 2, Some(150)), (2, 123));
        // A new term starts from the log it then holds.
        assert_eq!(lead_floor(Some(l), 3, Some(151)), (3, 151));
        assert_eq!(lead_floor(None, 1, None), (1, 0));
    }

    #[test]
    fn quorum_index_is_the_majority_match() {
        let lid = |i| Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), i));
        let r = BTreeMap::from([(1, lid(10)), (2, lid(7)), (3, None)]);
        let voters = BTreeSet::from([1, 2, 3]);
        assert_eq!(quorum_committed(&r, &voters), Some(7));
        assert_eq!(quorum_committed(&r, &BTreeSet::from([1])), Some(10));
        assert_eq!(quorum_committed(&r, &BTreeSet::new()), None);
    }
}
