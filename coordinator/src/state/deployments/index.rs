//! The derived indexes over [`Deployments::all`]: by service (newest last) and in flight.
//!
//! They are not in snapshots: a snapshot holds the records, and loading one rebuilds the
//! indexes from them ([`Stored`]), so an index can never disagree with a snapshot. While
//! entries apply, [`Deployments::reindex`] keeps them in step with the one deployment each
//! command touches, and a prune removes what it forgets.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sluice_common::names::ServiceName;
use uuid::Uuid;

use super::{Deployment, Deployments, IdempotencyRecord, PrunedCounts, Retention, ServiceRecord};

/// The indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Index {
    /// Per service, `(seq, id)` of each deployment kept.
    pub by_service: BTreeMap<ServiceName, BTreeSet<(u64, Uuid)>>,
    /// Deployments the sequencer may still drive.
    pub in_flight: BTreeSet<Uuid>,
}

/// Whether the sequencer may still have work on `d`.
fn in_flight(d: &Deployment) -> bool {
    d.needs_driving() || d.state().is_active() || d.lifecycle.rollback_requested()
}

/// [`Deployments`] as stored in a snapshot.
#[derive(Deserialize)]
pub(super) struct Stored {
    all: BTreeMap<Uuid, Deployment>,
    idempotency: BTreeMap<String, IdempotencyRecord>,
    services: BTreeMap<ServiceName, ServiceRecord>,
    next_seq: u64,
    #[serde(default)]
    retention: Option<Retention>,
    #[serde(default)]
    pruned: PrunedCounts,
}

impl From<Stored> for Deployments {
    fn from(s: Stored) -> Self {
        let mut d = Deployments {
            all: s.all,
            idempotency: s.idempotency,
            services: s.services,
            next_seq: s.next_seq,
            retention: s.retention,
            pruned: s.pruned,
            index: Index::default(),
        };
        let ids: Vec<Uuid> = d.all.keys().copied().collect();
        for id in ids {
            d.reindex(id);
        }
        d
    }
}

impl Deployments {
    /// Brings the indexes in step with deployment `id` after a command touched it.
    pub(super) fn reindex(&mut self, id: Uuid) {
        match self.all.get(&id) {
            Some(d) => {
                self.index
                    .by_service
                    .entry(d.request.service.clone())
                    .or_default()
                    .insert((d.seq, d.id));
                if in_flight(d) {
                    self.index.in_flight.insert(id);
                } else {
                    self.index.in_flight.remove(&id);
                }
            }
            None => {
                self.index.in_flight.remove(&id);
            }
        }
    }

    /// Whether the indexes hold exactly what the records say (for tests).
    #[cfg(test)]
    pub(super) fn indexes_consistent(&self) -> bool {
        let mut rebuilt = Index::default();
        for d in self.all.values() {
            rebuilt
                .by_service
                .entry(d.request.service.clone())
                .or_default()
                .insert((d.seq, d.id));
            if in_flight(d) {
                rebuilt.in_flight.insert(d.id);
            }
        }
        rebuilt == self.index
    }
}
