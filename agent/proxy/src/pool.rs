//! Connections to a target: hyper's HTTP/1.1 client connections, kept in a per-target pool
//! (one slot per data thread) between requests and driven by the task of the request that
//! uses them (the client connection's task), not by a task of their own. A request and the target connection it
//! went out on therefore stay on one task, hence one thread, with no channel hop in
//! between; the pool is one short, uncontended mutex per checkout and per return.
//!
//! An idle connection is not polled while it waits in the pool; it is polled once when it
//! is taken (a connection the target closed meanwhile is noticed then and dropped), and the
//! drain loop drops those idle longer than the idle timeout ([`Pool::evict`]).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::reqbody::ReqBody;
use crate::workers;

/// The HTTP/1.1 connection state machine of one target connection.
type Conn = http1::Connection<TokioIo<TcpStream>, ReqBody>;

/// One connection to a target.
pub struct Upstream {
    send: SendRequest<ReqBody>,
    /// `None` once it ended, or when a task of its own drives it (upgrades). Boxed once
    /// per connection: the state machine is large, and the body that holds it moves.
    conn: Option<Pin<Box<Conn>>>,
    /// Taken from the pool (it served a request before).
    pub reused: bool,
    /// When it went back to the pool ([`crate::clock::millis`]).
    idle_since: u64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("reused", &self.reused)
            .field("open", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Connects (TCP_NODELAY) within `timeout`. With `upgrade`, the connection is driven by
    /// a task of its own, which hands the socket over on a `101` (it is never pooled).
    pub async fn connect(
        addr: std::net::SocketAddr,
        timeout: Duration,
        upgrade: bool,
    ) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        let conn = if upgrade {
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upgrade connection to a target ended");
                }
            });
            None
        } else {
            Some(Box::pin(conn))
        };
        Ok(Self {
            send,
            conn,
            reused: false,
            idle_since: 0,
        })
    }

    /// Drives the connection (reads, writes, notices a close). `false` once it ended.
    pub fn poll_conn(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(r) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "target connection ended");
                }
                // Dropping it answers what is still waiting on it with an error.
                self.conn = None;
                false
            }
        }
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile. A
    /// request the connection did not take (it had closed) comes back in the error.
    pub async fn send(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<ReqBody>>> {
        let mut answer = std::pin::pin!(self.send.try_send_request(req));
        poll_fn(|cx| {
            if self.conn.is_some() {
                self.poll_conn(cx);
            }
            answer.as_mut().poll(cx)
        })
        .await
    }

    /// Whether it can serve another request once its answer is read.
    fn reusable(&self) -> bool {
        self.conn.is_some() && !self.send.is_closed()
    }
}

#[derive(Debug, Default)]
struct Idle {
    closed: bool,
    conns: Vec<Upstream>,
}

/// The idle connections to one target, in one slot per data thread ([`workers::slot`]): a
/// connection is registered with the driver of the thread that opened it, so it is only
/// used again there.
#[derive(Debug)]
pub struct Pool {
    /// Mirrors the slots' `closed` for the lock-free check of the data path.
    closed: AtomicBool,
    slots: Box<[Mutex<Idle>]>,
}

impl Pool {
    /// An open pool of `slots` slots (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            closed: AtomicBool::new(false),
            slots: (0..slots.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    fn mine(&self) -> &Mutex<Idle> {
        &self.slots[workers::slot() % self.slots.len()]
    }

    /// Whether it is open (closed: the target drains, nothing new goes to it).
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Closes it: idle connections close now, busy ones when their answer is done.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in self.slots.iter() {
            let dropped = {
                let mut idle = slot.lock().expect("pool lock");
                idle.closed = true;
                std::mem::take(&mut idle.conns)
            };
            drop(dropped);
        }
    }

    /// Opens it again (a revived target).
    pub fn reopen(&self) {
        for slot in self.slots.iter() {
            slot.lock().expect("pool lock").closed = false;
        }
        self.closed.store(false, Ordering::Release);
    }

    /// The calling thread's most recently used idle connection that is still open, polled
    /// once by the caller's task (which notices a close the target sent meanwhile).
    pub async fn checkout(&self) -> Option<Upstream> {
        let slot = self.mine();
        loop {
            let mut up = slot.lock().expect("pool lock").conns.pop()?;
            if poll_fn(|cx| Poll::Ready(up.poll_conn(cx))).await && up.reusable() {
                up.reused = true;
                return Some(up);
            }
        }
    }

    /// Takes back a connection whose last answer was read to its end (dropped instead if
    /// it cannot serve again or the pool closed).
    pub fn give_back(&self, mut up: Upstream, now_ms: u64) {
        // Let it see the end of the answer and ask for the next request; a real waker is
        // registered by whoever polls it next.
        let mut cx = Context::from_waker(Waker::noop());
        if !up.poll_conn(&mut cx) || !up.reusable() {
            return;
        }
        up.idle_since = now_ms;
        let mut idle = self.mine().lock().expect("pool lock");
        if !idle.closed {
            idle.conns.push(up);
            return;
        }
        drop(idle);
    }

    /// Drops the connections idle for `idle_timeout` and those the target closed.
    pub fn evict(&self, now_ms: u64, idle_timeout: Duration) {
        let limit = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut cx = Context::from_waker(Waker::noop());
        for slot in self.slots.iter() {
            let mut dropped = Vec::new();
            {
                let mut idle = slot.lock().expect("pool lock");
                if idle.conns.is_empty() {
                    continue;
                }
                let conns = std::mem::take(&mut idle.conns);
                for mut up in conns {
                    let stale = now_ms.saturating_sub(up.idle_since) >= limit;
                    if stale || !up.poll_conn(&mut cx) {
                        dropped.push(up);
                    } else {
                        idle.conns.push(up);
                    }
                }
            }
            drop(dropped);
        }
    }

    /// How many idle connections it holds.
    pub fn idle_len(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.lock().expect("pool lock").conns.len())
            .sum()
    }
}
