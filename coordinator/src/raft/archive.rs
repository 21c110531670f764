//! The audit archive on this node's disk: the I/O half of a checkpoint.
//!
//! What a checkpoint archives and the boundary it leaves are decided in the pure state
//! (`sluice_common::audit::AuditChain::segment`/`checkpoint`). Here, when a
//! [`Command::CheckpointAudit`] entry is about to apply, the records it drops are written to
//! `<data_dir>/audit-archive/<first>-<last>.jsonl` and made durable (file and directory
//! fsynced) before the state drops them; a failure stops the apply, so a record never
//! leaves the state without being on disk. Every node writes its own copy as it applies the
//! entry. The names sort by sequence number; a file already there is the same entry applied
//! again (a log replay after a restart: the same records), and is left as it is.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use sluice_common::audit::{AuditRecord, Segment};

use crate::state::{Command, Request, State};

/// The archive directory beside the Raft store in `raft_dir`.
pub fn dir_for(raft_dir: &Path) -> PathBuf {
    match raft_dir.parent() {
        Some(p) => p.join("audit-archive"),
        None => raft_dir.join("audit-archive"),
    }
}

fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.jsonl")
}

/// Before `req` applies to `state`: writes the segment a checkpoint drops.
pub fn before_apply(dir: &Path, state: &State, req: &Request) -> std::io::Result<()> {
    let Command::CheckpointAudit { upto } = &req.cmd else {
        return Ok(());
    };
    write_segment(dir, state.audit.segment(*upto))
}

/// Writes `records` as one segment file, durably; nothing for none.
pub fn write_segment(dir: &Path, records: &[AuditRecord]) -> std::io::Result<()> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file_name(first.seq, last.seq));
    if path.exists() {
        return Ok(());
    }
    let tmp = dir.join(format!(".{}.tmp", file_name(first.seq, last.seq)));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for r in records {
            serde_json::to_writer(&mut f, r)?;
            f.write_all(b"\n")?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Why the archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file or the directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an audit record.
    #[error("{file} line {line}: not an audit record: {reason}")]
    Record {
        /// The file's name.
        file: String,
        /// The line, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// Every segment in `dir`, in sequence order (an absent directory: none).
pub fn read_segments(dir: &Path) -> Result<Vec<Segment>, ReadError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReadError::Io { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        let name = e
            .map_err(io(dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".jsonl") && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let f = std::io::BufReader::new(std::fs::File::open(&path).map_err(io(&path))?);
        let mut records = Vec::new();
        for (i, line) in f.lines().enumerate() {
            let line = line.map_err(io(&path))?;
            if line.trim().is_empty() {
                continue;
            }
            let r = serde_json::from_str(&line).map_err(|e| ReadError::Record {
                file: name.clone(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            records.push(r);
        }
        out.push(Segment { name, records });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::audit::{verify_archived, AuditChain, Entry};
    use sluice_common::time::Timestamp;

    #[test]
    fn segments_written_read_back_and_verified_with_the_live_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AuditChain::default();
        for i in 1..=7 {
            c.append(i, Timestamp(i), "t", Entry::ok("x", "y"));
        }
        write_segment(dir.path(), c.segment(3)).unwrap();
        c.checkpoint(3);
        write_segment(dir.path(), c.segment(5)).unwrap();
        // Again (a replay): left as it is.
        write_segment(dir.path(), c.segment(5)).unwrap();
        c.checkpoint(5);
        let segs = read_segments(dir.path()).unwrap();
        let names: Vec<&str> = segs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "00000000000000000001-00000000000000000003.jsonl",
                "00000000000000000004-00000000000000000005.jsonl"
            ]
        );
        assert_eq!(verify_archived(&segs, c.records()), Ok(7));
        assert!(read_segments(&dir.path().join("absent"))
            .unwrap()
            .is_empty());
    }
}
