//! systemd: readiness, the file-descriptor store (listeners survive `systemctl restart`:
//! connections wait in the backlog instead of being refused), and `LISTEN_FDS` on start.
//! Everything is a no-op without `NOTIFY_SOCKET` / `LISTEN_FDS`.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use sd_notify::NotifyState;
use sluice_common::names::ServiceName;

fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `READY=1`; after a handoff also `MAINPID=` (this process is the unit's main process now,
/// which needs `NotifyAccess=all`).
pub fn ready(took_over: bool) {
    if !under_systemd() {
        return;
    }
    let pid = std::process::id();
    let mut states = vec![NotifyState::Ready];
    if took_over {
        states.push(NotifyState::MainPid(pid));
    }
    if let Err(e) = sd_notify::notify(&states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    if under_systemd() {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
}

/// Pushes a route's listener into the store under the service's name (systemd ignores a
/// socket it already holds).
pub fn store(service: &ServiceName, listener: &std::net::TcpListener) {
    if !under_systemd() {
        return;
    }
    let name = format!("route-{service}");
    if let Err(e) = sd_notify::notify_with_fds(
        &[NotifyState::FdStore, NotifyState::FdName(&name)],
        &[listener.as_fd()],
    ) {
        tracing::warn!(error = %e, %service, "could not store the listener in systemd");
    }
}

/// Removes a deleted route's listener from the store.
pub fn forget(service: &ServiceName) {
    if !under_systemd() {
        return;
    }
    let name = format!("route-{service}");
    let _ = sd_notify::notify(&[NotifyState::FdStoreRemove, NotifyState::FdName(&name)]);
}

/// The listeners systemd passed (`LISTEN_FDS` + `LISTEN_FDNAMES`), by service (a service may
/// have several if it moved ports; the caller keeps the one on its address).
pub fn take_listeners() -> BTreeMap<String, Vec<std::net::TcpListener>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let mut out: BTreeMap<String, Vec<std::net::TcpListener>> = BTreeMap::new();
    for i in 0..fds.len() {
        let name = names.get(i).cloned().unwrap_or_default();
        let Some(service) = name.strip_prefix("route-") else {
            continue;
        };
        match fds.take_tcp_listener(i) {
            Ok(Some(l)) => out.entry(service.to_string()).or_default().push(l),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, %name, "a stored fd is not a TCP listener"),
        }
    }
    out
}

/// Resolves when the parent that started this proxy with `SLUICE_EXIT_WITH_STDIN=1`
/// (`sluice dev`, which holds the write end of our standard input) is gone, however it died:
/// our standard input reaches end-of-file. Never resolves without the variable.
pub async fn parent_gone() {
    if std::env::var_os("SLUICE_EXIT_WITH_STDIN").is_none_or(|v| v != "1") {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
    tracing::warn!("standard input closed (the parent is gone): shutting down");
}
