//! `sluice token create|list|revoke`: CI bearer tokens, over HTTPS to a coordinator (see
//! [`super::http`] for `--addr`, `--token` (an admin's here) and `--ca`). `create` prints
//! the new secret alone on stdout, and only there, so `SECRET=$(sluice token create ...)`
//! works; everything else goes to stderr.

use clap::Subcommand;
use serde_json::{json, Value};

use super::http::{as_request, problem_error, value, Conn};
use super::output::{cell, table, OutputArg};
use super::CliError;
use sluice_common::api::{CreateTokenRequest, TokenName};
use sluice_common::problem::{ErrorCode, Problem};

/// `sluice token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (once: only its hash is kept).
    Create {
        /// A unique name (a-z, 0-9, '.', '_', '-'); never reused, even after revocation.
        #[arg(long)]
        name: String,
        /// viewer (reads), deployer (deploys, rollbacks, locks) or admin (everything).
        #[arg(long, value_parser = ["viewer", "deployer", "admin"])]
        role: String,
        /// For deployers: the only services it may deploy, comma-separated.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List tokens (names, roles, scopes; never secrets).
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a token subcommand.
pub async fn run(cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            services,
            conn,
        } => {
            let req: CreateTokenRequest =
                as_request(&json!({"name": name, "role": role, "services": services}))?;
            let created = conn.api()?.create_token(&req).await?;
            let secret = created.secret.clone();
            let v = value(&created);
            eprintln!(
                "token {name} ({role}{}) created; its secret is shown this once:",
                scope(&v)
            );
            println!("{secret}");
            Ok(())
        }
        TokenCommand::List { output, conn } => {
            let v = value(&conn.api()?.tokens().await?);
            output.print(&v, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let state = if t["revoked"] == true {
                            "revoked"
                        } else {
                            "active"
                        };
                        let services = match cell(&t["services"]).as_str() {
                            "-" => "*".to_string(),
                            s => s.to_string(),
                        };
                        vec![cell(&t["name"]), cell(&t["role"]), state.into(), services]
                    })
                    .collect();
                println!("{}", table(&["NAME", "ROLE", "STATE", "SERVICES"], &rows));
            });
            Ok(())
        }
        TokenCommand::Revoke { name, conn } => {
            if name.contains('/') {
                return Err(CliError::Usage(format!("invalid token name {name:?}")));
            }
            // The coordinator reads the name from the path: refused as it would refuse it.
            let name = TokenName::parse(&name).map_err(|e| {
                problem_error(
                    reqwest::StatusCode::BAD_REQUEST,
                    &Problem::new(ErrorCode::InvalidRequest, e),
                )
            })?;
            conn.api()?.revoke_token(&name).await?;
            eprintln!("token {name} revoked");
            Ok(())
        }
    }
}

fn scope(v: &Value) -> String {
    let s: Vec<&str> = v["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if s.is_empty() {
        String::new()
    } else {
        format!(", services {}", s.join(","))
    }
}
