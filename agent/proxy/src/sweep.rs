//! The drain loop's pass over the table (cut what passed its deadline, forget what is
//! empty, keep the gauges) and the retirement of the whole process.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::drain::{self, Verdict};
use crate::runtime::Runtime;
use crate::table::{DrainEntry, Table};

/// Whether a drain stays listed: one that is done leaves (its metric series kept until
/// they expire), one past its deadline is cut and stays until its connections are gone.
fn keep(rt: &Runtime, service: &str, d: &DrainEntry, now: Instant) -> bool {
    match drain::verdict(d.t.load(), d.deadline, now) {
        Verdict::Done => {
            rt.metrics.gone(service, &d.t.target.name, now);
            false
        }
        Verdict::Cut => {
            d.t.cut_now();
            true
        }
        Verdict::Wait => true,
    }
}

/// One pass of the drain bookkeeping: cuts what passed its deadline, forgets what is empty,
/// and drops the pooled connections idle for the idle timeout.
pub fn sweep(rt: &Runtime, table: &mut Table) {
    let now = Instant::now();
    let now_ms = crate::clock::millis(now);
    let mut drains: BTreeMap<String, usize> = BTreeMap::new();
    for (service, e) in table.routes.iter_mut() {
        // Pooled connections idle too long, or closed by their target, go.
        for t in e.live.iter().chain(e.draining.iter().map(|d| &d.t)) {
            t.pool.evict(now_ms, rt.limits.idle_timeout);
        }
        e.draining.retain(|d| keep(rt, service.as_str(), d, now));
        rt.metrics.generation(service.as_str(), e.generation);
        drains.insert(service.to_string(), e.draining.len());
    }
    // Deleted routes: their drains count until they are done, then 0.
    for (s, _) in &table.orphans {
        drains.entry(s.clone()).or_default();
    }
    table.orphans.retain(|(s, d)| {
        let kept = keep(rt, s, d, now);
        if kept {
            *drains.entry(s.clone()).or_default() += 1;
        }
        kept
    });
    for (s, n) in drains {
        rt.metrics.drains(&s, n);
    }
    rt.metrics.expire(now);
}

/// The whole process drains: no route accepts any more, every live target starts draining
/// with its route's `drain_timeout` (not persisted: the routes stay as they are on disk).
pub fn retire(table: &mut Table) {
    let now = Instant::now();
    for e in table.routes.values_mut() {
        e.shared.stop();
        let deadline = drain::deadline(now, e.spec.drain_timeout.0);
        // Pools stay: requests still arriving on connections that are closing gracefully
        // are served by the same targets.
        for t in e.live.drain(..) {
            e.draining.push(DrainEntry { t, deadline });
        }
    }
}
