//! A coordinator node: the Raft handle plus the rules for writing and reading through it.
//!
//! Any node accepts any request. A write is proposed locally; on a follower openraft says
//! who leads, and the command is forwarded to the leader's internal endpoint, which stamps
//! it with the leader's clock and proposes it. Linearizable reads use a read index: the
//! leader confirms its leadership with a quorum and names an index, and the reading node
//! waits until it has applied that far. Everything is bounded by `request_timeout`: a
//! request that cannot be served (no quorum, no leader) fails with 503, it never hangs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_common::api::{ClusterMember, ClusterStatus};
use sluice_common::problem::{ErrorCode, Problem};
use tokio::sync::watch;

use crate::http::Transport;
use crate::raft::store::{Applied, StateHandle};
use crate::raft::{NodeId, Raft};
use crate::state::{Command, Response};

mod batch;
mod error;
mod membership;
mod read;
pub mod rpc;
mod watchdog;

use batch::{Batcher, Outcome};
use read::{quorum_committed, ReadLoop, ReadOutcome};
pub use watchdog::run as run_watchdog;

pub use error::ProposeError;

/// A command and who asks for it: what a follower forwards to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// Who asks (the audit trail's actor).
    pub actor: String,
    /// What to do.
    pub cmd: Command,
}

/// `/internal/v1/read-index` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadIndex {
    /// Apply at least this far before reading.
    pub index: u64,
}

