//! `sluice registry login|list|remove`: private registry logins, over HTTPS to a
//! coordinator (an admin's credentials; see [`super::http`] for `--addr`, `--token`,
//! `--ca`). The password is read from stdin only (`--password-stdin`), never from an
//! argument, which other users could read in the process list.

use std::io::Read;

use clap::Subcommand;
use reqwest::StatusCode;

use super::http::{problem_error, value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;
use sluice_common::api::{PutRegistryRequest, RegistryHost, RegistryPassword, RegistryUsername};
use sluice_common::problem::{ErrorCode, Problem};

/// `sluice registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Store (or replace) the login for a registry host; the password comes from stdin.
    Login {
        /// The registry host as image references name it (`registry.example.com:5000`).
        host: String,
        /// The username.
        #[arg(long, short = 'u')]
        username: String,
        /// Read the password (or access token) from stdin; required: never pass it as an
        /// argument.
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List the stored logins (hosts and usernames; never passwords).
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        conn: Conn,
    },
    /// Forget the login for a registry host.
    Remove {
        /// The registry host.
        host: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A 400 as the coordinator would give it, for input refused before any request.
fn invalid(field: &str, e: String) -> CliError {
    problem_error(
        StatusCode::BAD_REQUEST,
        &Problem::new(ErrorCode::InvalidRequest, e.clone()).with_field(field, e),
    )
}

/// The password from stdin: everything read, one trailing newline (`echo`) dropped.
fn password_from_stdin() -> Result<RegistryPassword, CliError> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::Usage(format!("reading the password from stdin: {e}")))?;
    let s = s
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&s);
    RegistryPassword::parse(s).map_err(|e| invalid("password", e))
}

/// Runs a registry subcommand.
pub async fn run(cmd: RegistryCommand) -> Result<(), CliError> {
    match cmd {
        RegistryCommand::Login {
            host,
            username,
            password_stdin: _,
            conn,
        } => {
            let host = RegistryHost::parse(&host).map_err(|e| invalid("host", e))?;
            let username =
                RegistryUsername::parse(&username).map_err(|e| invalid("username", e))?;
            let password = password_from_stdin()?;
            conn.api()?
                .put_registry(&host, &PutRegistryRequest { username, password })
                .await?;
            eprintln!("login for registry {host} stored");
            Ok(())
        }
        RegistryCommand::List { output, conn } => {
            let v = value(&conn.api()?.registries().await?);
            output.print(&v, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            cell(&r["host"]),
                            cell(&r["username"]),
                            cell(&r["updated_at"]),
                        ]
                    })
                    .collect();
                println!("{}", table(&["HOST", "USERNAME", "UPDATED"], &rows));
            });
            Ok(())
        }
        RegistryCommand::Remove { host, conn } => {
            let host = RegistryHost::parse(&host).map_err(|e| invalid("host", e))?;
            conn.api()?.remove_registry(&host).await?;
            eprintln!("login for registry {host} removed");
            Ok(())
        }
    }
}
