//! Bounded history: which deployments and `Idempotency-Key`s a prune forgets (pure).
//!
//! Pruning is a command of its own, [`Command::Prune`](crate::state::Command::Prune), that the
//! leader proposes when [`Deployments::prune_due`] says there is something to forget (see
//! `crate::retention`). The entry carries the limits and, as every entry, its time, so every
//! replica forgets exactly the same records whatever its own config file says. Why not prune
//! as each deployment ends: the limits live in each node's config, which can differ between
//! nodes during a rollout (an entry carries one copy), and an age limit or a key's expiry
//! must take effect while nothing else happens.
//!
//! Always kept, whatever the limits: deployments still in flight (anything the sequencer
//! still drives, a rollback included), each service's current deployment (every deployment
//! a server's placement names) and the previous one (the last two successes of the
//! service's history, so a manual rollback of the current one still finds what it
//! restores). An `Idempotency-Key` is forgotten when it expires or when the deployment it
//! names is forgotten.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_common::names::ServiceName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::{Deployments, Meta};

/// The limits a prune applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Deployments kept per service, newest first; `None`: no count limit.
    pub per_service: Option<u32>,
    /// Settled deployments whose last change is older than this are forgotten; `None`: no
    /// age limit.
    pub max_age: Option<Duration>,
    /// An `Idempotency-Key` is forgotten this long after it was first used.
    pub idempotency_ttl: Duration,
}

/// One `Idempotency-Key`'s record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "KeyWire")]
pub struct IdempotencyRecord {
    /// The deployment it created.
    pub deployment: Uuid,
    /// The hash of the body it came with.
    pub body_hash: String,
    /// When it was first used; `None` in a record from before keys expired (a prune stamps
    /// it with its own time, so such a key lives one full expiry after the upgrade).
    pub at: Option<Timestamp>,
}

/// The stored forms: `[id, hash]` before keys expired, the record since.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyWire {
    Record {
        deployment: Uuid,
        body_hash: String,
        #[serde(default)]
        at: Option<Timestamp>,
    },
    Legacy((Uuid, String)),
}

impl From<KeyWire> for IdempotencyRecord {
    fn from(w: KeyWire) -> Self {
        match w {
            KeyWire::Record {
                deployment,
                body_hash,
                at,
            } => Self {
                deployment,
                body_hash,
                at,
            },
            KeyWire::Legacy((deployment, body_hash)) => Self {
                deployment,
                body_hash,
                at: None,
            },
        }
    }
}

impl IdempotencyRecord {
    /// Whether the key has expired at `now` under `ttl`.
    pub fn expired(&self, ttl: Duration, now: Timestamp) -> bool {
        self.at.is_some_and(|at| now.since(at) >= ttl)
    }
}

/// Upper bounds (ms) of the duration buckets kept for forgotten deployments; `/metrics`
/// buckets `sluice_deployment_duration_seconds` by the same bounds.
pub const DURATION_BOUNDS_MS: [u64; 12] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000,
    1_800_000,
];

/// Forgotten deployments of one service and final state: what `sluice_deployments_total`
/// and `sluice_deployment_duration_seconds` still count after their records are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedTally {
    /// How many.
    pub count: u64,
    /// Their durations (acceptance to last change), summed, in ms.
    pub duration_ms: u64,
    /// Per bound of [`DURATION_BOUNDS_MS`], how many took at most that long.
    pub within: Vec<u64>,
}

impl PrunedTally {
    fn add(&mut self, ms: u64) {
        self.count += 1;
        self.duration_ms = self.duration_ms.saturating_add(ms);
        self.within.resize(DURATION_BOUNDS_MS.len(), 0);
        for (n, bound) in self.within.iter_mut().zip(DURATION_BOUNDS_MS) {
            *n += u64::from(ms <= bound);
        }
    }
}

/// Per service and final state, the deployments forgotten.
pub type PrunedCounts = BTreeMap<ServiceName, BTreeMap<String, PrunedTally>>;

/// What one prune forgot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneSummary {
    /// Deployments forgotten.
    pub deployments: u64,
    /// Keys forgotten.
    pub idempotency_keys: u64,
}

impl Deployments {
    /// Whether deployment `id` is kept whatever the limits: in flight, or its service's
    /// current or previous deployment.
    fn protected(&self, id: Uuid, m: &Meta) -> bool {
        if m.in_flight {
            return true;
        }
        let Some(rec) = self.services.get(&m.service) else {
            return false;
        };
        rec.history.iter().rev().take(2).any(|x| *x == id)
            || rec.servers.values().any(|p| p.deployment == id)
    }

    /// The deployments of `service` that `r` forgets at `now`, oldest first.
    fn prunable_of(&self, service: &ServiceName, r: &Retention, now: Timestamp) -> Vec<Uuid> {
        let Some(ids) = self.index.by_service.get(service) else {
            return Vec::new();
        };
        let keep = r.per_service.map_or(usize::MAX, |n| n as usize);
        ids.iter()
            .rev()
            .enumerate()
            .filter_map(|(rank, (_, id))| {
                let m = self.all.meta(id)?;
                let too_old = r.max_age.is_some_and(|a| now.since(m.updated_at) > a);
                ((rank >= keep || too_old) && !self.protected(*id, &m)).then_some(*id)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }

    /// Every deployment `r` forgets at `now`.
    fn prunable(&self, r: &Retention, now: Timestamp) -> Vec<Uuid> {
        self.index
            .by_service
            .keys()
            .flat_map(|s| self.prunable_of(s, r, now))
            .collect()
    }

    /// Whether a prune under `r` at `now` would change anything (the leader proposes one
    /// only then): a deployment or a key to forget, a key to stamp, or other limits than
    /// the ones last applied.
    pub fn prune_due(&self, r: &Retention, now: Timestamp) -> bool {
        self.retention.as_ref() != Some(r)
            || self
                .idempotency
                .values()
                .any(|k| k.at.is_none() || k.expired(r.idempotency_ttl, now))
            || !self.prunable(r, now).is_empty()
    }

    /// Forgets what `r` says is old at `now`, keeps every index in step, and remembers `r`
    /// (a key is refused as expired from then on even between prunes).
    pub fn prune(&mut self, r: &Retention, now: Timestamp) -> PruneSummary {
        self.retention = Some(*r);
        let gone: BTreeSet<Uuid> = self.prunable(r, now).into_iter().collect();
        for id in &gone {
            let Some(d) = self.all.remove(id) else {
                continue;
            };
            let service = d.service.clone();
            let took =
                u64::try_from(d.updated_at.since(d.created_at).as_millis()).unwrap_or(u64::MAX);
            self.pruned
                .entry(service.clone())
                .or_default()
                .entry(d.state.as_str().to_string())
                .or_default()
                .add(took);
            if let Some(set) = self.index.by_service.get_mut(&service) {
                set.remove(&(d.seq, *id));
                if set.is_empty() {
                    self.index.by_service.remove(&service);
                }
            }
            self.index.in_flight.remove(id);
            if let Some(rec) = self.services.get_mut(&service) {
                rec.history.retain(|x| x != id);
            }
        }
        let before = self.idempotency.len();
        self.idempotency
            .retain(|_, k| !gone.contains(&k.deployment) && !k.expired(r.idempotency_ttl, now));
        let keys = (before - self.idempotency.len()) as u64;
        for k in self.idempotency.values_mut() {
            k.at.get_or_insert(now);
        }
        PruneSummary {
            deployments: gone.len() as u64,
            idempotency_keys: keys,
        }
    }
}

#[cfg(test)]
mod tests;
