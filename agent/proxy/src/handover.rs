//! The predecessor's side of a handoff: serve `handoff.sock`, and when a successor
//! connects, quiesce the control API, send every socket, wait for its `ok`, then retire.
//! A handoff that fails half-way resumes serving as if nothing happened.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::names::ServiceName;
use tokio_util::sync::CancellationToken;

use crate::control::server::{self, Access};
use crate::handoff::{self, Offer, OfferedRoute};
use crate::table::Routes;

/// The process-wide sockets a successor takes besides the routes' listeners.
#[derive(Debug)]
pub struct Sockets {
    /// The control socket (a handle; the accept loop has its own).
    pub control: std::os::unix::net::UnixListener,
    /// The metrics listener, if any.
    pub metrics: Option<std::net::TcpListener>,
    /// Who may use the control socket.
    pub access: Access,
    /// Stops the control accept loop now running.
    pub control_stop: CancellationToken,
    /// Cancelled once a successor confirmed: the process drains and exits.
    pub successor: CancellationToken,
}

/// Serves `handoff.sock` until a successor took over.
pub fn spawn(routes: Arc<Routes>, listener: tokio::net::UnixListener, mut s: Sockets) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let me = rustix::process::getuid().as_raw();
            match stream.peer_cred() {
                Ok(c) if c.uid() == 0 || c.uid() == me => {}
                _ => continue,
            }
            let rt = &routes.rt;
            match hand_over(&routes, stream, &s).await {
                Ok(()) => {
                    tracing::info!("handed over to a successor");
                    s.successor.cancel();
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "handoff failed: serving on");
                    rt.retiring.store(false, Ordering::SeqCst);
                    s.control_stop = CancellationToken::new();
                    match s
                        .control
                        .try_clone()
                        .and_then(tokio::net::UnixListener::from_std)
                    {
                        Ok(l) => {
                            server::spawn(
                                routes.clone(),
                                l,
                                s.access.clone(),
                                s.control_stop.clone(),
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot serve the control socket again")
                        }
                    }
                }
            }
        }
    });
}

async fn hand_over(
    routes: &Routes,
    stream: tokio::net::UnixStream,
    s: &Sockets,
) -> std::io::Result<()> {
    let rt = &routes.rt;
    // Quiesce the control API: stop accepting (requests wait in the shared backlog for the
    // successor) and hold the table so that no change is in flight while it is copied.
    s.control_stop.cancel();
    rt.retiring.store(true, Ordering::SeqCst);
    let t = routes.table.lock().await;
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    let mut routes = Vec::new();
    let by_service: BTreeMap<&ServiceName, _> = t.routes.iter().collect();
    for (service, e) in by_service {
        let fd = e.listener.as_ref().map(|l| {
            fds.push(l.as_fd());
            fds.len() - 1
        });
        routes.push(OfferedRoute {
            service: service.clone(),
            spec: e.spec.clone(),
            generation: e.generation,
            fd,
        });
    }
    fds.push(s.control.as_fd());
    let control = fds.len() - 1;
    let metrics = s.metrics.as_ref().map(|l| {
        fds.push(l.as_fd());
        fds.len() - 1
    });
    let offer = Offer {
        version: handoff::VERSION,
        routes,
        control,
        metrics,
        fds: fds.len(),
    };
    let mut conn = stream.into_std()?;
    conn.set_nonblocking(false)?;
    tokio::task::block_in_place(|| {
        handoff::send(&mut conn, &offer, &fds)?;
        handoff::await_ok(&mut conn, Duration::from_secs(30))
    })
}
