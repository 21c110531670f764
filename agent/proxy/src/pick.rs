//! Weighted target choice: a pure function of the weights and one random number.

use std::sync::atomic::{AtomicU64, Ordering};

/// The index of the target that `r` selects, each target `i` owning a share of
/// `weights[i] / sum` of the `u64` range. `None` when every weight is 0.
pub fn pick(weights: &[u32], r: u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    // r mod total is biased by at most total / 2^64: irrelevant for weights <= 100 each.
    let mut point = r % total;
    for (i, &w) in weights.iter().enumerate() {
        let w = u64::from(w);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// A cheap, lock-free pseudo-random source (splitmix64 over a shared counter): enough to
/// spread requests by weight, not for anything secret.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    /// Seeded from the clock and the process id.
    pub fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self(AtomicU64::new(t ^ (u64::from(std::process::id()) << 32)))
    }

    /// The next number.
    pub fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_weights_pick_nothing() {
        assert_eq!(pick(&[], 5), None);
        assert_eq!(pick(&[0, 0], 5), None);
    }

    #[test]
    fn a_zero_weight_is_never_picked() {
        for r in 0..1000 {
            assert_eq!(pick(&[0, 100, 0], r), Some(1));
        }
    }

    #[test]
    fn shares_follow_weights() {
        let rng = Rng::new();
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[pick(&[10, 30, 60], rng.next()).unwrap()] += 1;
        }
        for (c, want) in counts.iter().zip([10_000, 30_000, 60_000]) {
            assert!((*c as i64 - want).abs() < 2_000, "{counts:?}");
        }
        // Exact boundaries.
        assert_eq!(pick(&[1, 1], 0), Some(0));
        assert_eq!(pick(&[1, 1], 1), Some(1));
        assert_eq!(pick(&[1, 1], 2), Some(0));
    }
}
