//! `sluice rollback ID [--wait]` and `sluice cancel ID`: requests on a deployment.
//!
//! A rollback puts the previous version back where a successful deployment put its own;
//! with `--wait` it is followed like `deploy --wait` and exits 0 once the deployment is
//! `rolled_back`, 1 if it settles any other way. A cancel stops a deployment still pending
//! or in progress (the coordinator rolls back whatever it already moved).

use clap::Args;
use serde_json::Value;

use super::deploy::{deployment_id, follow, show};
use super::http::{value, Conn};
use super::output::{print_json, Format, OutputArg};
use super::CliError;

/// `sluice rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The deployment to roll back (it must have succeeded).
    pub id: String,
    /// Follow the rollback until it settles; exit 0 when rolled back, 1 otherwise.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// `sluice cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The deployment to stop.
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

async fn request(conn: &Conn, id: &str, what: &str) -> Result<(uuid::Uuid, Value), CliError> {
    let id = deployment_id(id)?;
    let api = conn.api()?;
    let d = match what {
        "rollback" => api.rollback_deployment(&id.to_string()).await?,
        _ => api.cancel_deployment(&id.to_string()).await?,
    };
    Ok((id, value(&d)))
}

/// Runs `sluice rollback`.
pub async fn rollback(a: RollbackArgs) -> Result<(), CliError> {
    let (id, d) = request(&a.conn, &a.id, "rollback").await?;
    eprintln!("rollback of deployment {id} requested");
    if !a.wait {
        // The record still says success until the sequencer has acted: show it only to
        // a script that asked for the JSON.
        if a.output.output == Format::Json {
            print_json(&d);
        } else {
            eprintln!("follow it with: sluice status {id}");
        }
        return Ok(());
    }
    let d = follow(&a.conn, &id.to_string()).await?;
    show(&d, a.output);
    match d["state"].as_str().unwrap_or("") {
        "rolled_back" => Ok(()),
        state => Err(CliError::DeployFailed(format!(
            "the rollback did not complete: deployment {state}: {}",
            d["failure"].as_str().unwrap_or("")
        ))),
    }
}

/// Runs `sluice cancel`.
pub async fn cancel(a: CancelArgs) -> Result<(), CliError> {
    let (id, d) = request(&a.conn, &a.id, "cancel").await?;
    eprintln!(
        "cancel of deployment {id} requested (now {})",
        d["state"].as_str().unwrap_or("?")
    );
    Ok(())
}
