//! What this process's storage I/O cost, for `/metrics`: the log flushes and the size of
//! the last snapshot. Process-wide statics (one node per process in production; an
//! in-process multi-node test sees the sum, or whichever node wrote last).

use std::sync::atomic::{AtomicU64, Ordering};

/// The size in bytes of the last snapshot this process wrote or read (one per process; an
/// in-process multi-node test sees whichever node touched one last).
pub static SNAPSHOT_BYTES: AtomicU64 = AtomicU64::new(0);

/// What this process's durable writes cost: how many, and the time in each step (writing
/// log records, their `fdatasync`, and sled's flush of the vote and purge point).
#[derive(Debug)]
pub struct FlushTimes {
    /// Durable writes completed (log appends and metadata flushes).
    pub count: AtomicU64,
    /// Microseconds writing log records into their segment.
    pub write_micros: AtomicU64,
    /// Microseconds in the log's `fdatasync`.
    pub sync_micros: AtomicU64,
    /// Microseconds making sled's metadata durable (its flush, then `fdatasync`).
    pub sled_micros: AtomicU64,
}

/// This process's durable writes.
pub static FLUSHES: FlushTimes = FlushTimes {
    count: AtomicU64::new(0),
    write_micros: AtomicU64::new(0),
    sync_micros: AtomicU64::new(0),
    sled_micros: AtomicU64::new(0),
};

pub(super) fn add_micros(to: &AtomicU64, since: std::time::Instant) {
    to.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
}

pub(super) fn note_snapshot_size(data: &[u8]) {
    SNAPSHOT_BYTES.store(data.len() as u64, Ordering::Relaxed);
}
