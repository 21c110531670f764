//! systemd integration for the daemons (`Type=notify`): `READY=1` once serving,
//! `STOPPING=1` on shutdown, and `WATCHDOG=1` at half the unit's `WatchdogSec` while the
//! runtime is alive. Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.
//! Also the stop signal both daemons wait for.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Tells systemd the service is ready, and keeps its watchdog fed until `shutdown`.
pub fn ready(shutdown: CancellationToken) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not notify systemd of readiness");
    }
    if let Some(period) = sd_notify::watchdog_enabled() {
        let every = (period / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => { let _ = sd_notify::notify(&[NotifyState::Watchdog]); }
                }
            }
        });
    }
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Resolves on SIGTERM (systemd's stop) or SIGINT (Ctrl-C). The handlers are installed
/// when this is called, not when the future is first polled, so a signal that arrives in
/// between is not lost (nor does it kill the process with the default action).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(term) => {}
            _ = wait(int) => {}
        }
    }
}

/// The environment variable that makes a daemon stop when its standard input closes.
pub const EXIT_WITH_STDIN: &str = "SLUICE_EXIT_WITH_STDIN";

/// A parent that holds the write end of its child's standard input and sets
/// [`EXIT_WITH_STDIN`] (`sluice dev`) gets children that stop when it dies, however it
/// dies (`kill -9` included): its end closes, the child reads end-of-file and shuts down
/// as on SIGTERM. A no-op unless the variable is `1`.
pub fn stop_when_stdin_closes(shutdown: CancellationToken) {
    if std::env::var_os(EXIT_WITH_STDIN).is_none_or(|v| v != "1") {
        return;
    }
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        // Anything written is ignored; only end-of-file (or an error) counts.
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        tracing::warn!("standard input closed (the parent is gone): shutting down");
        stopping();
        shutdown.cancel();
    });
}

/// What both daemons do once they serve: install the stop signals, then report `READY=1`
/// (so a SIGTERM right after readiness is a clean stop), and on a signal report
/// `STOPPING=1` and cancel `shutdown`.
pub fn serve_until_signal(shutdown: CancellationToken) {
    stop_when_stdin_closes(shutdown.clone());
    let signal = shutdown_signal();
    ready(shutdown.clone());
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down");
        stopping();
        shutdown.cancel();
    });
}

/// Whether plain logs may carry ANSI colour: only when standard error is a terminal and
/// `NO_COLOR` is unset or empty (<https://no-color.org>). Logs written to a file or the
/// journal stay greppable (`grep status=500` must find `status=500`).
pub fn colour_logs() -> bool {
    use std::io::IsTerminal;
    colour_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour_wanted;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }
}
