//! The free ports of one server, as disjoint intervals: finding the lowest free port and
//! taking or returning one are O(log n) in the number of intervals, however wide the range.

use std::collections::BTreeMap;

use super::PortRange;

/// Disjoint, non-adjacent inclusive intervals of free ports: start → end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FreeSet {
    intervals: BTreeMap<u16, u16>,
    pub(super) count: u32,
}

impl FreeSet {
    pub(super) fn full(range: PortRange) -> Self {
        Self {
            intervals: BTreeMap::from([(range.start, range.end)]),
            count: range.len(),
        }
    }

    pub(super) fn lowest(&self) -> Option<u16> {
        self.intervals.first_key_value().map(|(s, _)| *s)
    }

    pub(super) fn contains(&self, p: u16) -> bool {
        self.intervals
            .range(..=p)
            .next_back()
            .is_some_and(|(_, e)| p <= *e)
    }

    /// Takes `p` out; returns whether it was free.
    pub(super) fn take(&mut self, p: u16) -> bool {
        let Some((&s, &e)) = self.intervals.range(..=p).next_back() else {
            return false;
        };
        if p > e {
            return false;
        }
        self.intervals.remove(&s);
        if s < p {
            self.intervals.insert(s, p - 1);
        }
        if p < e {
            self.intervals.insert(p + 1, e);
        }
        self.count -= 1;
        true
    }

    /// Puts `p` back, merging with its neighbours; returns whether it was not already free.
    pub(super) fn give(&mut self, p: u16) -> bool {
        if self.contains(p) {
            return false;
        }
        let mut start = p;
        let mut end = p;
        if let Some((&s, &e)) = self.intervals.range(..p).next_back() {
            if e.checked_add(1) == Some(p) {
                self.intervals.remove(&s);
                start = s;
            }
        }
        if let Some(next) = p.checked_add(1) {
            if let Some(e) = self.intervals.remove(&next) {
                end = e;
            }
        }
        self.intervals.insert(start, end);
        self.count += 1;
        true
    }
}
