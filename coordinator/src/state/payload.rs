//! What one Raft entry carries: one request, or a batch of them (group commit).
//!
//! Format 1 (every release before group commit) is a bare [`Request`]. Format 2 is a
//! [`Batch`]: `{"batch":2,"reqs":[…]}`, the requests a leader's proposal batcher took from
//! its queue at once; they apply in order at the entry's log index, each with its own
//! answer. A lock granted inside a batch takes that index as its token, so the batcher never
//! puts two commands on the same lock key into one batch ([`State::lock_touched`]).
//!
//! A node that reads format 1 only refuses a batch (it lacks `at` and `cmd`) rather than
//! misreading it, and this node refuses any batch format other than 2 by name.

use serde::{Deserialize, Serialize};
use sluice_common::names::LockKey;

use super::deployments::DeploymentCommand;
use super::{Command, Request, Response, State};

/// The batch format this node writes and reads.
pub const BATCH_FORMAT: u32 = 2;

/// One Raft entry's application data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, try_from = "Wire")]
pub enum Payload {
    /// Format 2: many requests, applied in order at one index.
    Batch(Batch),
    /// Format 1: one request.
    One(Request),
}

/// Requests proposed together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Always [`BATCH_FORMAT`].
    pub batch: u32,
    /// The requests, in the order they apply.
    pub reqs: Vec<Request>,
}

impl Payload {
    /// A batch of `reqs` in this node's format.
    pub fn batch(reqs: Vec<Request>) -> Self {
        Payload::Batch(Batch {
            batch: BATCH_FORMAT,
            reqs,
        })
    }

    /// The requests it carries, in the order they apply.
    pub fn requests(&self) -> &[Request] {
        match self {
            Payload::Batch(b) => &b.reqs,
            Payload::One(r) => std::slice::from_ref(r),
        }
    }

    /// How many requests it carries.
    pub fn len(&self) -> usize {
        self.requests().len()
    }

    /// Whether it carries none (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every field either format may hold, so a refusal can say what is wrong.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    batch: Option<u32>,
    reqs: Option<Vec<Request>>,
    at: Option<sluice_common::time::Timestamp>,
    #[serde(default)]
    actor: String,
    cmd: Option<Command>,
}

impl TryFrom<Wire> for Payload {
    type Error = String;

    fn try_from(w: Wire) -> Result<Self, String> {
        match (w.batch, w.reqs, w.at, w.cmd) {
            (Some(BATCH_FORMAT), Some(reqs), None, None) => Ok(Payload::batch(reqs)),
            (Some(v), _, None, None) => Err(format!(
                "a Raft entry in batch format {v}: this node reads format {BATCH_FORMAT} \
                 (upgrade it before the cluster writes newer entries)"
            )),
            (None, None, Some(at), Some(cmd)) => Ok(Payload::One(Request {
                at,
                actor: w.actor,
                cmd,
            })),
            _ => Err("a Raft entry is neither one request nor a batch".into()),
        }
    }
}

impl State {
    /// Applies every request `p` carries at log index `index`, in order: one answer each.
    pub fn apply_payload(&mut self, p: &Payload, index: u64) -> Vec<Response> {
        p.requests().iter().map(|r| self.apply(r, index)).collect()
    }

    /// The lock key `cmd` may grant, renew, release or flag: two such commands on one key
    /// never share an entry (a grant's token is the entry's index).
    pub fn lock_touched(&self, cmd: &Command) -> Option<LockKey> {
        match cmd {
            Command::AcquireLock { acquire } => Some(acquire.key.clone()),
            Command::RenewLock { key, .. }
            | Command::ReleaseLock { key, .. }
            | Command::FlagLock { key, .. } => Some(key.clone()),
            Command::Deployment { cmd } => match cmd {
                DeploymentCommand::Create { request, .. } => {
                    Some(LockKey::for_service(&request.service))
                }
                other => self.deployments.all.get(&other.id()).map(|d| d.lock_key()),
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
