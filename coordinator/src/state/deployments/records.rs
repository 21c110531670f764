//! The deployment records kept: the ones the sequencer may still drive whole, settled ones
//! as a few searchable fields plus their JSON, deflate-compressed.
//!
//! A settled deployment never changes again unless a command thaws it (a manual rollback,
//! a resealed secret), so it does not need to live as a tree of allocations: whole, a
//! record of the thousand-agent bench took about 5 KB of heap, compressed about 0.8 KB.
//! This is a representation only, chosen by each replica for itself: every replica applies
//! the same entries to the same records, and a snapshot holds each record's plain JSON, as
//! before, so nodes with and without it agree byte for byte on what a snapshot means.
//!
//! What scans every record (the indexes, retention, metrics, the list endpoint) reads the
//! [`Meta`] fields and decodes nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use sluice_common::deployment::DeploymentState;
use sluice_common::names::ServiceName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::deflate::deflate;
use super::Deployment;

/// Whether the sequencer may still have work on `d` (kept whole while it may).
pub(super) fn in_flight(d: &Deployment) -> bool {
    d.needs_driving() || d.state().is_active() || d.lifecycle.rollback_requested()
}

/// What scans of every record read, without decoding one.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub seq: u64,
    pub service: ServiceName,
    pub state: DeploymentState,
    /// Whether the sequencer may still have work on it.
    pub in_flight: bool,
    /// Whether it is being driven (what the in-flight gauge counts).
    pub needs_driving: bool,
    /// Whether its request holds a secret env value (the resealer reads only those).
    pub secret_env: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Meta {
    fn of(d: &Deployment) -> Self {
        Self {
            seq: d.seq,
            service: d.request.service.clone(),
            state: d.state(),
            in_flight: in_flight(d),
            needs_driving: d.needs_driving(),
            secret_env: d.request.env.values().any(|v| v.secret),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Clone)]
enum Slot {
    Live(Box<Deployment>),
    /// Shared, so cloning the state for a snapshot copies a pointer.
    Settled {
        meta: Meta,
        json: Arc<[u8]>,
    },
}

/// One record and the version it has in this process.
#[derive(Debug, Clone)]
struct Kept {
    slot: Slot,
    version: u64,
}

/// Every deployment kept, by id.
#[derive(Debug, Clone, Default)]
pub struct Records {
    map: BTreeMap<Uuid, Kept>,
}

/// Versions come from one counter for the whole process, so a record's version changes
/// whenever it may have, even across a state replaced by a snapshot.
fn next_version() -> u64 {
    static CLOCK: AtomicU64 = AtomicU64::new(1);
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

/// The deflated compact JSON of `d`.
fn freeze(d: &Deployment) -> Arc<[u8]> {
    deflate(&serde_json::to_vec(d).expect("a deployment serializes")).into()
}

/// The JSON text of a settled record.
fn inflate(json: &[u8]) -> Vec<u8> {
    super::deflate::inflate(json).expect("a record this process compressed inflates")
}

fn thaw(json: &[u8]) -> Deployment {
    serde_json::from_slice(&inflate(json)).expect("a record this process encoded decodes")
}

/// The searchable fields of `slot`.
fn meta_of(slot: &Slot) -> Cow<'_, Meta> {
    match slot {
        Slot::Live(d) => Cow::Owned(Meta::of(d)),
        Slot::Settled { meta, .. } => Cow::Borrowed(meta),
    }
}

impl Records {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains_key(&self, id: &Uuid) -> bool {
        self.map.contains_key(id)
    }

    /// Deployment `id`, decoded if it is settled.
    pub fn get(&self, id: &Uuid) -> Option<Cow<'_, Deployment>> {
        Some(match &self.map.get(id)?.slot {
            Slot::Live(d) => Cow::Borrowed(&**d),
            Slot::Settled { json, .. } => Cow::Owned(thaw(json)),
        })
    }

    /// Deployment `id` if it is kept whole (every one in flight is).
    pub fn live(&self, id: &Uuid) -> Option<&Deployment> {
        match &self.map.get(id)?.slot {
            Slot::Live(d) => Some(d),
            Slot::Settled { .. } => None,
        }
    }

    /// The searchable fields of deployment `id`.
    pub fn meta(&self, id: &Uuid) -> Option<Cow<'_, Meta>> {
        self.map.get(id).map(|k| meta_of(&k.slot))
    }

    /// A number that changes (in this process) whenever deployment `id` may have: what
    /// a watcher compares before it looks at the record again.
    pub fn version(&self, id: &Uuid) -> Option<u64> {
        self.map.get(id).map(|k| k.version)
    }

    /// What the indexes key deployment `id` by: its service, seq and whether it is in
    /// flight (borrowed, whichever way it is kept).
    pub fn index_key(&self, id: &Uuid) -> Option<(&ServiceName, u64, bool)> {
        Some(match &self.map.get(id)?.slot {
            Slot::Live(d) => (&d.request.service, d.seq, in_flight(d)),
            Slot::Settled { meta, .. } => (&meta.service, meta.seq, meta.in_flight),
        })
    }

    /// Every record's searchable fields, by id.
    pub fn metas(&self) -> impl Iterator<Item = (Uuid, Cow<'_, Meta>)> + '_ {
        self.map.iter().map(|(id, k)| (*id, meta_of(&k.slot)))
    }

    /// Every id kept, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Uuid> + '_ {
        self.map.keys()
    }

    /// Every record with its id, decoded (tests and rare whole-history reads only).
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, Cow<'_, Deployment>)> + '_ {
        self.map.keys().filter_map(|id| Some((id, self.get(id)?)))
    }

    /// Every record, decoded (tests and rare whole-history reads only).
    pub fn values(&self) -> impl Iterator<Item = Cow<'_, Deployment>> + '_ {
        self.map.keys().filter_map(|id| self.get(id))
    }

    /// Deployment `id` to change; a settled one is decoded and kept whole until
    /// [`Records::settle`].
    pub fn get_mut(&mut self, id: &Uuid) -> Option<&mut Deployment> {
        let kept = self.map.get_mut(id)?;
        kept.version = next_version();
        let slot = &mut kept.slot;
        if let Slot::Settled { json, .. } = slot {
            *slot = Slot::Live(Box::new(thaw(json)));
        }
        match slot {
            Slot::Live(d) => Some(d),
            Slot::Settled { .. } => unreachable!("thawed above"),
        }
    }

    pub fn insert(&mut self, d: Deployment) {
        let id = d.id;
        let kept = Kept {
            slot: Slot::Live(Box::new(d)),
            version: next_version(),
        };
        self.map.insert(id, kept);
        self.settle(&id);
    }

    /// Forgets deployment `id`, returning its searchable fields.
    pub fn remove(&mut self, id: &Uuid) -> Option<Meta> {
        Some(match self.map.remove(id)?.slot {
            Slot::Live(d) => Meta::of(&d),
            Slot::Settled { meta, .. } => meta,
        })
    }

    /// Compresses deployment `id` if nothing is left to drive on it.
    pub fn settle(&mut self, id: &Uuid) {
        let Some(Kept { slot, .. }) = self.map.get_mut(id) else {
            return;
        };
        if let Slot::Live(d) = slot {
            if !in_flight(d) {
                *slot = Slot::Settled {
                    meta: Meta::of(d),
                    json: freeze(d),
                };
            }
        }
    }
}

