//! Start (take over, or restore from disk and systemd), serve, and retire.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::server::{self, Access};
use crate::handoff;
use crate::persist::{self, Stored};
use crate::runtime::Runtime;
use crate::table::{self, Routes};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory or the route table.
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    /// A bad flag.
    #[error("{0}")]
    Usage(String),
    /// `--upgrade`: the successor did not take over.
    #[error("upgrade failed: {0}")]
    Upgrade(String),
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
        config.data_threads(),
    )
    .map_err(io("data threads"))?;
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
    let routes = Routes::new(rt.clone());
    let took_over = received.is_some();
    let mut confirm = None;
    let mut metrics_std: Option<std::net::TcpListener> = None;
    let control_std = {
        let mut t = routes.table.lock().await;
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
                metrics_std = r
                    .offer
                    .metrics
                    .and_then(|i| fds.get_mut(i).and_then(Option::take))
                    .map(std::net::TcpListener::from);
                confirm = Some(r.conn);
                control
            }
            None => {
                let routes = persist::load(&config.state_dir)?;
                let mut passed = crate::systemd::take_listeners();
                for (service, Stored { spec, generation }) in routes {
                    let from_systemd = passed
                        .remove(service.as_str())
                        .unwrap_or_default()
                        .into_iter()
                        .find(|l| l.local_addr().ok() == Some(spec.listen));
                    let l = match from_systemd {
                        Some(l) => Some(l),
                        None => match table::bind(spec.listen) {
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
        uids: control_uids(&config)?,
    };
    let control_handle = control_std.try_clone().map_err(io("control socket"))?;
    server::spawn(
        routes.clone(),
        tokio::net::UnixListener::from_std(control_std).map_err(io("control socket"))?,
        access.clone(),
        control_stop.clone(),
    );
    // The metrics listener: the predecessor's if it had the same address, else bound here.
    let metrics_std = match (config.metrics_listen, metrics_std) {
        (Some(addr), Some(l)) if l.local_addr().ok() == Some(addr) => Some(l),
        (Some(addr), _) => Some(table::bind(addr).map_err(io(format!("metrics listen {addr}")))?),
        (None, _) => None,
    };
    let metrics_handle = match &metrics_std {
        Some(l) => {
            l.set_nonblocking(true).map_err(io("metrics listener"))?;
            let tl =
                tokio::net::TcpListener::from_std(l.try_clone().map_err(io("metrics listener"))?)
                    .map_err(io("metrics listener"))?;
            server::spawn_metrics(rt.clone(), tl);
            metrics_std
        }
        None => None,
    };
    spawn_sweeper(routes.clone());
    // Everything accepts now: the predecessor may stop.
    if let Some(conn) = confirm {
        successor_ok(conn);
    }
    let successor = CancellationToken::new();
    let hpath = handoff::path(&config.state_dir);
    let _ = std::fs::remove_file(&hpath);
    let hl =
        std::os::unix::net::UnixListener::bind(&hpath).map_err(io(hpath.display().to_string()))?;
    hl.set_nonblocking(true).map_err(io("handoff socket"))?;
    let hl = tokio::net::UnixListener::from_std(hl).map_err(io("handoff socket"))?;
    crate::handover::spawn(
        routes.clone(),
        hl,
        crate::handover::Sockets {
            control: control_handle,
            metrics: metrics_handle,
            access,
            control_stop: control_stop.clone(),
            successor: successor.clone(),
        },
    );
    crate::systemd::ready(took_over);
    tracing::info!(
        routes = routes.table.lock().await.routes.len(),
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
    drain(&routes).await;
    Ok(())
}

fn control_uids(config: &Config) -> Result<Vec<u32>, StartError> {
    let passwd = if config.control_uids.iter().all(|v| v.parse::<u32>().is_ok()) {
        String::new()
    } else {
        std::fs::read_to_string("/etc/passwd").map_err(io("/etc/passwd"))?
    };
    crate::config::resolve_uids(&config.control_uids, &passwd).map_err(StartError::Usage)
}

/// `--upgrade`: starts a successor with the same flags and waits until it serves the
/// control socket (it took over every socket by then), then returns.
pub async fn upgrade(config: &Config) -> Result<(), StartError> {
    let exe = std::env::current_exe().map_err(io("current executable"))?;
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--upgrade")
        .collect();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(io("spawn the successor"))?;
    let pid = child.id();
    let client = crate::control::Client::new(&config.control_socket);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartError::Usage(format!(
                "the successor exited with {status}"
            )));
        }
        if matches!(client.status().await, Ok(s) if s.pid == pid) {
            tracing::info!(pid, "the successor serves");
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(StartError::Usage(
                "the successor did not take over within 60s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        _ = crate::systemd::parent_gone() => {}
    }
}

fn spawn_sweeper(routes: Arc<Routes>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let mut t = routes.table.lock().await;
            crate::sweep::sweep(&routes.rt, &mut t);
        }
    });
}

/// Stops accepting, drains every target, waits for the last connection (bounded).
async fn drain(routes: &Routes) {
    let rt = &routes.rt;
    let longest = {
        let mut t = routes.table.lock().await;
        crate::sweep::retire(&mut t);
        t.routes
            .values()
            .map(|e| e.spec.drain_timeout.0)
            .max()
            .unwrap_or_default()
    };
    rt.begin_graceful();
    rt.tracker.close();
    let bound = longest + rt.limits.response_header_timeout + Duration::from_secs(5);
    if tokio::time::timeout(bound, rt.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain bound; exiting anyway");
    }
}
