//! The audit trail's records and its hash chain.
//!
//! Every record carries the SHA-256 of the record before it (`prev_hash`) and its own
//! (`hash`), computed over a canonical JSON encoding of every other field. Changing any
//! field of any record, dropping one or reordering two breaks the chain at that record, and
//! [`verify`] names the first record that does not fit. The chain is built inside the
//! replicated state machine, so every replica holds the same records with the same hashes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

mod archive;

pub use archive::{verify_archived, Boundary, Segment, SegmentError};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as stored, served and exported.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub seq: u64,
    /// The Raft log index of the entry that produced it.
    pub index: u64,
    /// The proposing leader's clock (the replicated, never-decreasing one).
    pub at: Timestamp,
    /// Who: `token:<name>`, `cert:<name>`, `agent:<server>`, `bootstrap-admin` or
    /// `system:<part>` for the coordinator's own decisions.
    pub actor: String,
    /// What, as `resource.verb` (`lock.acquire`, `deployment.rolled_back`).
    pub action: String,
    /// On what (`lock/service/api`, `deployment/<id>`, `server/web-1`).
    pub target: String,
    /// The service concerned, if any (for filtering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `ok`, or why the state machine refused.
    pub outcome: String,
    /// Further facts; secrets are never put here.
    pub details: serde_json::Value,
    /// SHA-256 (hex) of the previous record, [`GENESIS`] for the first.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub prev_hash: String,
    /// SHA-256 (hex) of this record's other fields.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub hash: String,
}

/// The fields a record's hash covers: everything but the hash itself, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    index: u64,
    at: Timestamp,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    service: Option<&'a str>,
    outcome: &'a str,
    details: &'a serde_json::Value,
    prev_hash: &'a str,
}

impl AuditRecord {
    /// The hash this record should carry.
    pub fn compute_hash(&self) -> String {
        let h = Hashed {
            seq: self.seq,
            index: self.index,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            service: self.service.as_deref(),
            outcome: &self.outcome,
            details: &self.details,
            prev_hash: &self.prev_hash,
        };
        let bytes = serde_json::to_vec(&h).expect("audit records always encode");
        hex(&Sha256::digest(&bytes))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What a new record says; [`AuditChain::append`] adds the position and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// See [`AuditRecord::action`].
    pub action: String,
    /// See [`AuditRecord::target`].
    pub target: String,
    /// See [`AuditRecord::service`].
    pub service: Option<String>,
    /// See [`AuditRecord::outcome`].
    pub outcome: String,
    /// See [`AuditRecord::details`].
    pub details: serde_json::Value,
}

impl Entry {
    /// A successful action with no details.
    pub fn ok(action: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            target: target.into(),
            service: None,
            outcome: "ok".into(),
            details: serde_json::Value::Null,
        }
    }

    /// Sets the service.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }
}

/// The chain: the live records, in order, after the [`Boundary`] of what was archived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChain {
    records: Vec<AuditRecord>,
    /// The last archived record; `None` while nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archived: Option<Boundary>,
}

