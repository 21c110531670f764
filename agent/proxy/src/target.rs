//! One target's runtime: its connection pool, its live counters, and the token that closes
//! what is left on it when its drain deadline passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sluice_common::proxy::Target;
use tokio_util::sync::CancellationToken;

use crate::drain::Load;
use crate::metrics::TargetMetrics;
use crate::reqbody::ReqBody;

/// The pooled HTTP/1.1 client to one target.
pub type HttpClient = Client<HttpConnector, ReqBody>;

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
    client: Mutex<Option<HttpClient>>,
    requests: AtomicU64,
    connections: AtomicU64,
    /// Cancelled at the drain deadline: TCP, upgraded and streaming responses close.
    pub cut: CancellationToken,
    /// Its metric handles.
    pub metrics: TargetMetrics,
}

fn client(limits: &Limits) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(limits.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(limits.idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

impl TargetRt {
    /// A fresh runtime with an empty pool.
    pub fn new(target: Target, limits: &Limits, metrics: TargetMetrics) -> Arc<Self> {
        Arc::new(Self {
            target,
            client: Mutex::new(Some(client(limits))),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cut: CancellationToken::new(),
            metrics,
        })
    }

    /// The pooled client (`None` once draining started: nothing new goes to it).
    pub fn client(&self) -> Option<HttpClient> {
        self.client.lock().expect("client lock").clone()
    }

    /// Drops the pool: idle connections to the target close; in-flight ones finish and are
    /// closed instead of returning to it.
    pub fn close_pool(&self) {
        self.client.lock().expect("client lock").take();
    }

    /// Gives a revived target a pool again.
    pub fn reopen_pool(&self, limits: &Limits) {
        let mut c = self.client.lock().expect("client lock");
        if c.is_none() {
            *c = Some(client(limits));
        }
    }

    /// What is left on it.
    pub fn load(&self) -> Load {
        Load {
            requests: self.requests.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::SeqCst);
        RequestGuard {
            target: self.clone(),
            started: std::time::Instant::now(),
        }
    }

    /// Counts a TCP or upgraded connection until the guard drops.
    pub fn begin_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::SeqCst);
        self.metrics.connections.inc();
        ConnectionGuard(self.clone())
    }
}

/// An HTTP request in flight on a target (observes its duration when dropped).
#[derive(Debug)]
pub struct RequestGuard {
    /// The target.
    pub target: Arc<TargetRt>,
    started: std::time::Instant,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.target
            .metrics
            .duration
            .observe(self.started.elapsed().as_secs_f64());
        self.target.requests.fetch_sub(1, Ordering::SeqCst);
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
