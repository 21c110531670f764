//! `sluice deploy` and `sluice status`: what a CI job runs.
//!
//! Exit codes (stable, for scripts): 0 the deployment succeeded (or, without `--wait`, was
//! accepted); 1 it failed or was rolled back; 2 validation refused it and nothing was
//! touched; 64 usage; 65 the API refused the request as invalid; 69 the coordinator cannot
//! be reached or cannot serve; 77 the token was refused.
//!
//! `--wait` follows the deployment's event stream ([`follow`], shared with `rollback` and
//! `demo`): on a terminal one progress line rewritten in place, otherwise (CI logs) one
//! timestamped line per change.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde_json::Value;

use super::http::{value, Conn};
use super::output::OutputArg;
use super::CliError;
use sluice_common::api::CreateDeploymentRequest;
use sluice_common::backoff::Backoff;

/// `sluice deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The service (with --file: which of the file's services; default: each in turn).
    #[arg(long)]
    pub service: Option<String>,
    /// The image (`registry/repo:tag`).
    #[arg(long)]
    pub image: Option<String>,
    /// A service file (`sluice.toml`) that describes the service instead of these flags.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
    /// With --file: the image tag to deploy (`--tag "$CI_COMMIT_SHA"`).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// A target server (repeat for several).
    #[arg(long = "server", help_heading = "Targeting")]
    pub servers: Vec<String>,
    /// Or every server with this label (`key=value`; repeat to require several).
    #[arg(long = "selector", help_heading = "Targeting")]
    pub selector: Vec<String>,
    /// The port the process listens on inside the container.
    #[arg(long, default_value_t = 8080, help_heading = "Container")]
    pub container_port: u16,
    /// An explicit host port (else one is allocated and kept per server).
    #[arg(long, help_heading = "Container")]
    pub port: Option<u16>,
    /// An environment variable, `KEY=VALUE` (repeat).
    #[arg(long = "env", value_name = "KEY=VALUE", help_heading = "Container")]
    pub env: Vec<String>,
    /// A secret environment variable, `KEY=VALUE`: never shown again anywhere.
    #[arg(
        long = "secret-env",
        value_name = "KEY=VALUE",
        help_heading = "Container"
    )]
    pub secret_env: Vec<String>,
    /// Health check: an HTTP path (`/health`), `tcp`, `docker` or `none`.
    #[arg(long, default_value = "tcp", help_heading = "Health check")]
    pub health: String,
    /// Between attempts (http, tcp; default 1s).
    #[arg(long, value_name = "DURATION", help_heading = "Health check")]
    pub health_interval: Option<String>,
    /// Per-attempt timeout (http, tcp; default 2s).
    #[arg(long, value_name = "DURATION", help_heading = "Health check")]
    pub health_timeout: Option<String>,
    /// Consecutive failures tolerated after the start period (http, tcp; default 10).
    #[arg(long, value_name = "N", help_heading = "Health check")]
    pub health_retries: Option<u32>,
    /// Grace time in which failures do not count (http, tcp; default 0s).
    #[arg(long, value_name = "DURATION", help_heading = "Health check")]
    pub health_start_period: Option<String>,
    /// How long to wait for Docker's HEALTHCHECK to say healthy (docker; default 1m).
    #[arg(long, value_name = "DURATION", help_heading = "Health check")]
    pub health_deadline: Option<String>,
    /// The strategy: `blue_green` (default: start the new container beside the old one
    /// behind sluice-proxy, switch when healthy), `canary` (move traffic in steps, see
    /// --canary) or `recreate` (stop the old one, then start the new one: for services that
    /// cannot run two copies at once).
    #[arg(long, help_heading = "Rollout")]
    pub strategy: Option<String>,
    /// Keep checking the new version this long after its first good check; a failure
    /// rolls back (default: the cluster's, 10s).
    #[arg(long, value_name = "DURATION", help_heading = "Rollout")]
    pub min_healthy: Option<String>,
    /// blue_green: how long the old version's TCP and WebSocket connections may go on
    /// after the switch (default 30s).
    #[arg(long, value_name = "DURATION", help_heading = "Rollout")]
    pub drain_timeout: Option<String>,
    /// canary: the steps and analysis, as the API's `canary` object in JSON (or @FILE),
    /// e.g. '{"steps":[{"weight":10,"pause":"1m"},{"weight":50,"pause":"1m"}]}'.
    #[arg(long, value_name = "JSON|@FILE", help_heading = "Rollout")]
    pub canary: Option<String>,
    /// How many servers are deployed at once (default 1).
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub max_parallel: Option<u32>,
    /// Give up on a server whose deploy has not finished by then, and roll back (default
    /// 10m).
    #[arg(long, value_name = "DURATION", help_heading = "Rollout")]
    pub progress_deadline: Option<String>,
    /// How long to wait for the service lock (`30s`, `5m`; default 0: refuse at once).
    #[arg(long, value_name = "DURATION", help_heading = "Rollout")]
    pub lock_wait: Option<String>,
    /// A protected label the deployment may touch (`env=prod`).
    #[arg(long = "allow-label", help_heading = "Targeting")]
    pub allow_labels: Vec<String>,
    /// The container spec as JSON (`{"resources": {"memory": "512m"}}`), or `@FILE`.
    #[arg(long, value_name = "JSON|@FILE", help_heading = "Container")]
    pub spec: Option<String>,
    /// Deploy only if the service's version index is still N (`sluice plan` prints it):
    /// a deployment accepted since is refused (409 service_changed, exit 75).
    #[arg(long, value_name = "N", help_heading = "Rollout")]
    pub check_index: Option<u64>,
    /// Idempotency key: a retried CI step gets the original deployment back.
    #[arg(long, env = "SLUICE_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,
    /// Follow the deployment until it settles and exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// `sluice status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The deployment id.
    pub id: String,
    #[command(flatten)]
    pub output: OutputArg,
    #[command(flatten)]
    pub conn: Conn,
}

