//! What the whole process shares with the data path: metrics, the tasks that carry traffic,
//! the limits, and the switch that makes client connections close gracefully. The route
//! table itself is [`crate::table::Routes`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::route::RouteShared;
use crate::target::{Limits, TargetRt};
use crate::workers::Workers;

/// The process's state.
#[derive(Debug)]
pub struct Runtime {
    /// The registry and its metrics.
    pub metrics: Metrics,
    /// Every connection task (client connections, TCP relays, upgraded relays).
    pub tracker: TaskTracker,
    /// Set when the process drains: HTTP client connections finish their requests and
    /// close (see [`Self::begin_graceful`]).
    graceful: AtomicBool,
    /// When the process started.
    pub started: Instant,
    /// Data-path limits for every route.
    pub limits: Limits,
    /// Where `routes.json` lives.
    pub state_dir: PathBuf,
    /// Set once a successor took over (or SIGTERM came): the control API refuses changes.
    pub retiring: AtomicBool,
    /// Whether listeners are pushed into systemd's file-descriptor store.
    pub fdstore: bool,
    /// The threads that serve the connections.
    pub workers: Workers,
}

impl Runtime {
    /// A runtime, with its data threads started.
    pub fn new(
        state_dir: PathBuf,
        limits: Limits,
        fdstore: bool,
        data_threads: usize,
    ) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            metrics: Metrics::new(),
            tracker: TaskTracker::new(),
            graceful: AtomicBool::new(false),
            started: Instant::now(),
            limits,
            state_dir,
            retiring: AtomicBool::new(false),
            fdstore,
            workers: Workers::start(data_threads)?,
        }))
    }

    /// The process drains: every HTTP client connection answers its next request with
    /// `Connection: close` (HTTP/2: GOAWAY) and closes once idle. Client connections look
    /// at this on each request and on their idle tick.
    pub fn begin_graceful(&self) {
        self.graceful.store(true, Ordering::Release);
    }

    /// Whether [`Self::begin_graceful`] happened.
    pub fn is_graceful(&self) -> bool {
        self.graceful.load(Ordering::Acquire)
    }

    /// Counts a request or connection the proxy itself failed.
    pub fn error(&self, route: &RouteShared, target: Option<&Arc<TargetRt>>) {
        match target {
            Some(t) => t.metrics.request("error"),
            None => self.metrics.target(&route.service, "none").request("error"),
        }
    }
}
