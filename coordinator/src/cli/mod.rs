//! The `sluice` command line: one clap enum, one module per subcommand.
//!
//! Adding a subcommand is one variant in [`Command`] and one module with its own args type
//! and `run`. Every failure is a [`CliError`] with a sysexits-style exit code, so scripts can
//! tell a typo (64) from a refusal to overwrite (73) from a broken file (65).
//!
//! # Layout
//! - [`http`]: the connection flags and the one HTTPS path to a coordinator, with the
//!   problem+json → exit code mapping; [`output`]: `--output text|json` and tables.
//! - One module per command: [`ca`], [`token`], [`dev`] (and its `--demo`, [`demo`], which
//!   builds the sample app with [`testapp_build`], shared with the test harness),
//!   [`deploy`] (also `status`, and the event-stream follower `rollback` reuses),
//!   [`rollback`] (also `cancel`), [`services`], [`servers`], [`ports`], [`lock`] and
//!   [`lock_run`], [`cluster`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_common::api::CanaryAction;

pub mod audit;
pub mod ca;
pub mod canary;
pub mod cluster;
pub mod demo;
pub mod deploy;
pub mod dev;
pub mod http;
pub mod keys;
pub mod lock;
pub mod lock_run;
pub mod output;
pub mod plan;
pub mod ports;
pub mod registry;
pub mod rollback;
pub mod servers;
pub mod service_file;
pub mod services;
pub mod testapp_build;
pub mod token;

/// Sluice: deployments without SSH.
#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 done; 1 the deployment failed or was rolled back; 2 validation \
                  refused it; 64 usage; 65 the request was refused as invalid; 66 a file is \
                  missing; 69 the coordinator is unreachable or cannot serve; 73 refusing to \
                  overwrite; 75 a lock is held by someone else (or was lost); 77 the token \
                  was refused. `lock run` exits with its command's code."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the project CA and issue certificates.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Create, list and revoke CI bearer tokens (needs an admin token).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Store, list and remove private registry logins (needs an admin token); the
    /// password is read from stdin.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Rotate the cluster key that seals secrets at rest.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run a single-node coordinator and a local agent for development (state kept in
    /// `.sluice-dev`); prints the next commands. With --demo, first shows a deployment
    /// and an automatic rollback.
    Dev(dev::DevArgs),
    /// Deploy an image; with --wait, follow it and exit 0 on success, 1 when it failed or
    /// was rolled back, 2 when validation refused it.
    Deploy(Box<deploy::DeployArgs>),
    /// Show what a deployment would change, per server, without doing it (every check
    /// runs; nothing is locked or written). Exits 0 when nothing would change, 2 when
    /// something would, 65 when the request or a check is invalid.
    Plan(Box<deploy::DeployArgs>),
    /// Check a service file (`sluice.toml`) offline: every service parses and makes a valid
    /// request. Exits 0 when valid, 65 when not (naming the line and column), 66 when the
    /// file is missing.
    Validate(deploy::request::ValidateArgs),
    /// Show a deployment.
    Status(deploy::StatusArgs),
    /// Roll a successful deployment back to the previous version; with --wait, follow it
    /// and exit 0 once rolled back, 1 otherwise.
    Rollback(rollback::RollbackArgs),
    /// Stop a pending or running deployment (what it already moved is rolled back).
    Cancel(rollback::CancelArgs),
    /// Promote a canary: skip its remaining pauses and analyses; with --wait, exit 0 once
    /// it succeeded, 1 otherwise.
    Promote(canary::CanaryArgs),
    /// Pause a canary at its current step until resumed or promoted.
    Pause(canary::CanaryArgs),
    /// Resume a paused canary (its step's pause and analysis start afresh).
    Resume(canary::CanaryArgs),
    /// Abort a deployment (a canary: every server back to the old version at once); with
    /// --wait, exit 0 once rolled back, 1 otherwise.
    Abort(canary::CanaryArgs),
    /// List services: image, server and port of each.
    Services(services::ServicesArgs),
    /// List servers and change their policy (forbid, allow, labels).
    #[command(subcommand)]
    Servers(servers::ServersCommand),
    /// Show the port ledger, of every server or one.
    Ports(ports::PortsArgs),
    /// Take, release, list locks, or run a command under one.
    #[command(subcommand)]
    Lock(lock::LockCommand),
    /// Show the coordinators' Raft cluster, add or remove a member.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// List, export and verify the hash-chained audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Why a command failed. The message is for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit 64, `EX_USAGE`).
    #[error("{0}")]
    Usage(String),
    /// Input data that cannot be used: a malformed certificate, a key that does not match
    /// (exit 65, `EX_DATAERR`).
    #[error("{0}")]
    Data(String),
    /// A file that should exist does not (exit 66, `EX_NOINPUT`).
    #[error("{path}: {source}")]
    NoInput {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The deployment ended failed or rolled back (exit 1).
    #[error("{0}")]
    DeployFailed(String),
    /// The deployment was refused by validation; nothing was touched (exit 2).
    #[error("{0}")]
    Refused(String),
    /// The coordinator could not be reached or cannot serve now (exit 69, `EX_UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// A lock someone else holds (exit 75, `EX_TEMPFAIL`: retry later).
    #[error("{0}")]
    Busy(String),
    /// A lock was lost while a command ran under it; the command was stopped (exit 75).
    #[error("{0}")]
    LockLost(String),
    /// Pass on another program's exit code (`lock run`); the message may be empty.
    #[error("{message}")]
    Exit {
        /// The code.
        code: u8,
        /// Said on stderr, unless empty.
        message: String,
    },
    /// The token or certificate was refused (exit 77, `EX_NOPERM`).
    #[error("{0}")]
    Auth(String),
    /// Refusing to overwrite (exit 73, `EX_CANTCREAT`).
    #[error("{0}")]
    Exists(String),
    /// Reading or writing failed (exit 74, `EX_IOERR`).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::DeployFailed(_) => 1,
            CliError::Refused(_) => 2,
            CliError::Unavailable(_) => 69,
            CliError::Auth(_) => 77,
            CliError::Busy(_) | CliError::LockLost(_) => 75,
            CliError::Exit { code, .. } => *code,
            CliError::Usage(_) => 64,
            CliError::Data(_) => 65,
            CliError::NoInput { .. } => 66,
            CliError::Exists(_) => 73,
            CliError::Io { .. } => 74,
        }
    }
}