fn stamp() -> String {
    sluice_common::time::Timestamp::from_system(SystemTime::now()).to_string()
}

/// Prints a deployment: the API's JSON, or a summary with every failed check and each
/// server's state (and the failed container's log tail).
pub(crate) fn show(d: &Value, output: OutputArg) {
    output.print(d, |d| {
        println!(
            "deployment {} of {} ({}): {}",
            d["id"].as_str().unwrap_or(""),
            d["service"].as_str().unwrap_or(""),
            d["image"].as_str().unwrap_or(""),
            d["state"].as_str().unwrap_or("")
        );
        for c in d["validation"].as_array().into_iter().flatten() {
            if c["ok"] == false {
                println!(
                    "  check {} on {} failed: {}",
                    c["check"].as_str().unwrap_or(""),
                    c["server"].as_str().unwrap_or(""),
                    c["detail"].as_str().unwrap_or("")
                );
            }
        }
        for s in d["servers"].as_array().into_iter().flatten() {
            println!(
                "  {}: {} {}",
                s["server"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or(""),
                s["detail"].as_str().unwrap_or("")
            );
            if let Some(tail) = s["log_tail"].as_str() {
                for line in tail.lines() {
                    println!("    | {line}");
                }
            }
        }
        super::canary::show(d);
    });
}

/// A settled deployment as the exit status of `deploy --wait`: success is 0, a validation
/// refusal 2, anything else (failed, rolled back) 1.
pub(crate) fn verdict(d: &Value) -> Result<(), CliError> {
    let state = d["state"].as_str().unwrap_or("");
    let failure = d["failure"].as_str().unwrap_or(state).to_string();
    let validated_out = d["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .is_some_and(|t| t["from"] == "validating" && t["to"] == "failed");
    match state {
        "success" => Ok(()),
        "failed" if validated_out => Err(CliError::Refused(format!(
            "refused by validation: {failure}"
        ))),
        _ => Err(CliError::DeployFailed(format!(
            "deployment {state}: {failure}"
        ))),
    }
}

/// How many times a broken event stream is reopened before giving up.
const STREAM_RETRIES: u32 = 5;

/// Follows deployment `id` until it settles, printing each change of state or phase to
/// stderr, and returns the final record.
///
/// On a terminal the progress is one line rewritten in place (`\r`, erase line); otherwise
/// (a CI log, a pipe) each change is its own timestamped line, so the log reads as a
/// history. A dropped stream (a coordinator restarting, a leader change) is reopened: the
/// coordinator sends the current view first, so nothing is missed but repeats, which are
/// not printed.
pub(crate) async fn follow(conn: &Conn, id: &str) -> Result<Value, CliError> {
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut failures = 0;
    // Reconnect with the one retry policy (jittered: many CI jobs watching one coordinator
    // that restarts do not come back together).
    let policy = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    let mut retries = policy.retries(u64::from(std::process::id()));
    loop {
        match follow_once(conn, id, &mut progress).await {
            Ok(()) => break,
            Err(e @ (CliError::Auth(_) | CliError::Data(_))) => {
                progress.finish();
                return Err(e);
            }
            Err(e) => {
                failures += 1;
                if failures > STREAM_RETRIES {
                    progress.finish();
                    return Err(e);
                }
                progress.note(&format!("event stream interrupted ({e}); reconnecting"));
                tokio::time::sleep(retries.next_delay()).await;
            }
        }
    }
    progress.finish();
    // The stream ends once the deployment settles; read the final record to be sure.
    Ok(value(&conn.api()?.deployment(id).await?))
}

async fn follow_once(conn: &Conn, id: &str, progress: &mut Progress) -> Result<(), CliError> {
    let mut events = conn.api_with(None)?.deployment_events(id).await?;
    // Bytes in, events out: a chunk may end anywhere, even inside a UTF-8 sequence or
    // between a CR and its LF.
    let mut parser = sluice_common::sse::Parser::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let chunk = tokio::select! {
            c = events.chunk() => c.map_err(|e| CliError::Unavailable(format!("event stream: {e}")))?,
            // On a terminal the line keeps counting seconds between events.
            _ = tick.tick(), if progress.tty => {
                progress.redraw();
                continue;
            }
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        for event in parser.feed(&chunk) {
            if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
                progress.update(&v);
            }
        }
    }
}

/// The progress display of [`follow`]: on a terminal one line, rewritten in place with the
/// seconds elapsed; elsewhere one timestamped line per change.
struct Progress {
    tty: bool,
    started: std::time::Instant,
    last: String,
    open_line: bool,
}

impl Progress {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            started: std::time::Instant::now(),
            last: String::new(),
            open_line: false,
        }
    }

    fn update(&mut self, v: &Value) {
        let line = progress_line(v);
        if line == self.last {
            return;
        }
        self.last = line;
        if self.tty {
            self.redraw();
        } else {
            eprintln!("{} {}", stamp(), self.last);
        }
    }

    /// Rewrites the terminal line: erase it, then the state, phase and seconds elapsed, cut
    /// to the terminal's width (`COLUMNS`, else 80) so it never wraps.
    fn redraw(&mut self) {
        if !self.tty || self.last.is_empty() {
            return;
        }
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(80);
        eprint!(
            "{}",
            live_line(&self.last, self.started.elapsed().as_secs(), width)
        );
        self.open_line = true;
    }

    /// A message of its own, not overwritten by the next update.
    fn note(&mut self, msg: &str) {
        self.finish();
        eprintln!("{} {msg}", stamp());
    }

    /// Ends the rewritten line, if one is open.
    fn finish(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

/// The terminal's progress line: back to column 0, erase the line, then the text and the
/// seconds elapsed, cut short of `width` so the terminal never wraps it (a wrapped line
/// would not be erased by the next rewrite).
fn live_line(text: &str, secs: u64, width: usize) -> String {
    let full = format!("{text} ({secs}s)");
    let cut: String = full.chars().take(width.saturating_sub(1)).collect();
    format!("\r\x1b[2K{cut}")
}

/// `state: phase`, or the state alone when the phase only repeats it.
fn progress_line(v: &Value) -> String {
    let state = v["state"].as_str().unwrap_or("?");
    match v["phase"].as_str().map(str::trim) {
        None | Some("") => state.to_string(),
        Some(p) if p == state || p == state.replace('_', " ") => state.to_string(),
        Some(p) => format!("{state}: {p}"),
    }
}

/// Runs `sluice deploy`: one deployment, or one per service of a service file (in file
/// order, each followed to its end with --wait before the next).
pub async fn run(a: DeployArgs) -> Result<(), CliError> {
    for req in request::requests(&a)? {
        deploy_one(&a, req).await?;
    }
    Ok(())
}

async fn deploy_one(a: &DeployArgs, req: CreateDeploymentRequest) -> Result<(), CliError> {
    let created = a
        .conn
        .api()?
        .create_deployment(&req, a.idempotency_key.as_deref())
        .await?;
    let d = value(&created.deployment);
    let id = d["id"].as_str().unwrap_or("").to_string();
    eprintln!("{} deployment {id} accepted", stamp());
    if !a.wait {
        println!("{id}");
        return Ok(());
    }
    let d = follow(&a.conn, &id).await?;
    show(&d, a.output);
    verdict(&d)
}

/// Runs `sluice status`: prints the deployment; fails only when it cannot.
pub async fn status(a: StatusArgs) -> Result<(), CliError> {
    let id = deployment_id(&a.id)?;
    let d = value(&a.conn.api()?.deployment(&id.to_string()).await?);
    show(&d, a.output);
    Ok(())
}

/// A deployment id from the command line, checked before it goes into a URL.
pub(crate) fn deployment_id(s: &str) -> Result<uuid::Uuid, CliError> {
    uuid::Uuid::parse_str(s.trim())
        .map_err(|_| CliError::Usage(format!("{s:?} is not a deployment id (a UUID)")))
}

pub mod request;
#[cfg(test)]
mod tests;
