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

use super::{Deployments, IdempotencyRecord, PrunedCounts, Records, Retention, ServiceRecord};

/// The indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Index {
    /// Per service, `(seq, id)` of each deployment kept.
    pub by_service: BTreeMap<ServiceName, BTreeSet<(u64, Uuid)>>,
    /// Deployments the sequencer may still drive.
    pub in_flight: BTreeSet<Uuid>,
}

/// [`Deployments`] as stored in a snapshot.
#[derive(Deserialize)]
pub(super) struct Stored {
    all: Records,
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
        let ids: Vec<Uuid> = d.all.metas().map(|(id, _)| id).collect();
        for id in ids {
            d.reindex(id);
        }
        d
    }
}

impl Deployments {
    /// Brings the indexes in step with deployment `id` after a command touched it, and
    /// compresses it if it settled.
    pub(super) fn reindex(&mut self, id: Uuid) {
        self.all.settle(&id);
        let Some((service, seq, in_flight)) = self.all.index_key(&id) else {
            self.index.in_flight.remove(&id);
            return;
        };
        match self.index.by_service.get_mut(service) {
            Some(ids) => {
                ids.insert((seq, id));
            }
            None => {
                let service = service.clone();
                self.index
                    .by_service
                    .insert(service, BTreeSet::from([(seq, id)]));
            }
        }
        if in_flight {
            self.index.in_flight.insert(id);
        } else {
            self.index.in_flight.remove(&id);
        }
    }

    /// Whether the indexes hold exactly what the records say (for tests).
    #[cfg(test)]
    pub(super) fn indexes_consistent(&self) -> bool {
        let mut rebuilt = Index::default();
        for (id, m) in self.all.metas() {
            rebuilt
                .by_service
                .entry(m.service.clone())
                .or_default()
                .insert((m.seq, id));
            if m.in_flight {
                rebuilt.in_flight.insert(id);
            }
        }
        rebuilt == self.index
    }
}
