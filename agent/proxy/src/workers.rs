//! The data path's threads: one single-threaded tokio runtime per thread (`--data-threads`,
//! one per core by default), each serving whole client connections handed to it by the
//! accept loops, like HAProxy's threads. Each waits in its own epoll, so an event is picked
//! up by the thread that owns the connection at once (in a multi-threaded runtime only one
//! worker at a time polls the driver, the others sleep on a condvar until notified), and a
//! request, its target connection and its answer never leave that thread. Idle pooled
//! target connections are kept per thread ([`slot`]) for the same reason.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The pool slot of the calling thread: `1..=n` on data thread `n`, 0 anywhere else (the
/// main runtime, whose workers share one driver).
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

/// The data threads.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` threads; with 0, connections are served on the caller's runtime.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("sluice-data-{i}"))
                .spawn(move || {
                    SLOT.with(|s| s.set(i + 1));
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    // Runs the connections spawned on it until the process exits.
                    rt.block_on(std::future::pending::<()>());
                })?;
            handles.push(
                rx.recv()
                    .map_err(|_| std::io::Error::other("data thread did not start"))??,
            );
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// How many pool slots a target needs: one per data thread, plus the main runtime's.
    pub fn slots(&self) -> usize {
        self.handles.len() + 1
    }

    /// Runs `f` on the next data thread in turn (on the caller's runtime if there is none).
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.handles.is_empty() {
            tokio::spawn(f);
            return;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(f);
    }
}