/// Two record sets are equal when they hold the same deployments, however each is kept.
impl PartialEq for Records {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .map
                .keys()
                .zip(other.map.keys())
                .all(|(a, b)| a == b && self.get(a) == other.get(b))
    }
}

/// As a map of id → the deployment's JSON, as it always was (a settled record's JSON is
/// written as it was compressed).
impl Serialize for Records {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.map.len()))?;
        for (id, kept) in &self.map {
            match &kept.slot {
                Slot::Live(d) => m.serialize_entry(id, d)?,
                Slot::Settled { json, .. } => {
                    let text = String::from_utf8(inflate(json)).map_err(S::Error::custom)?;
                    let raw = RawValue::from_string(text).map_err(S::Error::custom)?;
                    m.serialize_entry(id, &raw)?;
                }
            }
        }
        m.end()
    }
}

/// Each record is decoded whole (a snapshot with a bad one is refused), then the settled
/// ones are compressed from the text they came in, one record at a time.
impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(RecordsVisitor)
    }
}

struct RecordsVisitor;

impl<'de> Visitor<'de> for RecordsVisitor {
    type Value = Records;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of deployment id to deployment")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Records, A::Error> {
        let mut map = BTreeMap::new();
        while let Some((id, text)) = entries.next_entry::<Uuid, Box<RawValue>>()? {
            let d: Deployment = serde_json::from_str(text.get())
                .map_err(|e| A::Error::custom(format!("deployment {id}: {e}")))?;
            let slot = if in_flight(&d) {
                Slot::Live(Box::new(d))
            } else {
                Slot::Settled {
                    meta: Meta::of(&d),
                    json: deflate(text.get().as_bytes()).into(),
                }
            };
            let version = next_version();
            map.insert(id, Kept { slot, version });
        }
        Ok(Records { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(state: &str) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(), "seq": 7,
            "request": {"service": "api", "image": "app:v1", "servers": ["web-1"],
                        "container_port": 8080, "health": {"kind": "tcp"},
                        "env": {"TOKEN": {"value": "sealed", "secret": true}}},
            "targets": ["web-1"],
            "lifecycle": {"state": state, "noop": false, "rollback": "none",
                          "cancel_requested": false},
            "phase": "done", "token": 3, "transitions": [], "validation": [],
            "servers": {}, "failure": null, "actor": "ci",
            "created_at": "2026-12-07T10:00:00Z", "updated_at": "2026-12-07T10:00:05Z"
        }))
        .expect("a deployment")
    }

    #[test]
    fn settled_records_are_compressed_and_read_back_the_same() {
        let mut r = Records::default();
        let done = deployment("success");
        let running = deployment("in_progress");
        r.insert(done.clone());
        r.insert(running.clone());
        assert!(r.live(&done.id).is_none(), "a settled record is compressed");
        assert!(r.live(&running.id).is_some(), "one in flight stays whole");
        assert_eq!(r.get(&done.id).unwrap().as_ref(), &done);
        let m = r.meta(&done.id).unwrap();
        assert_eq!(
            (m.seq, m.state, m.in_flight),
            (7, DeploymentState::Success, false)
        );
        assert!(m.secret_env);
        assert_eq!(m.updated_at, done.updated_at);

        // A change thaws it; settling compresses it again.
        r.get_mut(&done.id).unwrap().failure = Some("edited".into());
        assert!(r.live(&done.id).is_some());
        r.settle(&done.id);
        assert!(r.live(&done.id).is_none());
        assert_eq!(r.get(&done.id).unwrap().failure.as_deref(), Some("edited"));
    }

    #[test]
    fn a_record_that_inflates_far_past_its_compressed_size_reads_back() {
        let mut r = Records::default();
        let mut d = deployment("failed");
        d.failure = Some("x".repeat(20_000));
        r.insert(d.clone());
        assert!(r.live(&d.id).is_none());
        assert_eq!(r.get(&d.id).unwrap().as_ref(), &d);
        let text = serde_json::to_string(&r).unwrap();
        let back: Records = serde_json::from_str(&text).unwrap();
        assert_eq!(back.get(&d.id).unwrap().as_ref(), &d);
    }

    #[test]
    fn the_version_moves_on_every_change_and_only_then() {
        let mut r = Records::default();
        let d = deployment("in_progress");
        r.insert(d.clone());
        let v0 = r.version(&d.id).unwrap();
        let _ = r.get(&d.id);
        let _ = r.meta(&d.id);
        assert_eq!(r.version(&d.id), Some(v0), "reads leave it");
        r.get_mut(&d.id).unwrap().failure = Some("x".into());
        let v1 = r.version(&d.id).unwrap();
        assert_ne!(v1, v0);
        // A state rebuilt from a snapshot never reuses a version a watcher saw.
        let back: Records = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(back.version(&d.id).unwrap() > v1);
        assert_eq!(r.version(&Uuid::new_v4()), None);
    }

    #[test]
    fn a_snapshot_holds_plain_records_and_reads_back_equal() {
        let mut r = Records::default();
        for s in ["success", "failed", "rolled_back", "validating"] {
            r.insert(deployment(s));
        }
        let text = serde_json::to_string(&r).unwrap();
        // Plain JSON records, as a node without compression writes and reads them.
        let plain: BTreeMap<Uuid, Deployment> = serde_json::from_str(&text).unwrap();
        assert_eq!(plain.len(), 4);
        let back: Records = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.metas().filter(|(_, m)| m.in_flight).count(), 1);
        // A damaged record refuses the whole set.
        let bad = text.replacen("\"seq\":7", "\"seq\":\"x\"", 1);
        assert!(serde_json::from_str::<Records>(&bad).is_err());
    }
}
