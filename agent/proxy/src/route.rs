//! A route's data-path view: the live targets the listener picks from, swapped atomically
//! by the control path (one `RwLock<Arc<…>>` write; readers clone the `Arc`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sluice_common::proxy::ProxyMode;
use tokio_util::sync::CancellationToken;

use crate::pick::{pick, Rng};
use crate::target::{Limits, RequestGuard, TargetRt};

/// The targets new requests and connections go to, with their weights.
#[derive(Debug, Default)]
pub struct Live {
    /// Targets with weight > 0.
    pub targets: Vec<Arc<TargetRt>>,
    /// Their weights (the runtime outlives a weight change).
    pub weights: Vec<u32>,
}

/// What a listener of one route shares with the control path.
#[derive(Debug)]
pub struct RouteShared {
    /// The service (metric label).
    pub service: String,
    /// `http` or `tcp`.
    pub mode: ProxyMode,
    /// How long connections get when the whole process drains.
    pub drain_timeout: RwLock<Duration>,
    /// The live targets.
    live: RwLock<Arc<Live>>,
    /// Data-path limits.
    pub limits: Limits,
    rng: Rng,
    /// Cancelled when the route stops listening (replaced, deleted, handed over): see
    /// [`Self::stop`].
    pub stop: CancellationToken,
    /// Set with `stop`, for the data path's checks (a token's check takes a lock).
    stopped: AtomicBool,
}

impl RouteShared {
    /// A route with no live target yet.
    pub fn new(
        service: String,
        mode: ProxyMode,
        drain_timeout: Duration,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            service,
            mode,
            drain_timeout: RwLock::new(drain_timeout),
            live: RwLock::new(Arc::new(Live::default())),
            limits,
            rng: Rng::new(),
            stop: CancellationToken::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// The route stops listening; its HTTP client connections close gracefully.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.cancel();
    }

    /// Whether [`Self::stop`] happened.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Swaps the live targets; returns the previous set.
    pub fn swap(&self, next: Live) -> Arc<Live> {
        std::mem::replace(&mut *self.live.write().expect("live lock"), Arc::new(next))
    }

    /// The live targets now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().expect("live lock").clone()
    }

    /// Whether `t` is among the live targets now.
    pub fn is_live(&self, t: &Arc<TargetRt>) -> bool {
        self.live
            .read()
            .expect("live lock")
            .targets
            .iter()
            .any(|l| Arc::ptr_eq(l, t))
    }

    /// Picks a target for a new request or connection, by weight.
    pub fn pick(&self) -> Option<Arc<TargetRt>> {
        self.pick_avoiding(None)
    }

    /// Picks like [`Self::pick`], but avoids `failed` (a target a retry just failed to
    /// reach) whenever another live target has weight; a switch in between means `failed`
    /// is no longer live at all.
    pub fn pick_avoiding(&self, failed: Option<&Arc<TargetRt>>) -> Option<Arc<TargetRt>> {
        let live = self.live.read().expect("live lock");
        let i = self.pick_index(&live, failed)?;
        Some(live.targets[i].clone())
    }

    /// Picks like [`Self::pick_avoiding`] and counts an HTTP request on the target within
    /// the same read of the live targets: a switch cannot come in between, so the drain of
    /// a target that is switched away just after sees the request.
    pub fn begin_request(&self, failed: Option<&Arc<TargetRt>>) -> Option<RequestGuard> {
        let live = self.live.read().expect("live lock");
        let i = self.pick_index(&live, failed)?;
        Some(live.targets[i].begin_request())
    }

    fn pick_index(&self, live: &Live, failed: Option<&Arc<TargetRt>>) -> Option<usize> {
        match failed {
            // One target: no random number (a shared counter) needed.
            None if live.weights.len() == 1 => (live.weights[0] > 0).then_some(0),
            None => pick(&live.weights, self.rng.next()),
            Some(f) => {
                let weights: Vec<u32> = live
                    .targets
                    .iter()
                    .zip(&live.weights)
                    .map(|(t, &w)| if Arc::ptr_eq(f, t) { 0 } else { w })
                    .collect();
                pick(&weights, self.rng.next()).or_else(|| pick(&live.weights, self.rng.next()))
            }
        }
    }
}
