//! What a route change does to the targets, decided without I/O.
//!
//! A target is identified by its label and address. One that stays with weight > 0 keeps
//! its runtime (its connection pool and counters); one that loses its weight (dropped from
//! the list or set to 0) starts draining; one that comes back while it is still draining
//! (a quick switch back) is revived instead of being started afresh.

use sluice_common::proxy::Target;

/// The effect of replacing the live targets `live` (with `draining` still draining) by
/// `next`. Indices refer to the slices given.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// `(index in live, index in next)`: stays live, perhaps with a new weight.
    pub keep: Vec<(usize, usize)>,
    /// `(index in draining, index in next)`: was draining, is live again.
    pub revive: Vec<(usize, usize)>,
    /// Index in next: a target with no runtime yet.
    pub fresh: Vec<usize>,
    /// Index in live: loses its weight, starts draining.
    pub drain: Vec<usize>,
}

fn same(a: &Target, b: &Target) -> bool {
    a.name == b.name && a.addr == b.addr
}

/// Plans the change. Only targets with weight > 0 in `next` are live afterwards; the others
/// stay in the spec (the agent may raise them later) but get no runtime.
pub fn plan_targets(live: &[Target], draining: &[Target], next: &[Target]) -> TargetPlan {
    let mut plan = TargetPlan::default();
    for (ni, n) in next.iter().enumerate() {
        if n.weight == 0 {
            continue;
        }
        if let Some(li) = live.iter().position(|l| same(l, n)) {
            plan.keep.push((li, ni));
        } else if let Some(di) = draining.iter().position(|d| same(d, n)) {
            plan.revive.push((di, ni));
        } else {
            plan.fresh.push(ni);
        }
    }
    for (li, _) in live.iter().enumerate() {
        if !plan.keep.iter().any(|&(k, _)| k == li) {
            plan.drain.push(li);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, port: u16, weight: u32) -> Target {
        Target {
            name: name.into(),
            addr: ([127, 0, 0, 1], port).into(),
            weight,
        }
    }

    #[test]
    fn a_switch_drains_the_old_and_starts_the_new() {
        let p = plan_targets(&[t("v1", 1, 100)], &[], &[t("v2", 2, 100)]);
        assert_eq!(p.fresh, vec![0]);
        assert_eq!(p.drain, vec![0]);
        assert!(p.keep.is_empty() && p.revive.is_empty());
    }

    #[test]
    fn same_targets_keep_their_runtime() {
        let p = plan_targets(&[t("v1", 1, 100)], &[], &[t("v1", 1, 50)]);
        assert_eq!(p.keep, vec![(0, 0)]);
        assert!(p.drain.is_empty() && p.fresh.is_empty());
    }

    #[test]
    fn weight_zero_drains_and_a_relabel_is_a_new_target() {
        let p = plan_targets(
            &[t("v1", 1, 100), t("v2", 2, 100)],
            &[],
            &[t("v1", 1, 0), t("v2b", 2, 100)],
        );
        assert_eq!(p.drain, vec![0, 1]);
        assert_eq!(p.fresh, vec![1]);
    }

    #[test]
    fn switching_back_revives_a_draining_target() {
        let p = plan_targets(&[t("v2", 2, 100)], &[t("v1", 1, 100)], &[t("v1", 1, 100)]);
        assert_eq!(p.revive, vec![(0, 0)]);
        assert_eq!(p.drain, vec![0]);
    }
}
