//! `sluice lock run KEY [--ttl 30s] -- CMD ARGS...`: a command under a lock.
//!
//! Acquire (waiting up to `--wait` if it is held; without it, a held lock exits 75 and the
//! command does not run), start the command with `SLUICE_FENCING_TOKEN` (and `SLUICE_LOCK_KEY`) in its
//! environment, renew every ttl/3 while it runs, release however it ends, and exit with its
//! exit code (128 + N when signal N killed it, as shells report it).
//!
//! If the lock is lost (a renewal refused, or the coordinator unreachable until the lease
//! has lapsed), someone else may already hold it, so the command must not go on: it gets
//! SIGTERM, then SIGKILL after a grace period, and `sluice` exits 75 saying so.
//!
//! Signals: sluice passes SIGINT, SIGTERM and SIGHUP on to the command and keeps the lock
//! until the command has exited. When stdin is a terminal the command stays in the
//! terminal's process group so it can read the terminal; Ctrl-C then reaches it from the
//! terminal itself and sluice does not pass SIGINT on, which would deliver it twice.
//! Otherwise (CI) the command gets a process group of its own, so whatever signals the
//! job's group reaches the command exactly once, through sluice.

use std::io::IsTerminal;
use std::process::ExitStatus;
use std::time::Duration;

use clap::Args;
use sluice_common::names::LockKey;
use sluice_common::time::DurationSpec;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use super::http::{checked, Conn};
use super::lock::{acquire, release, renew, token_of, LeaseArgs};
use super::CliError;

/// `sluice lock run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The lock key.
    pub key: String,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub conn: Conn,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, num_args = 1.., value_name = "CMD")]
    pub command: Vec<String>,
}

/// The lease when `--ttl` is not given: short, so a lost runner's lock frees soon.
const DEFAULT_TTL: DurationSpec = DurationSpec::secs(30);

/// The grant being kept alive.
struct Lease<'a> {
    conn: &'a Conn,
    key: &'a LockKey,
    token: u64,
    ttl: DurationSpec,
}

/// How the supervised command ended.
enum End {
    /// It exited (or a signal killed it).
    Exited(ExitStatus),
    /// The lock was lost and the command stopped.
    LockLost(String),
}

/// Runs `sluice lock run`.
pub async fn run(a: RunArgs) -> Result<(), CliError> {
    let key = checked(LockKey::parse, &a.key)?;
    let ttl = a.lease.ttl_or(DEFAULT_TTL);
    let program = a.command[0].clone();
    // Install the handlers before the lease exists, so no signal can end sluice between
    // the grant and the command's start.
    let mut signals = Signals::new()?;
    // Waiting for the lock can take a while (`--wait`): a signal gives up. Should the
    // grant land anyway, its lease lapses after --ttl.
    let lease = tokio::select! {
        r = acquire(&a.conn, &key, &a.lease, ttl) => r?,
        _ = signals.int.recv() => return Err(interrupted(&key, 130)),
        _ = signals.term.recv() => return Err(interrupted(&key, 143)),
        _ = signals.hup.recv() => return Err(interrupted(&key, 129)),
    };
    let acquired = Instant::now();
    let token = token_of(&lease)?;
    eprintln!("sluice: lock {key} acquired (fencing token {token}); running {program}");

    let interactive = std::io::stdin().is_terminal();
    let mut cmd = Command::new(&program);
    cmd.args(&a.command[1..])
        .env("SLUICE_FENCING_TOKEN", token.to_string())
        .env("SLUICE_LOCK_KEY", key.as_str())
        .kill_on_drop(true);
    if !interactive {
        cmd.process_group(0);
    }
    let end = match cmd.spawn() {
        Ok(mut child) => {
            let lease = Lease {
                conn: &a.conn,
                key: &key,
                token,
                ttl,
            };
            supervise(&lease, acquired, &mut child, &mut signals, interactive).await
        }
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            release_or_warn(&a.conn, &key, token).await;
            return Err(CliError::Exit {
                code,
                message: format!("cannot run {program}: {e}"),
            });
        }
    };
    match end {
        End::Exited(status) => {
            release_or_warn(&a.conn, &key, token).await;
            let code = exit_code(status);
            if code == 0 {
                Ok(())
            } else {
                Err(CliError::Exit {
                    code,
                    message: String::new(),
                })
            }
        }
        End::LockLost(why) => {
            // Usually the grant is gone and this is refused; but if the coordinator was
            // only unreachable, the grant may still be there and should not wait out its
            // lease. Briefly: the coordinator may still be away.
            let _ =
                tokio::time::timeout(Duration::from_secs(5), release(&a.conn, &key, token)).await;
            Err(CliError::LockLost(format!(
                "lock {key} lost ({why}); {program} was stopped and its work may be incomplete"
            )))
        }
    }
}

