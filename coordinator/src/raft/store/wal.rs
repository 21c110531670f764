//! The Raft log as segment files: one write and one `fdatasync` per append, nothing else.
//!
//! sled made every durable append wait twice: its own flush (a `sync_file_range` wait),
//! then the `fdatasync` of its data file. Here an append is one positional write into a
//! segment file and one `fdatasync` of it, and that `fdatasync` has no file size or extent
//! to record: every segment is created at its full size, written with zeros and synced
//! before it is used (writing into a file's existing, written blocks costs about half an
//! `fdatasync` that grows it, measured with `dd oflag=dsync` on this machine's disk).
//!
//! Files in `dir`:
//! - `seg-<first index, 20 digits>.wal`: records (see [`record`]) from the start, zeros
//!   after the last; the name orders the segments;
//! - `spare.wal`: a zeroed segment prepared in the background, renamed into place when the
//!   current segment is full, so an append never waits for a segment to be zeroed;
//! - `*.part`: a segment or spare being prepared; removed on open.
//!
//! Crash safety: a record is acknowledged only after its `fdatasync`. A crash can leave a
//! torn record at the end of the newest segment; opening finds it by its checksum and
//! zeroes it and everything after it. A truncation zeroes what it removes before the
//! next record is written over it, and the scan stops at any break in the run of indexes,
//! so an older record can never be read as a newer one.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::io_stats::{add_micros, FLUSHES};

pub mod record;

use record::{End, HEADER};

/// Size of a segment unless one entry needs more.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

const SPARE: &str = "spare.wal";

/// A log kept in segment files (see the module docs).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Where the next record goes: the end of the written part.
    len: u64,
    cap: u64,
    /// Index of the last record written in this segment.
    last: Option<u64>,
}

#[derive(Debug, Clone)]
struct Loc {
    segment: u64,
    file: Arc<File>,
    offset: u64,
    len: u32,
}

#[derive(Debug, Default)]
struct Inner {
    segments: Vec<Segment>,
    /// Index of `locs[0]`.
    first: u64,
    locs: VecDeque<Loc>,
    spare: Option<std::thread::JoinHandle<()>>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.wal"))
}

fn segment_first(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".wal")?
        .parse()
        .ok()
}