impl AuditChain {
    /// Appends a record and returns it.
    pub fn append(&mut self, index: u64, at: Timestamp, actor: &str, e: Entry) -> &AuditRecord {
        let prev_hash = match (self.records.last(), &self.archived) {
            (Some(r), _) => r.hash.clone(),
            (None, Some(b)) => b.hash.clone(),
            (None, None) => GENESIS.to_string(),
        };
        let mut r = AuditRecord {
            seq: self.len() + 1,
            index,
            at,
            actor: actor.to_string(),
            action: e.action,
            target: e.target,
            service: e.service,
            outcome: e.outcome,
            details: e.details,
            prev_hash,
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        self.records.push(r);
        self.records.last().expect("just pushed")
    }

    /// The live records (those not archived), oldest first.
    pub fn records(&self) -> &[AuditRecord] {
        &self.records
    }

    /// Live records after `seq` (exclusive), oldest first.
    pub fn after(&self, seq: u64) -> &[AuditRecord] {
        let start = usize::try_from(seq.saturating_sub(self.archived_seq()))
            .unwrap_or(usize::MAX)
            .min(self.records.len());
        &self.records[start..]
    }

    /// The number of records ever appended, archived ones included.
    pub fn len(&self) -> u64 {
        self.archived_seq() + self.records.len() as u64
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `GET /v1/audit`: a page of records, oldest first. (Open to new fields, as responses are;
/// a record itself is closed: a field its hash does not cover cannot be verified.)
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Why a sequence of records is not an intact chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The record's content does not match its own hash: it was edited.
    #[error("record {seq}: its content does not match its hash (edited)")]
    Tampered {
        /// The record.
        seq: u64,
    },
    /// The record does not point at the record before it.
    #[error("record {seq}: prev_hash does not match record {prev}'s hash (a record was removed, reordered or replaced)")]
    Broken {
        /// The record.
        seq: u64,
        /// The record before it.
        prev: u64,
    },
    /// Sequence numbers jump.
    #[error("record {seq}: expected sequence number {expected}")]
    Gap {
        /// The record.
        seq: u64,
        /// What it should have been.
        expected: u64,
    },
    /// The first record of a full chain does not start from [`GENESIS`].
    #[error("record {seq}: the first record does not start the chain")]
    BadStart {
        /// The record.
        seq: u64,
    },
}

impl ChainError {
    /// The first record that does not fit.
    pub fn seq(&self) -> u64 {
        match self {
            ChainError::Tampered { seq }
            | ChainError::Broken { seq, .. }
            | ChainError::Gap { seq, .. }
            | ChainError::BadStart { seq } => *seq,
        }
    }
}

/// Checks `records` (a contiguous run, e.g. an export from some sequence number on):
/// each record's hash matches its content and the previous record's hash. When the run
/// starts at sequence 1, it must start from [`GENESIS`]. Returns the number checked.
pub fn verify(records: &[AuditRecord]) -> Result<u64, ChainError> {
    let mut prev: Option<&AuditRecord> = None;
    for r in records {
        match prev {
            None if r.seq == 1 && r.prev_hash != GENESIS => {
                return Err(ChainError::BadStart { seq: r.seq })
            }
            None => {}
            Some(p) if r.seq != p.seq + 1 => {
                return Err(ChainError::Gap {
                    seq: r.seq,
                    expected: p.seq + 1,
                })
            }
            Some(p) if r.prev_hash != p.hash => {
                return Err(ChainError::Broken {
                    seq: r.seq,
                    prev: p.seq,
                })
            }
            Some(_) => {}
        }
        if r.compute_hash() != r.hash {
            return Err(ChainError::Tampered { seq: r.seq });
        }
        prev = Some(r);
    }
    Ok(records.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> AuditChain {
        let mut c = AuditChain::default();
        for i in 1..=n {
            c.append(
                i * 10,
                Timestamp(i * 1000),
                "token:ci",
                Entry::ok("lock.acquire", format!("lock/k{i}"))
                    .service("api")
                    .details(json!({"token": i * 10, "ttl_ms": 30_000})),
            );
        }
        c
    }

    #[test]
    fn an_untouched_chain_verifies_and_links() {
        let c = chain(5);
        assert_eq!(verify(c.records()), Ok(5));
        assert_eq!(c.records()[0].prev_hash, GENESIS);
        for w in c.records().windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        // A suffix verifies on its own, as an export from some sequence number on.
        assert_eq!(verify(c.after(2)), Ok(3));
        assert_eq!(c.after(2)[0].seq, 3);
        assert!(c.after(99).is_empty());
    }

    #[test]
    fn survives_a_json_round_trip_exactly() {
        let c = chain(3);
        let lines: Vec<String> = c
            .records()
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let back: Vec<AuditRecord> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(verify(&back), Ok(3));
        assert_eq!(back, c.records());
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_record() {
        let good = chain(6).records().to_vec();

        let mut edited = good.clone();
        edited[3].actor = "token:someone-else".into();
        assert_eq!(verify(&edited), Err(ChainError::Tampered { seq: 4 }));

        let mut details = good.clone();
        details[2].details = json!({"token": 1});
        assert_eq!(verify(&details).unwrap_err().seq(), 3);

        // Edited and re-hashed: the next record no longer points at it.
        let mut rehashed = good.clone();
        rehashed[1].outcome = "refused".into();
        rehashed[1].hash = rehashed[1].compute_hash();
        assert_eq!(
            verify(&rehashed),
            Err(ChainError::Broken { seq: 3, prev: 2 })
        );

        let mut dropped = good.clone();
        dropped.remove(2);
        assert_eq!(
            verify(&dropped),
            Err(ChainError::Gap {
                seq: 4,
                expected: 3
            })
        );

        let mut swapped = good.clone();
        swapped.swap(0, 1);
        assert!(verify(&swapped).is_err());

        let mut forged_start = good;
        forged_start[0].prev_hash = "ab".repeat(32);
        forged_start[0].hash = forged_start[0].compute_hash();
        assert_eq!(verify(&forged_start), Err(ChainError::BadStart { seq: 1 }));
    }
}
