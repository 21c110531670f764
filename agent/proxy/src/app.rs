//! Start (take over, or restore from disk and systemd), serve, and retire.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_common::names::ServiceName;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::server::{self, Access};
use crate::handoff::{self, Offer, OfferedRoute};
use crate::persist::{self, Stored};
use crate::runtime::Runtime;
use crate::table;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory or the route table.
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    /// A socket.
    #[error("{what}: {source}")]
    Io {
        /// Which.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// Runs the proxy until SIGTERM or a successor takes over, then drains. Returns when done.
pub async fn run(config: Config) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(io(config.state_dir.display().to_string()))?;
    let rt = Runtime::new(
        config.state_dir.clone(),
        config.limits(),
        std::env::var_os("NOTIFY_SOCKET").is_some(),
    );
    let received = if config.no_takeover {
        None
    } else {
        let dir = config.state_dir.clone();
        match tokio::task::spawn_blocking(move || handoff::receive(&dir))
            .await
            .expect("handoff task")
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "handoff from the running proxy failed; starting on my own");
                None
            }
        }
    };
    let took_over = received.is_some();
    let control_std = {
        let mut t = rt.table.lock().await;
        match received {
            Some(r) => {
                let mut fds: Vec<Option<OwnedFd>> = r.fds.into_iter().map(Some).collect();
                for route in r.offer.routes {
                    let l = route
                        .fd
                        .and_then(|i| fds.get_mut(i).and_then(Option::take))
                        .map(std::net::TcpListener::from);
                    table::install(&rt, &mut t, &route.service, route.spec, route.generation, l);
                }
                let control = fds
                    .get_mut(r.offer.control)
                    .and_then(Option::take)
                    .map(std::os::unix::net::UnixListener::from)
                    .ok_or_else(|| StartError::Io {
                        what: "handoff".into(),
                        source: std::io::Error::other("no control socket in the offer"),
                    })?;
                control
                    .set_nonblocking(true)
                    .map_err(io("control socket"))?;
                successor_ok(r.conn);
                control
            }
            None => {
                let routes = persist::load(&config.state_dir)?;
                let mut passed = crate::systemd::take_listeners();
                for (service, Stored { spec, generation }) in routes {
                    let l = match passed.remove(service.as_str()) {
                        Some(l) if l.local_addr().ok() == Some(spec.listen) => Some(l),
                        _ => match table::bind(spec.listen) {
                            Ok(l) => Some(l),
                            Err(e) => {
                                tracing::error!(error = %e, %service, listen = %spec.listen, "cannot listen for a restored route");
                                None
                            }
                        },
                    };
                    if let Some(l) = &l {
                        let _ = l.set_nonblocking(true);
                    }
                    table::install(&rt, &mut t, &service, spec, generation, l);
                }
                server::bind(&config.control_socket)
                    .map_err(io(config.control_socket.display().to_string()))?
            }
        }
    };
    let control_stop = CancellationToken::new();
    let access = Access {
        uids: config.control_uids.clone(),
    };
    let control_handle = control_std.try_clone().map_err(io("control socket"))?;
    server::spawn(
        rt.clone(),
        tokio::net::UnixListener::from_std(control_std).map_err(io("control socket"))?,
        access.clone(),
        control_stop.clone(),
    );
    if let Some(addr) = config.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io(format!("metrics listen {addr}")))?;
        server::spawn_metrics(rt.clone(), l);
    }
    spawn_sweeper(rt.clone());
    let successor = CancellationToken::new();
    let hpath = handoff::path(&config.state_dir);
    let _ = std::fs::remove_file(&hpath);
    let hl =
        std::os::unix::net::UnixListener::bind(&hpath).map_err(io(hpath.display().to_string()))?;
    hl.set_nonblocking(true).map_err(io("handoff socket"))?;
    let hl = tokio::net::UnixListener::from_std(hl).map_err(io("handoff socket"))?;
    spawn_handoff(
        rt.clone(),
        hl,
        control_handle,
        control_stop.clone(),
        access,
        successor.clone(),
    );
    crate::systemd::ready(took_over);
    tracing::info!(
        routes = rt.table.lock().await.routes.len(),
        took_over,
        "sluice-proxy serving"
    );

    tokio::select! {
        _ = sluice_common_shutdown() => {
            tracing::info!("stop signal: draining");
            rt.retiring.store(true, Ordering::SeqCst);
            control_stop.cancel();
        }
        _ = successor.cancelled() => tracing::info!("a successor took over: draining"),
    }
    crate::systemd::stopping();
    drain(&rt).await;
    Ok(())
}

