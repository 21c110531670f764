//! Checkpoints: the oldest records leave the live chain (and so the Raft state and every
//! snapshot) for archive segments, JSON lines kept beside each node's data. The live chain
//! keeps the [`Boundary`]: the sequence number and hash of the last archived record, so its
//! first live record still links to the archive and sequence numbers go on without a gap.
//!
//! Pure: which records a checkpoint archives, the bookkeeping, and the verification of
//! archive plus live chain. Writing and reading the files is the coordinator's.

use serde::{Deserialize, Serialize};

use super::{verify, AuditChain, AuditRecord, ChainError};

/// The last archived record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boundary {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash: the `prev_hash` of the first live record.
    pub hash: String,
}

impl AuditChain {
    /// The last archived record, if any was.
    pub fn archived(&self) -> Option<&Boundary> {
        self.archived.as_ref()
    }

    /// The sequence number of the last archived record (0: none).
    pub fn archived_seq(&self) -> u64 {
        self.archived.as_ref().map_or(0, |b| b.seq)
    }

    /// The live records a checkpoint up to `upto` archives (sequence numbers up to `upto`).
    pub fn segment(&self, upto: u64) -> &[AuditRecord] {
        let n = usize::try_from(upto.saturating_sub(self.archived_seq()))
            .unwrap_or(usize::MAX)
            .min(self.records.len());
        &self.records[..n]
    }

    /// The checkpoint due so that at most `keep_live` records stay live, archiving at least
    /// `min_segment` at once (fewer, larger files): `Some(upto)`, or `None`.
    pub fn checkpoint_due(&self, keep_live: u64, min_segment: u64) -> Option<u64> {
        let live = self.records.len() as u64;
        let excess = live.checked_sub(keep_live)?;
        (excess >= min_segment.max(1)).then(|| self.archived_seq() + excess)
    }

    /// Drops the live records up to `upto` (the caller archived [`Self::segment`] first) and
    /// moves the boundary. Returns how many were dropped; a checkpoint at or behind the
    /// boundary drops nothing.
    pub fn checkpoint(&mut self, upto: u64) -> u64 {
        let n = self.segment(upto).len();
        let Some(last) = self.records.get(n.wrapping_sub(1)).filter(|_| n > 0) else {
            return 0;
        };
        self.archived = Some(Boundary {
            seq: last.seq,
            hash: last.hash.clone(),
        });
        self.records.drain(..n);
        n as u64
    }
}

/// One archive file's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The file's name, as an error names it.
    pub name: String,
    /// Its records.
    pub records: Vec<AuditRecord>,
}

/// Where a chain of archive and live records breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {error}", file.as_deref().unwrap_or("the live chain"))]
pub struct SegmentError {
    /// The archive file holding the first record that does not fit; `None`: the live chain.
    pub file: Option<String>,
    /// What is wrong.
    pub error: ChainError,
}

