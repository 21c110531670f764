//! One retry policy for every loop that waits before trying again: exponential backoff
//! with "equal jitter" — attempt `n` waits between half and all of `min(max, base × 2ⁿ)` —
//! so that many agents (or drivers) that failed together do not retry together.
//!
//! The policy is pure: the randomness is handed in as a seed. [`retry`] (with the `serve`
//! feature) is the one async loop over it that the daemons use: it waits with
//! `tokio::time::sleep`, so its tests run on paused time.

use std::time::Duration;

/// The policy: the first ceiling and the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// No wait is longer.
    pub max: Duration,
}

impl Backoff {
    /// A policy from `base` doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The longest wait of attempt `attempt` (0 for the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait of attempt `attempt`, for a uniformly random `random`: in
    /// `[ceiling / 2, ceiling]`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let c = self.ceiling(attempt);
        let half = c / 2;
        let spread = (c - half).as_nanos() as u64;
        let extra = if spread == 0 {
            0
        } else {
            random % (spread + 1)
        };
        half + Duration::from_nanos(extra)
    }

    /// A retry counter over this policy, its jitter seeded with `seed`.
    pub fn retries(self, seed: u64) -> Retries {
        Retries {
            policy: self,
            attempt: 0,
            state: seed | 1,
        }
    }
}

/// Successive waits of one retry loop.
#[derive(Debug, Clone)]
pub struct Retries {
    policy: Backoff,
    attempt: u32,
    state: u64,
}

impl Retries {
    /// The next wait (and counts an attempt).
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64*: enough to spread retries, not for secrets.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let random = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let d = self.policy.delay(self.attempt, random);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// After a success: the next failure starts from the first wait again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Calls `op` until it succeeds, fails in a way `retryable` does not accept, or `budget`
/// would be overrun by the next wait; between attempts it sleeps the jittered delays of
/// `policy` (seeded with `seed`). The last error is returned.
#[cfg(feature = "serve")]
pub async fn retry<T, E, Fut>(
    policy: Backoff,
    seed: u64,
    budget: Duration,
    mut retryable: impl FnMut(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut retries = policy.retries(seed);
    loop {
        match op().await {
            Err(e) if retryable(&e) => {
                let wait = retries.next_delay();
                if started.elapsed() + wait > budget {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

    #[test]
    fn ceilings_double_up_to_the_maximum_and_never_overflow() {
        let c: Vec<u64> = (0..8).map(|a| P.ceiling(a).as_millis() as u64).collect();
        assert_eq!(c, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(P.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn every_delay_lies_between_half_and_all_of_its_ceiling() {
        let mut r = P.retries(42);
        for a in 0..50 {
            let d = r.next_delay();
            let c = P.ceiling(a);
            assert!(d >= c / 2 && d <= c, "attempt {a}: {d:?} vs {c:?}");
        }
        assert_eq!(r.attempts(), 50);
        r.reset();
        assert!(r.next_delay() <= Duration::from_millis(200));
        assert_eq!(P.delay(3, 0), P.ceiling(3) / 2);
        assert_eq!(P.delay(3, u64::MAX), P.delay(3, u64::MAX % (800_000_001)));
    }

    #[test]
    fn loops_seeded_apart_spread_their_retries() {
        // A hundred agents that lost their coordinator at the same moment.
        let mut firsts: Vec<Duration> = (0..100u64)
            .map(|seed| P.retries(seed * 7919).next_delay())
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert!(
            firsts.len() > 90,
            "only {} distinct first waits",
            firsts.len()
        );
        let spread = *firsts.last().unwrap() - firsts[0];
        assert!(spread > Duration::from_millis(80), "{spread:?}");
    }

    #[cfg(feature = "serve")]
    mod on_paused_time {
        use super::*;
        use std::cell::Cell;

        /// Fails `n` times (retryably), then succeeds; records when each call came.
        fn flaky(
            n: u32,
            calls: &Cell<u32>,
        ) -> impl std::future::Future<Output = Result<u32, &'static str>> {
            let k = calls.get();
            calls.set(k + 1);
            std::future::ready(if k < n { Err("down") } else { Ok(k) })
        }

        #[tokio::test(start_paused = true)]
        async fn waits_grow_with_jitter_until_it_works() {
            let calls = Cell::new(0);
            let t = tokio::time::Instant::now();
            let r = retry(P, 7, Duration::from_secs(60), |_| true, || flaky(4, &calls)).await;
            assert_eq!(r, Ok(4));
            assert_eq!(calls.get(), 5);
            // Four waits: between half and all of 200 + 400 + 800 + 1600 ms.
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(3000),
                "{waited:?}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn the_budget_bounds_the_whole() {
            let calls = Cell::new(0);
            let t = tokio::time::Instant::now();
            let r = retry(
                P,
                7,
                Duration::from_secs(5),
                |_| true,
                || flaky(u32::MAX, &calls),
            )
            .await;
            assert_eq!(r, Err("down"));
            assert!(t.elapsed() <= Duration::from_secs(5), "{:?}", t.elapsed());
            assert!(calls.get() >= 4, "{} calls", calls.get());
        }

        #[tokio::test(start_paused = true)]
        async fn an_error_that_is_not_retryable_returns_at_once() {
            let calls = Cell::new(0);
            let t = tokio::time::Instant::now();
            let r = retry(
                P,
                7,
                Duration::from_secs(60),
                |e| *e != "down",
                || flaky(3, &calls),
            )
            .await;
            assert_eq!(r, Err("down"));
            assert_eq!(calls.get(), 1);
            assert_eq!(t.elapsed(), Duration::ZERO);
        }
    }
}