fn successor_ok(mut conn: std::os::unix::net::UnixStream) {
    use std::io::Write;
    if let Err(e) = conn.write_all(b"ok\n") {
        tracing::warn!(error = %e, "could not confirm the handoff");
    }
}

async fn sluice_common_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn spawn_sweeper(rt: Arc<Runtime>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let mut t = rt.table.lock().await;
            table::sweep(&rt, &mut t);
        }
    });
}

/// Stops accepting, drains every target, waits for the last connection (bounded).
async fn drain(rt: &Arc<Runtime>) {
    let longest = {
        let mut t = rt.table.lock().await;
        table::retire(&mut t);
        t.routes
            .values()
            .map(|e| e.spec.drain_timeout.0)
            .max()
            .unwrap_or_default()
    };
    rt.graceful.cancel();
    rt.tracker.close();
    let bound = longest + rt.limits.response_header_timeout + Duration::from_secs(5);
    if tokio::time::timeout(bound, rt.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain bound; exiting anyway");
    }
}

fn spawn_handoff(
    rt: Arc<Runtime>,
    listener: tokio::net::UnixListener,
    control: std::os::unix::net::UnixListener,
    control_stop: CancellationToken,
    access: Access,
    successor: CancellationToken,
) {
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
            // Quiesce the control API: stop accepting (requests wait in the shared backlog
            // for the successor) and hold the table so no change is in flight.
            control_stop.cancel();
            rt.retiring.store(true, Ordering::SeqCst);
            let t = rt.table.lock().await;
            let mut fds: Vec<std::os::fd::BorrowedFd<'_>> = Vec::new();
            let mut routes = Vec::new();
            let services: BTreeMap<&ServiceName, _> = t.routes.iter().collect();
            for (service, e) in services {
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
            fds.push(control.as_fd());
            let offer = Offer {
                version: handoff::VERSION,
                routes,
                control: fds.len() - 1,
                fds: fds.len(),
            };
            let Ok(mut conn) = stream.into_std() else {
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let sent = tokio::task::block_in_place(|| {
                handoff::send(&mut conn, &offer, &fds)
                    .and_then(|()| handoff::await_ok(&mut conn, Duration::from_secs(30)))
            });
            drop(fds);
            drop(t);
            match sent {
                Ok(()) => {
                    tracing::info!("handed over to a successor");
                    successor.cancel();
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "handoff failed: serving on");
                    rt.retiring.store(false, Ordering::SeqCst);
                    let stop = CancellationToken::new();
                    match control
                        .try_clone()
                        .and_then(tokio::net::UnixListener::from_std)
                    {
                        Ok(l) => {
                            server::spawn(rt.clone(), l, access.clone(), stop.clone());
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot serve the control socket again")
                        }
                    }
                    // Later handoffs stop the new control loop.
                    return spawn_handoff_again(rt, listener, control, stop, access, successor);
                }
            }
        }
    });
}

fn spawn_handoff_again(
    rt: Arc<Runtime>,
    listener: tokio::net::UnixListener,
    control: std::os::unix::net::UnixListener,
    control_stop: CancellationToken,
    access: Access,
    successor: CancellationToken,
) {
    spawn_handoff(rt, listener, control, control_stop, access, successor);
}