/// Checks the whole chain: the archive `segments` in order, then the `live` records. It
/// must start at record 1 from the genesis hash and go on without a gap, each record
/// matching its hash and linking to the one before, across files and into the live chain.
/// Returns the number checked; an error names the file (or the live chain) and the record.
pub fn verify_archived(segments: &[Segment], live: &[AuditRecord]) -> Result<u64, SegmentError> {
    let mut all: Vec<AuditRecord> = Vec::new();
    for s in segments {
        all.extend(s.records.iter().cloned());
    }
    all.extend(live.iter().cloned());
    // Which file the record at `pos` came from (`None`: the live chain).
    let file_of = |pos: usize| -> Option<String> {
        let mut offset = 0;
        for s in segments {
            if pos < offset + s.records.len() {
                return Some(s.name.clone());
            }
            offset += s.records.len();
        }
        None
    };
    let position = |e: &ChainError| all.iter().position(|r| r.seq == e.seq()).unwrap_or(0);
    if let Some(first) = all.first().filter(|r| r.seq != 1) {
        return Err(SegmentError {
            file: file_of(0),
            error: ChainError::Gap {
                seq: first.seq,
                expected: 1,
            },
        });
    }
    verify(&all).map_err(|error| SegmentError {
        file: file_of(position(&error)),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Entry, GENESIS};
    use super::*;
    use crate::time::Timestamp;

    fn chain(n: u64) -> AuditChain {
        let mut c = AuditChain::default();
        for i in 1..=n {
            c.append(
                i,
                Timestamp(i),
                "token:ci",
                Entry::ok("lock.acquire", "lock/k"),
            );
        }
        c
    }

    #[test]
    fn a_checkpoint_keeps_numbering_and_linking_across_the_boundary() {
        let mut c = chain(10);
        let whole = c.records().to_vec();
        assert_eq!(c.checkpoint_due(4, 5), Some(6));
        assert_eq!(c.checkpoint_due(4, 7), None);
        let seg = Segment {
            name: "a.jsonl".into(),
            records: c.segment(6).to_vec(),
        };
        assert_eq!(c.checkpoint(6), 6);
        assert_eq!(c.checkpoint(6), 0, "again: nothing");
        assert_eq!(c.len(), 10);
        assert_eq!(c.records().len(), 4);
        assert_eq!(c.after(7)[0].seq, 8);
        assert_eq!(c.after(2)[0].seq, 7);
        assert_eq!(c.archived().unwrap().hash, whole[5].hash);
        let r = c
            .append(11, Timestamp(11), "t", Entry::ok("x", "y"))
            .clone();
        assert_eq!(r.seq, 11);
        // The live part verifies alone (a suffix), and with the archive as a whole.
        assert_eq!(verify(c.records()), Ok(5));
        assert_eq!(
            verify_archived(std::slice::from_ref(&seg), c.records()),
            Ok(11)
        );
        // Everything archived: the next record links to the boundary.
        let mut d = chain(3);
        d.checkpoint(3);
        let boundary = d.archived().unwrap().hash.clone();
        let r = d.append(4, Timestamp(4), "t", Entry::ok("x", "y"));
        assert_eq!((r.seq, &r.prev_hash), (4, &boundary));
        assert_ne!(r.prev_hash, GENESIS);
    }

    #[test]
    fn a_hand_edited_segment_is_named_with_its_record() {
        let mut c = chain(9);
        let a = Segment {
            name: "000001-000003.jsonl".into(),
            records: c.segment(3).to_vec(),
        };
        c.checkpoint(3);
        let b = Segment {
            name: "000004-000006.jsonl".into(),
            records: c.segment(6).to_vec(),
        };
        c.checkpoint(6);
        let mut edited = b.clone();
        edited.records[1].actor = "token:mallory".into();
        let e = verify_archived(&[a.clone(), edited], c.records()).unwrap_err();
        assert_eq!(e.file.as_deref(), Some("000004-000006.jsonl"));
        assert_eq!(e.error, ChainError::Tampered { seq: 5 });
        assert!(
            e.to_string().starts_with("000004-000006.jsonl: record 5"),
            "{e}"
        );
        // A missing first segment, or a missing middle one.
        let e = verify_archived(std::slice::from_ref(&b), c.records()).unwrap_err();
        assert_eq!(
            e.error,
            ChainError::Gap {
                seq: 4,
                expected: 1
            }
        );
        let e = verify_archived(std::slice::from_ref(&a), c.records()).unwrap_err();
        assert_eq!((e.file, e.error.seq()), (None, 7));
        // Edited and re-hashed: the next record (in the live chain) no longer links.
        let mut rehashed = b;
        rehashed.records[2].outcome = "refused".into();
        rehashed.records[2].hash = rehashed.records[2].compute_hash();
        let e = verify_archived(&[a, rehashed], c.records()).unwrap_err();
        assert_eq!(e.error, ChainError::Broken { seq: 7, prev: 6 });
        assert_eq!(e.file, None);
    }

    #[test]
    fn a_chain_from_before_checkpoints_decodes() {
        let c = chain(2);
        let mut v = serde_json::to_value(&c).unwrap();
        assert!(v.get("archived").is_none());
        v.as_object_mut().unwrap().remove("archived");
        let back: AuditChain = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.archived_seq(), 0);
    }
}