fn interrupted(key: &LockKey, code: u8) -> CliError {
    CliError::Exit {
        code,
        message: format!("interrupted while waiting for lock {key}; the command did not run"),
    }
}

/// Renews until the child exits, passing signals on; stops the child if the lock is lost.
async fn supervise(
    lease: &Lease<'_>,
    acquired: Instant,
    child: &mut Child,
    signals: &mut Signals,
    interactive: bool,
) -> End {
    let ttl = lease.ttl.get();
    let period = ttl / 3;
    // The lease as this process knows it: from when the last successful call was sent.
    let mut lease_until = acquired + ttl;
    let mut next = acquired + period;
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(s) => End::Exited(s),
                    // Cannot happen for a child we spawned; treat it as a failure of the command.
                    Err(e) => {
                        eprintln!("sluice: waiting for the command: {e}");
                        End::Exited(std::os::unix::process::ExitStatusExt::from_raw(1 << 8))
                    }
                };
            }
            _ = signals.int.recv() => {
                if !interactive {
                    forward(child, "INT").await;
                }
            }
            _ = signals.term.recv() => forward(child, "TERM").await,
            _ = signals.hup.recv() => forward(child, "HUP").await,
            _ = tokio::time::sleep_until(next) => {
                let sent = Instant::now();
                let left = lease_until.saturating_duration_since(sent);
                let attempt = tokio::time::timeout(
                    period.min(left).max(Duration::from_millis(200)),
                    renew(lease.conn, lease.key, lease.token, lease.ttl),
                )
                .await;
                match attempt {
                    Ok(Ok(_)) => {
                        lease_until = sent + ttl;
                        next = sent + period;
                    }
                    // The coordinator said no: the grant is gone (expired, or taken over).
                    Ok(Err(e @ (CliError::Data(_) | CliError::Auth(_) | CliError::Busy(_)))) => {
                        return lost(child, e.to_string()).await;
                    }
                    // Unreachable or timed out: retry until the lease would have lapsed.
                    other => {
                        let why = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "renewal timed out".into(),
                        };
                        if Instant::now() + Duration::from_millis(500) >= lease_until {
                            return lost(child, format!("could not renew before the lease lapsed: {why}")).await;
                        }
                        eprintln!("sluice: renewing lock {} failed, retrying: {why}", lease.key);
                        next = Instant::now() + Duration::from_secs(1).min(period);
                    }
                }
            }
        }
    }
}

/// Stops the child: SIGTERM, then SIGKILL after a grace period.
async fn lost(child: &mut Child, why: String) -> End {
    eprintln!("sluice: the lock is lost ({why}); stopping the command");
    forward(child, "TERM").await;
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    End::LockLost(why)
}

/// Sends signal `name` to the child (through kill(1): this workspace forbids `unsafe`, and
/// a signal is one line of it).
async fn forward(child: &Child, name: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status()
            .await;
    }
}

async fn release_or_warn(conn: &Conn, key: &LockKey, token: u64) {
    match release(conn, key, token).await {
        Ok(_) => eprintln!("sluice: lock {key} released"),
        Err(e) => {
            eprintln!("sluice: releasing lock {key} failed ({e}); it lapses when its lease ends")
        }
    }
}

/// The exit code a shell would report: the code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).min(255) as u8,
        (None, None) => 1,
    }
}

/// The signals sluice catches while the command runs.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Self, CliError> {
        let s = |k| {
            signal(k).map_err(|source| CliError::Io {
                path: "signal handler".into(),
                source,
            })
        };
        Ok(Self {
            int: s(SignalKind::interrupt())?,
            term: s(SignalKind::terminate())?,
            hup: s(SignalKind::hangup())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_codes_are_what_a_shell_reports() {
        assert_eq!(super::exit_code(ExitStatusExt::from_raw(3 << 8)), 3);
        assert_eq!(super::exit_code(ExitStatusExt::from_raw(0)), 0);
        // Killed by SIGKILL (9).
        assert_eq!(super::exit_code(ExitStatusExt::from_raw(9)), 137);
    }
}
