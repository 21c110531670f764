//! Counters this process keeps for `/metrics` (what this node did, not replicated state).
//!
//! One [`Counters`] is made at start and shared by handle: the parts that count (lock
//! waits in the API, deliveries in the notifier) write to it, `/metrics` reads it. Nothing
//! is global, so two coordinators in one process (the tests) never mix their figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The sink names notifications are labelled with.
pub const SINKS: [&str; 2] = ["telegram", "webhook"];
/// The outcomes of a delivery attempt.
pub const OUTCOMES: [&str; 3] = ["sent", "retried", "failed"];

/// Every counter of the process.
#[derive(Debug, Default)]
pub struct Counters {
    waiting: AtomicU64,
    waited: AtomicU64,
    notify: Mutex<Deliveries>,
}

/// What the notifier did.
#[derive(Debug, Default, Clone)]
pub struct Deliveries {
    /// (sink, outcome) → count; outcome is one of [`OUTCOMES`].
    pub attempts: BTreeMap<(&'static str, &'static str), u64>,
    /// Sink → records waiting to be delivered.
    pub queued: BTreeMap<&'static str, u64>,
}

/// Counts a lock request as waiting while it lives.
#[derive(Debug)]
pub struct Waiting<'a>(&'a Counters);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// A lock request starts waiting; it stops when the guard drops.
    pub fn lock_wait(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.waited.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }

    /// (waiting now, ever waited).
    pub fn lock_waits(&self) -> (u64, u64) {
        (
            self.waiting.load(Ordering::Relaxed),
            self.waited.load(Ordering::Relaxed),
        )
    }

    /// One delivery attempt to `sink` ended with `outcome`.
    pub fn delivery(&self, sink: &'static str, outcome: &'static str) {
        *self
            .notify
            .lock()
            .expect("counters lock")
            .attempts
            .entry((sink, outcome))
            .or_default() += 1;
    }

    /// `n` records wait for `sink`.
    pub fn queued(&self, sink: &'static str, n: u64) {
        self.notify
            .lock()
            .expect("counters lock")
            .queued
            .insert(sink, n);
    }

    /// What the notifier did so far.
    pub fn deliveries(&self) -> Deliveries {
        self.notify.lock().expect("counters lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_counted_while_they_last() {
        let c = Counters::default();
        {
            let _a = c.lock_wait();
            let _b = c.lock_wait();
            assert_eq!(c.lock_waits(), (2, 2));
        }
        assert_eq!(c.lock_waits(), (0, 2));
        c.delivery("webhook", "sent");
        c.delivery("webhook", "sent");
        c.queued("telegram", 3);
        let d = c.deliveries();
        assert_eq!(d.attempts[&("webhook", "sent")], 2);
        assert_eq!(d.queued["telegram"], 3);
    }
}