/// A running coordinator node.
pub struct Node {
    /// This node's Raft id.
    pub id: NodeId,
    /// The Raft handle.
    pub raft: Raft,
    state: StateHandle,
    applied: watch::Receiver<u64>,
    transport: Transport,
    request_timeout: Duration,
    /// When a leader's append (heartbeats included) was last accepted here.
    leader_contact: std::sync::Mutex<Option<Instant>>,
    /// Group commit: every proposal on this node goes through it.
    batcher: Batcher,
    /// Coalesced read-index rounds.
    reads: ReadLoop,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

enum Attempt<T> {
    Done(T),
    Forward(String),
    WaitForLeader,
}

impl Node {
    /// Wraps a started Raft.
    pub fn new(
        id: NodeId,
        raft: Raft,
        state: StateHandle,
        applied: watch::Receiver<u64>,
        transport: Transport,
        request_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            state,
            applied,
            transport,
            request_timeout,
            leader_contact: std::sync::Mutex::new(None),
            batcher: Batcher::spawn(raft.clone(), batch::Limits::default()),
            reads: ReadLoop::spawn(raft.clone(), request_timeout),
            raft,
        })
    }

    /// Notes that the current leader's append was accepted (the Raft RPC handler calls it).
    pub fn note_leader_contact(&self) {
        *self.leader_contact.lock().expect("poisoned") = Some(Instant::now());
    }

    /// How long since the leader's last append was accepted here (`None`: never).
    pub fn since_leader_contact(&self) -> Option<Duration> {
        self.leader_contact
            .lock()
            .expect("poisoned")
            .map(|at| at.elapsed())
    }

    /// How long this node may go without hearing from a quorum (a leader) or from its
    /// leader (a follower) and still call itself ready: two maximal election timeouts.
    pub fn contact_limit(&self) -> Duration {
        Duration::from_millis(2 * self.raft.config().election_timeout_max)
    }

    /// Whether this node is in contact with a working cluster: a leader that a quorum
    /// acknowledged within [`Node::contact_limit`], or a follower that heard from its
    /// leader within it. `Err` says why not.
    pub fn in_contact(&self) -> Result<(), String> {
        let limit = self.contact_limit();
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader.is_none() {
            return Err("no leader is known".into());
        }
        if m.state == openraft::ServerState::Leader {
            return match m.millis_since_quorum_ack {
                Some(ms) if Duration::from_millis(ms) <= limit => Ok(()),
                Some(ms) => Err(format!(
                    "this node leads but no quorum has acknowledged it for {ms} ms"
                )),
                None => Err("this node leads but no quorum has acknowledged it yet".into()),
            };
        }
        match *self.leader_contact.lock().expect("poisoned") {
            Some(at) if at.elapsed() <= limit => Ok(()),
            Some(at) => Err(format!(
                "no word from the leader for {} ms",
                at.elapsed().as_millis()
            )),
            None => Err("no word from the leader yet".into()),
        }
    }

    /// A leader that has lost its quorum refuses new work at once instead of letting it
    /// wait out the request timeout (a follower forwards, and the leader decides).
    fn refuse_without_quorum(&self) -> Result<(), ProposeError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != openraft::ServerState::Leader {
            return Ok(());
        }
        match m.millis_since_quorum_ack {
            Some(ms) if Duration::from_millis(ms) > self.contact_limit() => {
                Err(ProposeError::Unavailable(format!(
                    "this leader has not heard from a quorum for {ms} ms"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Reads the applied state (possibly stale on a follower: see [`Node::linearizable`]).
    pub fn read<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.state.read().expect("state lock poisoned"))
    }

    /// A receiver that changes whenever entries are applied.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Whether this node is the Raft leader now (as far as it knows).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == openraft::ServerState::Leader
    }

    /// The bound on every cluster round trip.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Proposes `cmd` on behalf of `actor` (who the audit trail names), forwarding to the
    /// leader when this node is not it.
    pub async fn propose(&self, actor: &str, cmd: Command) -> Result<Response, ProposeError> {
        let proposal = Proposal {
            actor: actor.to_string(),
            cmd,
        };
        self.bounded(
            || async {
                self.refuse_without_quorum()?;
                Ok(match self.submit(proposal.clone()).await {
                    Outcome::Done(r) => Attempt::Done(r),
                    Outcome::Forward(f) => self.where_to(&f),
                    Outcome::Failed(e) => return Err(e),
                })
            },
            |addr| {
                let proposal = &proposal;
                async move { self.forward(&addr, "/internal/v1/propose", proposal).await }
            },
        )
        .await
    }

    /// Proposes on this node only (the internal endpoint behind forwarding): a follower
    /// that lost leadership meanwhile answers 503 rather than forwarding again.
    pub async fn propose_local(&self, p: Proposal) -> Result<Response, ProposeError> {
        self.refuse_without_quorum()?;
        match tokio::time::timeout(self.request_timeout, self.submit(p)).await {
            Err(_) => Err(ProposeError::Timeout(self.request_timeout)),
            Ok(Outcome::Done(r)) => Ok(r),
            Ok(Outcome::Forward(f)) => Err(ProposeError::Unavailable(
                ClientWriteError::ForwardToLeader(f).to_string(),
            )),
            Ok(Outcome::Failed(e)) => Err(e),
        }
    }

    /// Hands a proposal to the batcher, with the lock key it touches.
    async fn submit(&self, p: Proposal) -> Outcome {
        let key = self.read(|a| a.state.lock_touched(&p.cmd));
        self.batcher.propose(p.actor, p.cmd, key).await
    }

    /// Waits until this node has applied everything committed before the call (a read
    /// index confirmed by the leader with a quorum, shared by every read queued with it).
    pub async fn linearizable(&self) -> Result<(), ProposeError> {
        self.bounded(
            || async {
                self.refuse_without_quorum()?;
                match self.reads.read_index().await {
                    ReadOutcome::Index(index) => {
                        self.wait_applied(index).await?;
                        Ok(Attempt::Done(()))
                    }
                    ReadOutcome::Forward(f) => Ok(self.where_to(&f)),
                    ReadOutcome::Failed(e) => Err(e),
                }
            },
            |addr| async move {
                let ReadIndex { index } =
                    self.forward(&addr, "/internal/v1/read-index", &()).await?;
                self.wait_applied(index).await
            },
        )
        .await
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ProposeError> {
        let mut w = self.applied.clone();
        w.wait_for(|applied| *applied >= index)
            .await
            .map_err(|_| ProposeError::Fatal("state machine stopped".into()))?;
        Ok(())
    }

    /// On the leader: confirm leadership and name the index a reader must reach.
    pub async fn read_index(&self) -> Result<ReadIndex, ProposeError> {
        self.refuse_without_quorum()?;
        match self.reads.read_index().await {
            ReadOutcome::Index(index) => Ok(ReadIndex { index }),
            ReadOutcome::Forward(f) => Err(ProposeError::Unavailable(
                CheckIsLeaderError::ForwardToLeader(f).to_string(),
            )),
            ReadOutcome::Failed(e) => Err(e),
        }
    }

    /// Group commit and read coalescing so far: (batch entries, commands in them,
    /// read-index rounds).
    pub fn batching_stats(&self) -> (u64, u64, u64) {
        let b = self.batcher.stats();
        (
            b.batches.load(std::sync::atomic::Ordering::Relaxed),
            b.commands.load(std::sync::atomic::Ordering::Relaxed),
            self.reads.rounds(),
        )
    }

    /// The status shown by `GET /v1/cluster`.
    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| ClusterMember {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let committed = m
            .replication
            .as_ref()
            .and_then(|r| quorum_committed(r, &voters))
            .or(m.last_applied.map(|l| l.index));
        ClusterStatus {
            node_id: self.id,
            state: format!("{:?}", m.state).to_lowercase(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed,
            applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            members,
        }
    }

    fn where_to<T>(&self, f: &ForwardToLeader<NodeId, BasicNode>) -> Attempt<T> {
        match (&f.leader_id, &f.leader_node) {
            (Some(id), Some(n)) if *id != self.id && !n.addr.is_empty() => {
                Attempt::Forward(n.addr.clone())
            }
            _ => Attempt::WaitForLeader,
        }
    }

    /// Runs `local` until it is done, forwarding with `remote` when another node leads and
    /// waiting for an election when none does, all within the request timeout.
    async fn bounded<T, L, LF, R, RF>(&self, mut local: L, mut remote: R) -> Result<T, ProposeError>
    where
        L: FnMut() -> LF,
        LF: std::future::Future<Output = Result<Attempt<T>, ProposeError>>,
        R: FnMut(String) -> RF,
        RF: std::future::Future<Output = Result<T, ProposeError>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let work = async {
            loop {
                match local().await? {
                    Attempt::Done(v) => return Ok(v),
                    Attempt::Forward(addr) => match remote(addr).await {
                        // The leader moved or died before our request was sent: look again.
                        Err(ProposeError::Unavailable(_)) => {}
                        other => return other,
                    },
                    Attempt::WaitForLeader => {}
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = self
                    .raft
                    .wait(Some(left.min(Duration::from_millis(200))))
                    .metrics(|m| m.current_leader.is_some(), "a leader")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(ProposeError::Timeout(self.request_timeout)),
        }
    }

    /// POSTs `body` to `path` on the current leader, once.
    pub async fn forward_to_leader<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ProposeError> {
        let addr = {
            let m = self.raft.metrics().borrow().clone();
            m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
        }
        .ok_or_else(|| ProposeError::Unavailable("no leader is known".into()))?;
        tokio::time::timeout(self.request_timeout, self.forward(&addr, path, body))
            .await
            .map_err(|_| ProposeError::Timeout(self.request_timeout))?
    }

    /// POSTs `body` to the leader's internal endpoint. A connection that never reached the
    /// leader is `Unavailable` (safe to retry); anything after sending is `Forward`.
    async fn forward<B: Serialize, T: DeserializeOwned>(
        &self,
        leader: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ProposeError> {
        let resp = self
            .transport
            .client()
            .post(self.transport.url(leader, path))
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    ProposeError::Unavailable(format!("leader at {leader} unreachable"))
                } else {
                    ProposeError::Forward(e.to_string())
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProposeError::Forward(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ProposeError::Forward(e.to_string()));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            // The node we reached is no longer leader: look for the new one.
            Ok(p)
                if p.code == ErrorCode::Unavailable
                    && !p.extensions.contains_key("outcome_unknown") =>
            {
                Err(ProposeError::Unavailable(p.detail))
            }
            Ok(p) => Err(ProposeError::Rejected(Box::new(p))),
            Err(_) => Err(ProposeError::Forward(format!("leader answered {status}"))),
        }
    }
}

/// An empty JSON object, for endpoints with nothing to say.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Empty {}