fn damaged(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `len` zero bytes at `from`.
fn write_zeros(file: &File, from: u64, len: u64) -> io::Result<()> {
    const CHUNK: usize = 1024 * 1024;
    let zeros = vec![0u8; CHUNK.min(len as usize)];
    let mut at = from;
    while at < from + len {
        let n = (from + len - at).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Creates `path` at `cap` bytes of zeros, synced, through a `.part` file.
fn create_zeroed(path: &Path, cap: u64) -> io::Result<()> {
    let part = path.with_extension("part");
    let file = File::create(&part)?;
    write_zeros(&file, 0, cap)?;
    file.sync_all()?;
    std::fs::rename(&part, path)
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

impl Wal {
    /// Opens the log in `dir`, creating the directory if needed. Entries at or below
    /// `purged` are gone (their segments are removed).
    pub fn open(dir: &Path, segment_bytes: u64, purged: Option<u64>) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".part") {
                std::fs::remove_file(dir.join(&*name))?;
            } else if let Some(first) = segment_first(&name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut inner = Inner::default();
        let newest = firsts.last().copied();
        for first in firsts {
            let path = segment_path(dir, first);
            let file = open_rw(&path)?;
            let bytes = std::fs::read(&path)?;
            let scan = record::scan(&bytes);
            if scan.how == End::Torn {
                if Some(first) != newest {
                    return Err(damaged(format!(
                        "log segment {} is damaged at byte {} (not the newest segment, so \
                         not a torn write); remove this node's data directory and let it \
                         catch up from the cluster",
                        path.display(),
                        scan.end
                    )));
                }
                tracing::warn!(
                    segment = %path.display(),
                    at = scan.end,
                    "a torn record ends the log; it was never acknowledged and is dropped"
                );
                write_zeros(&file, scan.end, bytes.len() as u64 - scan.end)?;
                file.sync_data()?;
            }
            let file = Arc::new(file);
            for r in &scan.records {
                let expected = inner.first + inner.locs.len() as u64;
                if !inner.locs.is_empty() && r.index != expected {
                    return Err(damaged(format!(
                        "log segment {} starts at index {}, after index {}: a gap",
                        path.display(),
                        r.index,
                        expected - 1
                    )));
                }
                if inner.locs.is_empty() {
                    inner.first = r.index;
                }
                inner.locs.push_back(Loc {
                    segment: first,
                    file: file.clone(),
                    offset: r.offset,
                    len: r.len,
                });
            }
            inner.segments.push(Segment {
                first,
                path,
                file,
                len: scan.end,
                cap: bytes.len() as u64,
                last: scan.records.last().map(|r| r.index),
            });
        }
        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Mutex::new(inner),
        };
        if let Some(p) = purged {
            wal.purge(p)?;
        }
        Ok(wal)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("log lock poisoned")
    }

    /// The first and last index held, if any.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        let g = self.lock();
        (!g.locs.is_empty()).then(|| (g.first, g.first + g.locs.len() as u64 - 1))
    }

    /// Appends `(index, body)` records, indexes consecutive and following the last one
    /// held (any index when the log is empty), and returns once they are durable.
    pub fn append(&self, records: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let t = Instant::now();
        let written = self.write(records)?;
        add_micros(&FLUSHES.write_micros, t);
        let t = Instant::now();
        for f in written {
            f.sync_data()?;
        }
        add_micros(&FLUSHES.sync_micros, t);
        FLUSHES
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Writes the records; returns the files to sync.
    fn write(&self, records: &[(u64, Vec<u8>)]) -> io::Result<Vec<Arc<File>>> {
        let mut g = self.lock();
        let mut written: Vec<Arc<File>> = Vec::new();
        let mut buf = Vec::new();
        let mut pending: Vec<(u64, u32)> = Vec::new();
        for (index, body) in records {
            let index = *index;
            let next = g.first + g.locs.len() as u64 + pending.len() as u64;
            if g.locs.is_empty() && pending.is_empty() {
                g.first = index;
            } else if index != next {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "log append at index {index} does not follow index {}",
                        next - 1
                    ),
                ));
            }
            let need = (HEADER + body.len()) as u64;
            let fits = g.segments.last().is_some_and(|s| {
                let used = s.len + buf.len() as u64;
                // Records pending for this segment already follow on from its last.
                let last = if pending.is_empty() {
                    s.last
                } else {
                    Some(index - 1)
                };
                used + need <= s.cap && last.is_none_or(|l| l + 1 == index)
            });
            if !fits {
                self.flush_pending(&mut g, &mut buf, &mut pending, &mut written)?;
                self.roll(&mut g, index, need)?;
            }
            let seg = g.segments.last().expect("a segment after rolling");
            let offset = seg.len + buf.len() as u64;
            record::encode_into(&mut buf, index, body);
            pending.push((offset, (HEADER + body.len()) as u32));
        }
        self.flush_pending(&mut g, &mut buf, &mut pending, &mut written)?;
        Ok(written)
    }

    /// Writes `buf` at the end of the newest segment and indexes its records.
    fn flush_pending(
        &self,
        g: &mut Inner,
        buf: &mut Vec<u8>,
        pending: &mut Vec<(u64, u32)>,
        written: &mut Vec<Arc<File>>,
    ) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let first_new = g.first + g.locs.len() as u64;
        let seg = g
            .segments
            .last_mut()
            .expect("pending records have a segment");
        seg.file.write_all_at(buf, seg.len)?;
        seg.len += buf.len() as u64;
        seg.last = Some(first_new + pending.len() as u64 - 1);
        let (segment, file) = (seg.first, seg.file.clone());
        if !written.iter().any(|f| Arc::ptr_eq(f, &file)) {
            written.push(file.clone());
        }
        for (offset, len) in pending.drain(..) {
            g.locs.push_back(Loc {
                segment,
                file: file.clone(),
                offset,
                len,
            });
        }
        buf.clear();
        Ok(())
    }

    /// Starts a new segment whose first record is `index`, big enough for `need` bytes.
    fn roll(&self, g: &mut Inner, index: u64, need: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, index);
        let cap = self.segment_bytes.max(need);
        let spare = self.dir.join(SPARE);
        let from_spare = cap == self.segment_bytes
            && std::fs::metadata(&spare).is_ok_and(|m| m.len() == cap)
            && std::fs::rename(&spare, &path).is_ok();
        if !from_spare {
            create_zeroed(&path, cap)?;
        }
        sync_dir(&self.dir)?;
        let file = Arc::new(open_rw(&path)?);
        g.segments.push(Segment {
            first: index,
            path,
            file,
            len: 0,
            cap,
            last: None,
        });
        if g.spare.as_ref().is_none_or(|h| h.is_finished()) {
            let (dir, cap) = (self.dir.clone(), self.segment_bytes);
            g.spare = Some(std::thread::spawn(move || {
                if let Err(e) = create_zeroed(&dir.join(SPARE), cap) {
                    tracing::warn!(error = %e, "could not prepare the next log segment");
                }
            }));
        }
        Ok(())
    }

    /// The bodies of the records from `from` up to, not including, `to` (clamped to what
    /// is held), in order.
    pub fn read(&self, from: u64, to: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let (start, locs) = {
            let g = self.lock();
            let end = g.first + g.locs.len() as u64;
            let (from, to) = (from.max(g.first), to.min(end));
            if from >= to {
                return Ok(Vec::new());
            }
            let range = (from - g.first) as usize..(to - g.first) as usize;
            (from, g.locs.range(range).cloned().collect::<Vec<_>>())
        };
        let mut out = Vec::with_capacity(locs.len());
        let mut i = 0;
        while i < locs.len() {
            // One read for a run of records that lie next to each other in one segment.
            let mut j = i + 1;
            while j < locs.len()
                && locs[j].segment == locs[i].segment
                && locs[j].offset == locs[j - 1].offset + locs[j - 1].len as u64
            {
                j += 1;
            }
            let span = locs[j - 1].offset + locs[j - 1].len as u64 - locs[i].offset;
            let mut bytes = vec![0u8; span as usize];
            locs[i].file.read_exact_at(&mut bytes, locs[i].offset)?;
            for (k, loc) in locs[i..j].iter().enumerate() {
                let index = start + (i + k) as u64;
                let at = (loc.offset - locs[i].offset) as usize;
                let body =
                    record::body_of(&bytes[at..at + loc.len as usize], index).ok_or_else(|| {
                        damaged(format!(
                            "log record {index} in segment {} fails its checksum",
                            loc.segment
                        ))
                    })?;
                out.push((index, body.to_vec()));
            }
            i = j;
        }
        Ok(out)
    }

    /// Removes the records from `from` on, durably.
    pub fn truncate(&self, from: u64) -> io::Result<()> {
        let mut g = self.lock();
        let end = g.first + g.locs.len() as u64;
        if g.locs.is_empty() || from >= end {
            return Ok(());
        }
        if from <= g.first {
            return self.remove_all(&mut g);
        }
        let loc = g.locs[(from - g.first) as usize].clone();
        // Later segments go first, newest first: a crash part way leaves a shorter log,
        // never one with a gap.
        while g.segments.last().is_some_and(|s| s.first > loc.segment) {
            let s = g.segments.pop().expect("checked");
            std::fs::remove_file(&s.path)?;
        }
        sync_dir(&self.dir)?;
        let seg = g.segments.last_mut().expect("the segment holding `from`");
        write_zeros(&seg.file, loc.offset, seg.len - loc.offset)?;
        seg.file.sync_data()?;
        seg.len = loc.offset;
        seg.last = (loc.offset > 0).then(|| from - 1);
        let keep = (from - g.first) as usize;
        g.locs.truncate(keep);
        Ok(())
    }

    /// Forgets the records up to and including `upto`, removing every segment that holds
    /// nothing after it. The caller records `upto` durably first.
    pub fn purge(&self, upto: u64) -> io::Result<()> {
        let mut g = self.lock();
        let end = g.first + g.locs.len() as u64;
        if upto + 1 >= end {
            return self.remove_all(&mut g);
        }
        while g.first <= upto {
            g.locs.pop_front();
            g.first += 1;
        }
        let before = g.segments.len();
        let dir = self.dir.clone();
        let mut removed = Ok(());
        g.segments.retain(|s| {
            let keep = s.last.is_some_and(|l| l > upto);
            if !keep && removed.is_ok() {
                removed = std::fs::remove_file(&s.path);
            }
            keep
        });
        removed?;
        if g.segments.len() != before {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    fn remove_all(&self, g: &mut Inner) -> io::Result<()> {
        while let Some(s) = g.segments.pop() {
            std::fs::remove_file(&s.path)?;
        }
        sync_dir(&self.dir)?;
        g.locs.clear();
        Ok(())
    }

    /// Removes every record.
    pub fn clear(&self) -> io::Result<()> {
        self.remove_all(&mut self.lock())
    }
}

#[cfg(test)]
mod tests;
