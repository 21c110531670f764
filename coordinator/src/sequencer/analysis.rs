//! A canary measurement, decided without I/O: the built-in checks' values from two
//! readings of every target server's proxy counters, any check's verdict from its value,
//! and the record of it. The executor reads the counters and queries Prometheus; this
//! module turns what they gave into [`Measurement`]s.

use std::collections::BTreeMap;

use sluice_common::agent_api::{OperationTraffic, TargetTraffic};
use sluice_common::analysis::window::{window, Reading, Window};
use sluice_common::analysis::{measure, Condition, Sample};
use sluice_common::api::{AnalysisCheck, Measurement};
use sluice_common::time::Timestamp;

use super::plan::Readings;

/// What every server's proxy counted in the window from `before` to `after`: the new
/// version's requests and the old one's, summed over the servers; or why it cannot be said
/// (a server whose counters could not be read at either end).
pub fn windows(before: &Readings, after: &Readings) -> Result<(Window, Window), String> {
    let mut new = Vec::new();
    let mut old = Vec::new();
    for (server, now) in &after.servers {
        let then = before
            .servers
            .get(server)
            .ok_or_else(|| format!("{server}: no earlier reading"))?;
        let (then, now) = match (then, now) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return Err(format!("{server}: {e}")),
        };
        let side = |f: fn(&OperationTraffic) -> &Option<TargetTraffic>| {
            let r = |t: &OperationTraffic| f(t).as_ref().map(Reading::from).unwrap_or_default();
            window(&r(then), &r(now))
        };
        new.push(side(|t| &t.new));
        old.push(side(|t| &t.previous));
    }
    Ok((sum(&new), sum(&old)))
}

/// Windows of several servers as one.
fn sum(ws: &[Window]) -> Window {
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for w in ws {
        for (k, v) in &w.by_class {
            *by_class.entry(k.clone()).or_default() += v;
        }
        for &(le, c) in &w.buckets {
            // Bucket bounds are the proxy's fixed list; key them by their bits (+Inf last).
            let key = if le.is_infinite() {
                u64::MAX
            } else {
                le.to_bits()
            };
            buckets.entry(key).or_insert((le, 0)).1 += c;
        }
    }
    let mut buckets: Vec<(f64, u64)> = buckets.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Window { by_class, buckets }
}

/// A built-in check's value over the window and what it saw.
pub fn builtin(check: &AnalysisCheck, new: &Window, old: &Window) -> (Sample, String) {
    let seen = |w: &Window| w.total();
    let p99_ms = |w: &Window| w.quantile(0.99).map(|s| s * 1000.0);
    let value = |v: Option<f64>| v.map_or(Sample::NoData, Sample::Value);
    match check {
        AnalysisCheck::ErrorRatio { .. } => {
            let failed: u64 = ["5xx", "error"]
                .iter()
                .filter_map(|c| new.by_class.get(*c))
                .sum();
            (
                value(new.error_ratio()),
                format!(
                    "{failed} of {} requests to the new version failed",
                    seen(new)
                ),
            )
        }
        AnalysisCheck::ErrorRatioIncrease { .. } => (
            value(
                new.error_ratio()
                    .map(|n| n - old.error_ratio().unwrap_or(0.0)),
            ),
            format!(
                "new {} / old {} requests; ratios {} vs {}",
                seen(new),
                seen(old),
                ratio(new.error_ratio()),
                ratio(old.error_ratio())
            ),
        ),
        AnalysisCheck::LatencyP99 { .. } => (
            value(p99_ms(new)),
            format!("p99 over {} requests to the new version", seen(new)),
        ),
        AnalysisCheck::LatencyP99Increase { .. } => (
            value(p99_ms(new).map(|n| n - p99_ms(old).unwrap_or(0.0))),
            format!(
                "p99 new {} ms over {} requests, old {} ms over {}",
                ms(p99_ms(new)),
                seen(new),
                ms(p99_ms(old)),
                seen(old)
            ),
        ),
        AnalysisCheck::Prometheus { .. } => {
            (Sample::Error("not a built-in check".into()), String::new())
        }
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("none".into(), |r| format!("{r:.4}"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("none".into(), |v| format!("{v:.1}"))
}

/// The conditions as the record shows them.
pub fn condition_text(success: Option<&Condition>, failure: Option<&Condition>) -> String {
    match (success, failure) {
        (Some(s), Some(f)) => format!("passes when {s}, fails when {f}"),
        (Some(s), None) => s.to_string(),
        (None, Some(f)) => format!("fails when {f}"),
        (None, None) => String::new(),
    }
}

/// The measurement of `check` at `step` from `sample`.
pub fn record(
    check: &AnalysisCheck,
    step: u32,
    at: Timestamp,
    sample: Sample,
    detail: String,
) -> Measurement {
    let (success, failure) = check.conditions();
    let outcome = measure(&sample, success.as_ref(), failure.as_ref());
    let (value, detail) = match sample {
        Sample::Value(v) if v.is_finite() => (Some(v), detail),
        Sample::Value(_) | Sample::NoData => (None, format!("no data: {detail}")),
        Sample::Error(e) => (None, e),
    };
    Measurement {
        step,
        check: check.name().to_string(),
        at,
        value,
        condition: condition_text(success.as_ref(), failure.as_ref()),
        outcome,
        detail,
    }
}

/// The built-in checks' measurements at `step` from two readings (every check an error
/// when a server could not be read).
pub fn builtins(
    checks: &[AnalysisCheck],
    step: u32,
    before: &Readings,
    after: &Readings,
) -> Vec<Measurement> {
    let w = windows(before, after);
    checks
        .iter()
        .filter(|c| !c.needs_prometheus())
        .map(|c| {
            let (sample, detail) = match &w {
                Ok((new, old)) => builtin(c, new, old),
                Err(e) => (Sample::Error(format!("proxy counters: {e}")), String::new()),
            };
            record(c, step, after.at, sample, detail)
        })
        .collect()
}

#[cfg(test)]
mod tests;
