//! The current snapshot as one file beside sled's, `snapshot.bin`, replaced atomically.
//!
//! Snapshots used to be one sled value: 15 MB at 50,000 deployments, rewritten on every
//! snapshot through sled's write buffers and page cache, whose 16 MiB it could fill on its
//! own, while the old copy waited for segment cleaning. A plain file is written once and
//! read only when a follower needs it or the node starts. (Its effect on the thousand-agent
//! bench's RSS was not measured apart from the allocator change that came with it.)
//!
//! Layout: `SLSNAP1\n`, the meta's length (u64, little endian), the meta (the store's
//! codec), the data's length, the data (see `snapshot_codec`). Written to a temporary
//! file, `fsync`ed, renamed over the old one, then the directory is `fsync`ed: a crash
//! leaves the old snapshot or the new one, never a mix. A file that does not parse is an
//! error, never "no snapshot": the log before it may already be purged.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::SnapshotMeta;

use super::io_stats::note_snapshot_size;
use super::{decode, encode, read_err, write_err, Node, NodeId, SErr, StateMachineStore};

const MAGIC: &[u8] = b"SLSNAP1\n";

/// Where a node keeps its snapshot.
#[derive(Debug, Clone)]
pub(super) struct SnapshotFile {
    path: PathBuf,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snapshot file: {what}"))
}

impl SnapshotFile {
    pub(super) fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("snapshot.bin"),
        }
    }

    /// The stored meta and data, or `None` if no snapshot file was ever written.
    pub(super) fn read(&self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut magic = [0u8; MAGIC.len()];
        f.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(bad("unknown format"));
        }
        let meta = read_part(&mut f)?;
        let data = read_part(&mut f)?;
        if f.read(&mut [0u8; 1])? != 0 {
            return Err(bad("trailing bytes"));
        }
        Ok(Some((meta, data)))
    }

    /// Replaces the stored snapshot (blocking: run it off the async workers).
    pub(super) fn write(&self, meta: &[u8], data: &[u8]) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = io::BufWriter::new(File::create(&tmp)?);
            f.write_all(MAGIC)?;
            for part in [meta, data] {
                f.write_all(&(part.len() as u64).to_le_bytes())?;
                f.write_all(part)?;
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

impl StateMachineStore {
    /// The stored snapshot: the file, or what sled held before the file existed.
    #[allow(clippy::type_complexity)]
    pub(super) fn read_snapshot(
        &self,
    ) -> Result<Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)>, SErr> {
        let stored = match self.file.read().map_err(read_err)? {
            Some(s) => Some(s),
            None => {
                let meta = self.legacy.get("meta").map_err(read_err)?;
                let data = self.legacy.get("data").map_err(read_err)?;
                meta.zip(data).map(|(m, d)| (m.to_vec(), d.to_vec()))
            }
        };
        match stored {
            Some((m, d)) => {
                note_snapshot_size(&d);
                Ok(Some((decode(&m).map_err(read_err)?, d)))
            }
            None => Ok(None),
        }
    }

    /// Replaces the stored snapshot, durably (on a blocking thread), then drops the copy
    /// sled may still hold from before the file.
    pub(super) async fn write_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        data: Arc<Vec<u8>>,
    ) -> Result<(), SErr> {
        let meta = encode(meta).map_err(write_err)?;
        note_snapshot_size(&data);
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.write(&meta, &data))
            .await
            .map_err(write_err)?
            .map_err(write_err)?;
        if self.legacy.contains_key("data").map_err(read_err)? {
            let mut batch = sled::Batch::default();
            batch.remove("meta");
            batch.remove("data");
            self.legacy.apply_batch(batch).map_err(write_err)?;
        }
        Ok(())
    }
}

fn read_part(f: &mut File) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    // Bounded by what is left in the file, so a damaged length cannot ask for terabytes.
    let left = f.metadata()?.len().saturating_sub(f.stream_position()?);
    if len > left {
        return Err(bad("truncated"));
    }
    let mut part = vec![0u8; len as usize];
    f.read_exact(&mut part)?;
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = SnapshotFile::in_dir(dir.path());
        assert!(f.read().unwrap().is_none());
        f.write(b"meta-1", &[7u8; 100_000]).unwrap();
        f.write(b"meta-2", b"data-2").unwrap();
        let (meta, data) = f.read().unwrap().unwrap();
        assert_eq!(
            (meta.as_slice(), data.as_slice()),
            (&b"meta-2"[..], &b"data-2"[..])
        );
        assert!(!dir.path().join("snapshot.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let f = SnapshotFile::in_dir(dir.path());
        f.write(b"meta", b"some data").unwrap();
        let path = dir.path().join("snapshot.bin");
        let whole = fs::read(&path).unwrap();
        for cut in [3, MAGIC.len() + 4, whole.len() - 1] {
            fs::write(&path, &whole[..cut]).unwrap();
            assert!(f.read().is_err(), "cut at {cut}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        assert!(f.read().is_err());
        let mut foreign = whole;
        foreign[0] = b'X';
        fs::write(&path, &foreign).unwrap();
        assert!(f.read().is_err());
    }
}