impl From<sluice_common::tls::TlsError> for CliError {
    fn from(e: sluice_common::tls::TlsError) -> Self {
        use sluice_common::tls::TlsError;
        match e {
            TlsError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                CliError::NoInput { path, source }
            }
            TlsError::Io { path, source } => CliError::Io { path, source },
            other => CliError::Data(other.to_string()),
        }
    }
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Ca(cmd) => ca::run(cmd),
        Command::Token(cmd) => token::run(cmd).await,
        Command::Registry(cmd) => registry::run(cmd).await,
        Command::Keys(cmd) => keys::run(cmd),
        Command::Dev(args) => dev::run(args).await,
        Command::Deploy(args) => deploy::run(*args).await,
        Command::Plan(args) => plan::run(*args).await,
        Command::Validate(args) => deploy::request::validate(&args),
        Command::Status(args) => deploy::status(args).await,
        Command::Rollback(args) => rollback::rollback(args).await,
        Command::Cancel(args) => rollback::cancel(args).await,
        Command::Promote(args) => canary::run(CanaryAction::Promote, args).await,
        Command::Pause(args) => canary::run(CanaryAction::Pause, args).await,
        Command::Resume(args) => canary::run(CanaryAction::Resume, args).await,
        Command::Abort(args) => canary::run(CanaryAction::Abort, args).await,
        Command::Services(args) => services::run(args).await,
        Command::Servers(cmd) => servers::run(cmd).await,
        Command::Ports(args) => ports::run(args).await,
        Command::Lock(cmd) => lock::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
    }
}

/// The whole program: parse `args`, run, print the outcome, return the exit code.
pub fn main_with(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and succeed; every other parse error is a usage
            // error, including a bare `sluice` (clap would say 2).
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            if !msg.is_empty() {
                eprintln!("sluice: {msg}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn lock_run_takes_the_command_after_the_separator() {
        let cli = Cli::try_parse_from([
            "sluice", "lock", "run", "ci/x", "--ttl", "9s", "--addr", "a:1", "--token", "t", "--",
            "sh", "-c", "exit 3",
        ])
        .unwrap();
        let Command::Lock(lock::LockCommand::Run(r)) = cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(r.command, ["sh", "-c", "exit 3"]);
        assert_eq!(
            r.lease.ttl.unwrap().get(),
            std::time::Duration::from_secs(9)
        );
    }
}
