//! `sluice promote|pause|resume|abort ID`: a hand on a running canary (`abort` stops any
//! active deployment, like `cancel`).
//!
//! Each exits 0 once the coordinator has recorded the request (65 when it refuses it: not
//! a canary in progress, already settled; 77 for a token whose role or scope does not
//! cover the service). With `--wait`, `promote` and `abort` follow the deployment until it
//! settles: `promote` exits 0 on `success`, `abort` exits 0 on `rolled_back`, both 1 on
//! anything else.

use clap::Args;
use sluice_common::api::CanaryAction;

use super::deploy::{deployment_id, follow};
use super::http::{value, Conn};
use super::output::{print_json, Format, OutputArg};
use super::CliError;

/// `sluice promote`, `pause`, `resume`, `abort`.
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// The deployment.
    pub id: String,
    /// (`promote`, `abort`) Follow the deployment until it settles; exit 0 when it ends as
    /// asked (`success`, `rolled_back`), 1 otherwise.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs one of them.
pub async fn run(action: CanaryAction, a: CanaryArgs) -> Result<(), CliError> {
    let id = deployment_id(&a.id)?;
    let d = value(&a.conn.api()?.canary_action(&id.to_string(), action).await?);
    eprintln!(
        "{} of deployment {id} recorded (now {})",
        action.as_str(),
        d["state"].as_str().unwrap_or("?")
    );
    let want = match action {
        CanaryAction::Promote => "success",
        CanaryAction::Abort => "rolled_back",
        CanaryAction::Pause | CanaryAction::Resume => "",
    };
    if !a.wait || want.is_empty() {
        if a.output.output == Format::Json {
            print_json(&d);
        }
        return Ok(());
    }
    let d = follow(&a.conn, &id.to_string()).await?;
    super::deploy::show(&d, a.output);
    match d["state"].as_str().unwrap_or("") {
        s if s == want => Ok(()),
        state => Err(CliError::DeployFailed(format!(
            "deployment {id} ended {state}, not {want}: {}",
            d["failure"].as_str().unwrap_or("")
        ))),
    }
}

/// The `--canary` argument: JSON, or `@FILE` holding it.
pub(crate) fn spec_arg(arg: &str) -> Result<serde_json::Value, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| CliError::Io {
            path: path.into(),
            source,
        })?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("--canary is not JSON: {e}")))
}

/// The canary part of `sluice status`: the step, a pause, the latest measurements.
pub(crate) fn show(d: &serde_json::Value) {
    let c = &d["canary"];
    if c.is_null() {
        return;
    }
    let step = c["step"].as_u64().unwrap_or(0);
    let steps = c["steps"].as_u64().unwrap_or(0);
    let at = if step >= steps {
        "final switch".to_string()
    } else {
        format!("step {}/{steps}", step + 1)
    };
    println!("  canary: {at}, {}% to the new version", c["weight"]);
    if let Some(why) = c["paused"].as_str() {
        println!("  paused: {why}");
    }
    let ms = c["measurements"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for m in &ms[ms.len().saturating_sub(10)..] {
        println!(
            "  measured {} at step {}: {} ({}) {}: {}",
            m["check"].as_str().unwrap_or(""),
            m["step"].as_u64().unwrap_or(0) + 1,
            m["value"],
            m["condition"].as_str().unwrap_or(""),
            m["outcome"].as_str().unwrap_or(""),
            m["detail"].as_str().unwrap_or("")
        );
    }
}
