//! Percentiles of measured durations (shared by the benches).

use std::time::Duration;

/// The `p` quantile (0..=1) of `sorted`, nearest rank.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
