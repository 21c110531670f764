//! Group commit: the leader's proposal batcher.
//!
//! openraft 0.9 appends each `client_write` as its own entry and waits for its `fdatasync`
//! before taking the next, so proposals never share a flush. The batcher sits in front of
//! it: it takes one queued proposal, drains whatever else is queued (bounded by count and
//! bytes), proposes them as one entry ([`Payload::Batch`]) and answers each caller with its
//! own response. At most [`IN_FLIGHT`] batches are submitted and unanswered at once; while
//! they are, new proposals queue up and form the next batch.
//!
//! A lock granted in a batch takes the entry's index as its token, so two commands on the
//! same lock key never share a batch: the later one waits for the next
//! ([`take_batch`], pure and unit-tested).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use openraft::error::{ClientWriteError, ForwardToLeader};
use openraft::BasicNode;
use sluice_common::names::LockKey;
use sluice_common::time::Timestamp;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::ProposeError;
use crate::raft::{NodeId, Raft};
use crate::state::{Command, Payload, Request, Response};

/// Batches submitted to Raft and not yet answered, at most. One: the next batch forms while
/// this one commits. On two cores the 32-client lock bench is CPU-bound, and each entry
/// costs its append round trips (about 3.5 RPCs per entry) whatever it holds; with two in
/// flight entries held 3.0 commands instead of 3.4 and throughput was about 10 % lower
/// (BENCHMARKS.md, "Session 10"). A lone command waits for nothing either way.
pub const IN_FLIGHT: usize = 1;

/// The bounds of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Commands in one entry, at most.
    pub count: usize,
    /// Their encoded size, at most (one larger command still goes alone).
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            count: 256,
            bytes: 1024 * 1024,
        }
    }
}

/// What a queued proposal needs the batcher to know.
pub trait Batchable {
    /// The lock key it touches, if any.
    fn key(&self) -> Option<&LockKey>;
    /// Its encoded size in bytes.
    fn size(&self) -> usize;
}

/// Takes the next batch from the front of `queue`, in order: at least one item, at most
/// `limits`; an item whose lock key is already in the batch stays queued (in order) for a
/// later batch, and the items after it may still go.
pub fn take_batch<T: Batchable>(queue: &mut VecDeque<T>, limits: Limits) -> Vec<T> {
    let mut batch = Vec::new();
    let mut keys = BTreeSet::new();
    let mut bytes = 0;
    let mut kept = VecDeque::new();
    while let Some(item) = queue.pop_front() {
        let full = batch.len() >= limits.count
            || (!batch.is_empty() && bytes + item.size() > limits.bytes);
        if full {
            kept.push_back(item);
            break;
        }
        if let Some(k) = item.key() {
            if !keys.insert(k.clone()) {
                kept.push_back(item);
                continue;
            }
        }
        bytes += item.size();
        batch.push(item);
    }
    kept.append(queue);
    *queue = kept;
    batch
}

/// What a proposer gets back from the batcher.
#[derive(Debug)]
pub enum Outcome {
    /// Applied: the command's own answer.
    Done(Response),
    /// This node does not lead: where to go.
    Forward(ForwardToLeader<NodeId, BasicNode>),
    /// It could not be proposed.
    Failed(ProposeError),
}

/// A proposal waiting in the queue.
#[derive(Debug)]
pub struct Queued {
    actor: String,
    cmd: Command,
    key: Option<LockKey>,
    size: usize,
    reply: oneshot::Sender<Outcome>,
}

impl Batchable for Queued {
    fn key(&self) -> Option<&LockKey> {
        self.key.as_ref()
    }
    fn size(&self) -> usize {
        self.size
    }
}

/// What the batcher has had committed on this node (as leader), for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batch entries committed.
    pub batches: AtomicU64,
    /// Commands in them.
    pub commands: AtomicU64,
}

/// The proposers' side: hands commands to the batcher task.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Queued>,
    stats: Arc<Stats>,
}

impl Batcher {
    /// Starts the batcher task for `raft`.
    pub fn spawn(raft: Raft, limits: Limits) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        tokio::spawn(run(raft, rx, limits, stats.clone()));
        Self { tx, stats }
    }

    /// What it has proposed so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queues `cmd` (touching lock `key`) and waits for its answer.
    pub async fn propose(&self, actor: String, cmd: Command, key: Option<LockKey>) -> Outcome {
        let size = serde_json::to_vec(&cmd).map_or(0, |b| b.len()) + actor.len();
        let (reply, rx) = oneshot::channel();
        let q = Queued {
            actor,
            cmd,
            key,
            size,
            reply,
        };
        if self.tx.send(q).is_err() {
            return Outcome::Failed(ProposeError::Fatal("the proposal batcher stopped".into()));
        }
        rx.await.unwrap_or_else(|_| {
            Outcome::Failed(ProposeError::Fatal("the proposal batcher stopped".into()))
        })
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    limits: Limits,
    stats: Arc<Stats>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut queue = VecDeque::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if queue.is_empty() {
            match rx.recv().await {
                Some(q) => queue.push_back(q),
                None => return,
            }
        }
        while let Ok(q) = rx.try_recv() {
            queue.push_back(q);
        }
        let batch = take_batch(&mut queue, limits);
        let at = Timestamp::from_system(SystemTime::now());
        let (reqs, replies): (Vec<Request>, Vec<_>) = batch
            .into_iter()
            .map(|q| {
                let req = Request {
                    at,
                    actor: q.actor,
                    cmd: q.cmd,
                };
                (req, q.reply)
            })
            .unzip();
        // Submitted in order from this one task, so the log holds batches in this order.
        match raft.client_write_ff(Payload::batch(reqs)).await {
            Err(fatal) => {
                answer_all(replies, |_| {
                    Outcome::Failed(ProposeError::Fatal(fatal.to_string()))
                });
            }
            Ok(answer) => {
                let stats = stats.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match answer.await {
                        Ok(Ok(r)) => {
                            stats.batches.fetch_add(1, Ordering::Relaxed);
                            stats
                                .commands
                                .fetch_add(replies.len() as u64, Ordering::Relaxed);
                            let mut data = r.data.into_iter();
                            answer_all(replies, |_| match data.next() {
                                Some(resp) => Outcome::Done(resp),
                                None => Outcome::Failed(ProposeError::Fatal(
                                    "a batch entry gave fewer answers than commands".into(),
                                )),
                            });
                        }
                        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                            answer_all(replies, |_| Outcome::Forward(f.clone()));
                        }
                        Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
                            let e = e.to_string();
                            answer_all(replies, |_| {
                                Outcome::Failed(ProposeError::Unavailable(e.clone()))
                            });
                        }
                        Err(_) => answer_all(replies, |_| {
                            Outcome::Failed(ProposeError::Fatal("Raft stopped".into()))
                        }),
                    }
                });
            }
        }
    }
}

fn answer_all(replies: Vec<oneshot::Sender<Outcome>>, mut f: impl FnMut(usize) -> Outcome) {
    for (i, r) in replies.into_iter().enumerate() {
        // A caller that gave up (timed out) no longer listens: nothing to do.
        let _ = r.send(f(i));
    }
}

#[cfg(test)]
mod tests;
