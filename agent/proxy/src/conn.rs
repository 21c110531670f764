//! One client connection of the `http` path: what its requests share (runtime, route,
//! peer) and what its idle timer reads (requests in flight, when the last one ended).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use crate::clock;
use crate::route::RouteShared;
use crate::runtime::Runtime;

/// A client connection's shared state.
#[derive(Debug)]
pub struct ClientConn {
    /// The process.
    pub rt: Arc<Runtime>,
    /// The route it came in on.
    pub route: Arc<RouteShared>,
    /// The client.
    pub peer: SocketAddr,
    /// The client's IP as an `X-Forwarded-For` value (made once per connection).
    pub peer_ip: HeaderValue,
    inflight: AtomicU64,
    /// When the last request ended ([`clock::millis`]); the connection's start before.
    last_ms: AtomicU64,
    h2: AtomicBool,
}

impl ClientConn {
    /// The state of a connection accepted now.
    pub fn new(rt: Arc<Runtime>, route: Arc<RouteShared>, peer: SocketAddr) -> Arc<Self> {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Arc::new(Self {
            rt,
            route,
            peer,
            peer_ip,
            inflight: AtomicU64::new(0),
            last_ms: AtomicU64::new(clock::now_millis()),
            h2: AtomicBool::new(false),
        })
    }

    /// Counts a request in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            conn: self.clone(),
            at: None,
        }
    }

    /// Whether answers should close it: the process or its route drains.
    pub fn draining(&self) -> bool {
        self.rt.is_graceful() || self.route.is_stopped()
    }

    /// Notes that it speaks HTTP/2.
    pub fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// Whether it speaks HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// How long it has been idle at `now_ms`; `None` while a request is in flight.
    pub fn idle_ms(&self, now_ms: u64) -> Option<u64> {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A request in flight on a client connection (ends when dropped).
#[derive(Debug)]
pub struct InFlight {
    conn: Arc<ClientConn>,
    at: Option<Instant>,
}

impl InFlight {
    /// Ends it at `now` (a time the caller already read).
    pub fn end_at(mut self, now: Instant) {
        self.at = Some(now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let at = self.at.unwrap_or_else(Instant::now);
        self.conn
            .last_ms
            .store(clock::millis(at), Ordering::Relaxed);
        self.conn.inflight.fetch_sub(1, Ordering::Release);
    }
}
