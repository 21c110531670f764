//! `sluice lock acquire|release|list|run`: leases a CI job takes by hand, fenced by Raft
//! log indices.
//!
//! `acquire` prints the fencing token alone on stdout (`TOKEN=$(sluice lock acquire ...)`);
//! a lock someone else holds exits 75 (`EX_TEMPFAIL`: retry later). `run` wraps a command
//! in the lock: see [`super::lock_run`].

use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;
use sluice_common::names::{Holder, LockKey};
use sluice_common::time::DurationSpec;

use super::http::{checked, value, Conn};
use super::lock_run::RunArgs;
use super::output::{cell, table, OutputArg};
use super::CliError;
use sluice_common::api::{AcquireLockRequest, RenewLockRequest};
use sluice_common::locks::FencingToken;

/// `sluice lock ...`.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Take a lock and print its fencing token.
    Acquire {
        /// The key (`migration/billing-db`: a-z, 0-9, '-', '_', '.', segments split by '/').
        key: String,
        #[command(flatten)]
        lease: LeaseArgs,
        #[command(flatten)]
        conn: Conn,
    },
    /// Release a lock (only the holder of the grant with this token can).
    Release {
        /// The key.
        key: String,
        /// The fencing token `acquire` printed (`--token` is the bearer token, as everywhere).
        #[arg(long = "fencing-token", value_name = "N")]
        fencing_token: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Renew a lease for another --ttl from now (only with the grant's token).
    Renew {
        /// The key.
        key: String,
        /// The fencing token `acquire` printed (`--token` is the bearer token, as everywhere).
        #[arg(long = "fencing-token", value_name = "N")]
        fencing_token: u64,
        /// New lease length from now.
        #[arg(long, default_value = "60s", value_parser = duration)]
        ttl: DurationSpec,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the live locks.
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a command while holding a lock: renewed while it runs, released however it
    /// ends; exits with the command's exit code.
    Run(RunArgs),
}

/// Who takes a lock, for how long, and how long to wait for it.
#[derive(Debug, clap::Args)]
pub struct LeaseArgs {
    /// Who holds it, shown to whoever finds it taken (default: user@host).
    #[arg(long)]
    pub holder: Option<String>,
    /// Why, shown to whoever finds it taken.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Lease length (`30s`, `5m`); it lapses unless renewed. Default 60s for `acquire`,
    /// 30s for `run` (which renews it every third of that).
    #[arg(long, value_parser = duration)]
    pub ttl: Option<DurationSpec>,
    /// Wait up to this long if someone else holds it (default: do not wait).
    #[arg(long, value_parser = duration)]
    pub wait: Option<DurationSpec>,
}

impl LeaseArgs {
    /// `--ttl`, or `default`.
    pub(crate) fn ttl_or(&self, default: DurationSpec) -> DurationSpec {
        self.ttl.unwrap_or(default)
    }
}

/// A duration flag (`250ms`, `30s`, `5m`, `1h30m`).
pub(crate) fn duration(s: &str) -> Result<DurationSpec, String> {
    DurationSpec::parse(s).map_err(|e| e.to_string())
}

/// `user@host`, for a holder nobody named.
fn default_holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Takes `key`; answers the lease (`token`, `expires_at`, ...).
pub(crate) async fn acquire(
    conn: &Conn,
    key: &LockKey,
    lease: &LeaseArgs,
    ttl: DurationSpec,
) -> Result<Value, CliError> {
    if ttl.get() < Duration::from_secs(1) {
        return Err(CliError::Usage(format!(
            "--ttl {ttl}: a lease shorter than 1s cannot be renewed in time"
        )));
    }
    let holder = lease.holder.clone().unwrap_or_else(default_holder);
    let req = AcquireLockRequest {
        holder: checked(Holder::parse, &holder)?,
        reason: lease.reason.clone(),
        ttl,
        wait: lease.wait,
    };
    // The client waits `wait` beyond its usual 30 s: the coordinator holds the request.
    let api = conn.api_with(None)?;
    Ok(value(&api.acquire_lock(key, &req).await?))
}

/// Releases the grant `token` of `key`.
pub(crate) async fn release(conn: &Conn, key: &LockKey, token: u64) -> Result<Value, CliError> {
    Ok(value(
        &conn.api()?.release_lock(key, FencingToken(token)).await?,
    ))
}

/// Renews the grant `token` of `key` for `ttl` from now.
pub(crate) async fn renew(
    conn: &Conn,
    key: &LockKey,
    token: u64,
    ttl: DurationSpec,
) -> Result<Value, CliError> {
    let req = RenewLockRequest {
        token: FencingToken(token),
        ttl,
    };
    Ok(value(&conn.api()?.renew_lock(key, &req).await?))
}

/// The fencing token of a lease.
pub(crate) fn token_of(lease: &Value) -> Result<u64, CliError> {
    lease["token"]
        .as_u64()
        .ok_or_else(|| CliError::Data(format!("the coordinator returned no token: {lease}")))
}

/// Runs a lock subcommand.
pub async fn run(cmd: LockCommand) -> Result<(), CliError> {
    match cmd {
        LockCommand::Acquire { key, lease, conn } => {
            let key = checked(LockKey::parse, &key)?;
            let v = acquire(&conn, &key, &lease, lease.ttl_or(DurationSpec::secs(60))).await?;
            let token = token_of(&v)?;
            eprintln!(
                "lock {key} acquired by {} until {}; release with: sluice lock release {key} --fencing-token {token}",
                cell(&v["holder"]),
                cell(&v["expires_at"])
            );
            println!("{token}");
            Ok(())
        }
        LockCommand::Release {
            key,
            fencing_token,
            conn,
        } => {
            let key = checked(LockKey::parse, &key)?;
            release(&conn, &key, fencing_token).await?;
            eprintln!("lock {key} released");
            Ok(())
        }
        LockCommand::Renew {
            key,
            fencing_token,
            ttl,
            conn,
        } => {
            let key = checked(LockKey::parse, &key)?;
            let v = renew(&conn, &key, fencing_token, ttl).await?;
            eprintln!("lock {key} renewed until {}", cell(&v["expires_at"]));
            Ok(())
        }
        LockCommand::List { output, conn } => {
            let v = value(&conn.api()?.locks().await?);
            output.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["locks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        vec![
                            cell(&l["key"]),
                            cell(&l["holder"]),
                            cell(&l["token"]),
                            cell(&l["expires_at"]),
                            cell(&l["reason"]),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["KEY", "HOLDER", "TOKEN", "EXPIRES", "REASON"], &rows)
                );
            });
            Ok(())
        }
        LockCommand::Run(args) => super::lock_run::run(args).await,
    }
}
