//! A coarse process clock: milliseconds since the first reading, small enough to keep in an
//! `AtomicU64` (idle times of client and pooled connections need no finer grain).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// `at` in milliseconds since the process's first reading (0 for anything earlier).
pub fn millis(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// Now, in [`millis`].
pub fn now_millis() -> u64 {
    millis(Instant::now())
}
