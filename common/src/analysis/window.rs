//! The built-in canary checks' arithmetic over the proxies' own counters: what one target answered between two readings of
//! `sluice_proxy_requests_total` and `sluice_proxy_request_duration_seconds`, its error
//! ratio, and a latency quantile as Prometheus' `histogram_quantile` computes it.

use std::collections::BTreeMap;

/// One reading of one target's counters (cumulative since the proxy started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Answered requests by class (`1xx` … `5xx`, `error` for the proxy's own failures).
    pub by_class: BTreeMap<String, u64>,
    /// The latency histogram's cumulative buckets: upper bound (seconds) → count, the last
    /// one `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl From<&super::exposition::TargetTraffic> for Reading {
    /// The counters an agent reported (the `+Inf` bucket last).
    fn from(t: &super::exposition::TargetTraffic) -> Self {
        let mut buckets = t.buckets.clone();
        buckets.push((f64::INFINITY, t.count));
        Reading {
            by_class: t.by_class.clone(),
            buckets,
        }
    }
}

/// What a target answered between two readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Requests by class in the window.
    pub by_class: BTreeMap<String, u64>,
    /// Cumulative buckets of the window.
    pub buckets: Vec<(f64, u64)>,
}

/// The window from `before` to `after`. A counter that went down (the proxy restarted
/// between the readings) counts from zero, as Prometheus' `increase` does.
pub fn window(before: &Reading, after: &Reading) -> Window {
    let delta = |b: u64, a: u64| if a >= b { a - b } else { a };
    let by_class = after
        .by_class
        .iter()
        .map(|(k, &a)| {
            (
                k.clone(),
                delta(before.by_class.get(k).copied().unwrap_or(0), a),
            )
        })
        .collect();
    let buckets = after
        .buckets
        .iter()
        .map(|&(le, a)| {
            let b = before
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0, |&(_, c)| c);
            (le, delta(b, a))
        })
        .collect();
    Window { by_class, buckets }
}

impl Window {
    /// Requests answered in the window.
    pub fn total(&self) -> u64 {
        self.by_class.values().sum()
    }

    /// The share of 5xx answers and proxy failures; `None` without a request (no data: a
    /// failure for the analysis).
    pub fn error_ratio(&self) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let bad: u64 = ["5xx", "error"]
            .iter()
            .filter_map(|c| self.by_class.get(*c))
            .sum();
        Some(bad as f64 / total as f64)
    }

    /// The `q` quantile (0..=1) of the latency in seconds, interpolated linearly inside its
    /// bucket as `histogram_quantile` does; `None` without observations. A quantile in the
    /// `+Inf` bucket is the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map(|&(_, c)| c)?;
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &(le, count) in &self.buckets {
            if count as f64 >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = (count - below) as f64;
                if inside == 0.0 {
                    return Some(le);
                }
                return Some(lower + (le - lower) * (rank - below as f64) / inside);
            }
            lower = le;
            below = count;
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(classes: &[(&str, u64)], buckets: &[(f64, u64)]) -> Reading {
        Reading {
            by_class: classes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            buckets: buckets.to_vec(),
        }
    }

    #[test]
    fn the_error_ratio_counts_5xx_and_proxy_failures_in_the_window_only() {
        let before = reading(&[("2xx", 1000), ("5xx", 50)], &[]);
        let after = reading(&[("2xx", 1080), ("5xx", 60), ("error", 10)], &[]);
        let w = window(&before, &after);
        assert_eq!(w.total(), 100);
        assert_eq!(w.error_ratio(), Some(0.2));
        // Nothing answered: no data.
        assert_eq!(window(&after, &after).error_ratio(), None);
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        let before = reading(&[("2xx", 5000)], &[]);
        let after = reading(&[("2xx", 40)], &[]);
        assert_eq!(window(&before, &after).total(), 40);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket_like_histogram_quantile() {
        let inf = f64::INFINITY;
        let before = reading(&[], &[(0.01, 0), (0.1, 0), (1.0, 0), (inf, 0)]);
        // 100 observations: 50 under 10 ms, 40 in (10 ms, 100 ms], 10 in (100 ms, 1 s].
        let after = reading(&[], &[(0.01, 50), (0.1, 90), (1.0, 100), (inf, 100)]);
        let w = window(&before, &after);
        assert_eq!(w.quantile(0.5), Some(0.01));
        let p90 = w.quantile(0.9).unwrap();
        assert!((p90 - 0.1).abs() < 1e-9, "{p90}");
        let p99 = w.quantile(0.99).unwrap();
        assert!((p99 - (0.1 + 0.9 * 0.9)).abs() < 1e-9, "{p99}");
        // Past the last finite bound: that bound.
        let slow = reading(&[], &[(0.01, 0), (0.1, 0), (1.0, 0), (inf, 10)]);
        assert_eq!(window(&before, &slow).quantile(0.99), Some(1.0));
        // No observation: no data.
        assert_eq!(window(&before, &before).quantile(0.99), None);
        assert_eq!(w.quantile(1.5), None);
    }
}
