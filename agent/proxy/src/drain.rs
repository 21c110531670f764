//! Drain bookkeeping, decided without I/O: given what is left on each draining target and
//! its deadline, which to cut now, which are done, and what the control API shows.
//!
//! In-flight HTTP requests are never cut while they wait for their answer (the response
//! header timeout bounds them); what is still streaming at the deadline (a TCP connection,
//! an upgraded connection, a response body) is closed then.

use std::time::{Duration, Instant};

/// What a draining target still carries, read from its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// HTTP requests in flight.
    pub requests: u64,
    /// TCP and upgraded connections.
    pub connections: u64,
}

impl Load {
    /// Nothing left.
    pub fn is_idle(self) -> bool {
        self.requests == 0 && self.connections == 0
    }
}

/// The verdict on one draining target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep waiting.
    Wait,
    /// The deadline passed: close what is left (idempotent), keep listing until it is gone.
    Cut,
    /// Nothing left: forget it.
    Done,
}

/// Decides for one target.
pub fn verdict(load: Load, deadline: Instant, now: Instant) -> Verdict {
    if load.is_idle() {
        Verdict::Done
    } else if now >= deadline {
        Verdict::Cut
    } else {
        Verdict::Wait
    }
}

/// Milliseconds until the deadline, 0 once passed.
pub fn closes_in_ms(deadline: Instant, now: Instant) -> u64 {
    deadline
        .saturating_duration_since(now)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// The deadline of a drain that starts at `now`.
pub fn deadline(now: Instant, drain_timeout: Duration) -> Instant {
    now + drain_timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Load = Load {
        requests: 0,
        connections: 0,
    };

    #[test]
    fn idle_is_done_even_before_the_deadline() {
        let now = Instant::now();
        assert_eq!(
            verdict(IDLE, now + Duration::from_secs(30), now),
            Verdict::Done
        );
    }

    #[test]
    fn busy_waits_until_the_deadline_then_is_cut() {
        let now = Instant::now();
        let busy = Load {
            requests: 1,
            connections: 0,
        };
        let d = deadline(now, Duration::from_secs(2));
        assert_eq!(verdict(busy, d, now), Verdict::Wait);
        assert_eq!(verdict(busy, d, now + Duration::from_secs(2)), Verdict::Cut);
        let conn = Load {
            requests: 0,
            connections: 3,
        };
        assert_eq!(verdict(conn, d, now + Duration::from_secs(3)), Verdict::Cut);
        assert_eq!(closes_in_ms(d, now), 2000);
        assert_eq!(closes_in_ms(d, now + Duration::from_secs(5)), 0);
    }
}
