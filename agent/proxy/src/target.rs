//! One target's runtime: its connection pool, its live counters, and the cut that closes
//! what is left on it when its drain deadline passes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use sluice_common::proxy::Target;
use tokio_util::sync::CancellationToken;

use crate::drain::Load;
use crate::metrics::TargetMetrics;
use crate::pool::Pool;

/// Timeouts of the data path.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (431 beyond).
    pub max_header_bytes: usize,
    /// Largest request body (413 beyond).
    pub max_body_bytes: u64,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a connect to a target may take (502 beyond).
    pub connect_timeout: Duration,
    /// How long a target may take to answer with its head (504 beyond).
    pub response_header_timeout: Duration,
    /// How long an idle keep-alive connection (client side and pooled) stays open.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A target with its runtime.
#[derive(Debug)]
pub struct TargetRt {
    /// The target as last configured.
    pub target: Target,
    /// Its address as a `Host` value, for a request that came without one.
    pub authority: HeaderValue,
    /// Its idle HTTP/1.1 connections.
    pub pool: Pool,
    requests: AtomicU64,
    connections: AtomicU64,
    /// Cancelled at the drain deadline: TCP and upgraded connections close (see
    /// [`Self::cut_now`]).
    pub cut: CancellationToken,
    /// Set with `cut`, for the checks of the data path (a token's check takes a lock).
    cut_flag: AtomicBool,
    /// Its metric handles.
    pub metrics: TargetMetrics,
}

impl TargetRt {
    /// A fresh runtime with an empty pool of `slots` slots (see [`Pool::new`]).
    pub fn new(target: Target, metrics: TargetMetrics, slots: usize) -> Arc<Self> {
        let authority = HeaderValue::from_str(&target.addr.to_string())
            .expect("a socket address is a valid header value");
        Arc::new(Self {
            target,
            authority,
            pool: Pool::new(slots),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cut: CancellationToken::new(),
            cut_flag: AtomicBool::new(false),
            metrics,
        })
    }

    /// Whether it takes new requests (its pool closes when it starts draining).
    pub fn is_open(&self) -> bool {
        self.pool.is_open()
    }

    /// Closes the pool: idle connections to the target close; in-flight ones finish and are
    /// closed instead of returning to it.
    pub fn close_pool(&self) {
        self.pool.close();
    }

    /// Gives a revived target a pool again.
    pub fn reopen_pool(&self) {
        self.pool.reopen();
    }

    /// The drain deadline passed: what is still streaming on it closes.
    pub fn cut_now(&self) {
        self.cut_flag.store(true, Ordering::Release);
        self.cut.cancel();
    }

    /// Whether [`Self::cut_now`] happened.
    pub fn is_cut(&self) -> bool {
        self.cut_flag.load(Ordering::Acquire)
    }

    /// What is left on it.
    pub fn load(&self) -> Load {
        Load {
            requests: self.requests.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
        }
    }

    /// Counts a request in flight until the guard ends.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::SeqCst);
        RequestGuard {
            target: self.clone(),
            started: Instant::now(),
            done: false,
        }
    }

    /// Counts a TCP or upgraded connection until the guard drops.
    pub fn begin_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.metrics.connections.inc();
        ConnectionGuard(self.clone())
    }
}

/// An HTTP request in flight on a target: it ends (its duration is observed) at
/// [`RequestGuard::end`] or when dropped.
#[derive(Debug)]
pub struct RequestGuard {
    /// The target.
    pub target: Arc<TargetRt>,
    started: Instant,
    done: bool,
}

impl RequestGuard {
    /// Ends the request (once); returns when, for the caller's other bookkeeping.
    pub fn end(&mut self) -> Instant {
        let now = Instant::now();
        if !self.done {
            self.done = true;
            self.target
                .metrics
                .duration
                .observe(now.saturating_duration_since(self.started).as_secs_f64());
            self.target.requests.fetch_sub(1, Ordering::SeqCst);
        }
        now
    }

    /// Whether it ended.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.done {
            self.end();
        }
    }
}

/// A TCP or upgraded connection on a target.
#[derive(Debug)]
pub struct ConnectionGuard(pub Arc<TargetRt>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}
