//! `sluice deploy` and `sluice status`: what a CI job runs.
//!
//! Exit codes (stable, for scripts): 0 the deployment succeeded (or, without `--wait`, was
//! accepted); 1 it failed or was rolled back; 2 validation refused it and nothing was
//! touched; 64 usage; 65 the API refused the request as invalid; 69 the coordinator cannot
//! be reached or cannot serve; 77 the token was refused.

use std::io::IsTerminal;
use std::time::SystemTime;

use clap::Args;
use serde_json::{json, Map, Value};

use super::token::Conn;
use super::CliError;

/// `sluice deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The service.
    #[arg(long)]
    pub service: String,
    /// The image (`registry/repo:tag`).
    #[arg(long)]
    pub image: String,
    /// A target server (repeat for several).
    #[arg(long = "server")]
    pub servers: Vec<String>,
    /// Or every server with this label (`key=value`; repeat to require several).
    #[arg(long = "selector")]
    pub selector: Vec<String>,
    /// The port the process listens on inside the container.
    #[arg(long, default_value_t = 8080)]
    pub container_port: u16,
    /// An explicit host port (else one is allocated and kept per server).
    #[arg(long)]
    pub port: Option<u16>,
    /// An environment variable, `KEY=VALUE` (repeat).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// A secret environment variable, `KEY=VALUE`: never shown again anywhere.
    #[arg(long = "secret-env", value_name = "KEY=VALUE")]
    pub secret_env: Vec<String>,
    /// Health check: an HTTP path (`/health`), `tcp`, `docker` or `none`.
    #[arg(long, default_value = "tcp")]
    pub health: String,
    /// How long to wait for the service lock (`30s`, `5m`).
    #[arg(long)]
    pub lock_wait: Option<String>,
    /// A protected label the deployment may touch (`env=prod`).
    #[arg(long = "allow-label")]
    pub allow_labels: Vec<String>,
    /// Idempotency key: a retried CI step gets the original deployment back.
    #[arg(long, env = "SLUICE_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,
    /// Follow the deployment until it settles and exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    /// Print the final deployment as JSON instead of text.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `sluice status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The deployment id.
    pub id: String,
    /// text or json.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
    #[command(flatten)]
    pub conn: Conn,
}

fn split_env(
    pairs: &[String],
    secret: bool,
    into: &mut Map<String, Value>,
) -> Result<(), CliError> {
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--env {p:?}: expected KEY=VALUE")))?;
        into.insert(k.to_string(), json!({"value": v, "secret": secret}));
    }
    Ok(())
}

fn body(a: &DeployArgs) -> Result<Value, CliError> {
    if a.servers.is_empty() && a.selector.is_empty() {
        return Err(CliError::Usage("name a --server or a --selector".into()));
    }
    let mut env = Map::new();
    split_env(&a.env, false, &mut env)?;
    split_env(&a.secret_env, true, &mut env)?;
    let health = match a.health.as_str() {
        "tcp" => json!({"kind": "tcp"}),
        "docker" => json!({"kind": "docker"}),
        "none" => json!({"kind": "none"}),
        p if p.starts_with('/') => json!({"kind": "http", "path": p}),
        other => {
            return Err(CliError::Usage(format!(
                "--health {other:?}: use an HTTP path like /health, tcp, docker or none"
            )))
        }
    };
    let mut b = json!({
        "service": a.service, "image": a.image, "servers": a.servers, "selector": a.selector,
        "container_port": a.container_port, "env": env, "health": health,
        "allow_labels": a.allow_labels,
    });
    if let Some(p) = a.port {
        b["port"] = json!(p);
    }
    if let Some(w) = &a.lock_wait {
        b["lock_wait"] = json!(w);
    }
    Ok(b)
}

/// Sends a request; maps failures onto the exit codes above.
async fn call(
    conn: &Conn,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Result<reqwest::Response, CliError> {
    let url = format!("{}{path}", conn.base());
    let mut req = conn
        .client()?
        .request(method, &url)
        .bearer_auth(conn.token.trim());
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| CliError::Unavailable(format!("{url}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let p: Value = resp.json().await.unwrap_or(Value::Null);
    let mut msg = format!("{status}: {}", p["detail"].as_str().unwrap_or(""));
    for e in p["errors"].as_array().into_iter().flatten() {
        msg.push_str(&format!(
            "\n  {}: {}",
            e["field"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ));
    }
    Err(match status.as_u16() {
        401 | 403 => CliError::Auth(msg),
        s if s >= 500 => CliError::Unavailable(msg),
        _ => CliError::Data(msg),
    })
}

fn stamp() -> String {
    sluice_common::time::Timestamp::from_system(SystemTime::now()).to_string()
}

/// Prints the outcome and turns it into the exit status.
fn outcome(d: &Value, output: &str) -> Result<(), CliError> {
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(d).unwrap_or_default());
    } else {
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
    }
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

/// Runs `sluice deploy`.
pub async fn run(a: DeployArgs) -> Result<(), CliError> {
    let b = body(&a)?;
    let resp = call(
        &a.conn,
        reqwest::Method::POST,
        "/v1/deployments",
        Some(&b),
        a.idempotency_key.as_deref(),
    )
    .await?;
    let d: Value = resp
        .json()
        .await
        .map_err(|e| CliError::Data(e.to_string()))?;
    let id = d["id"].as_str().unwrap_or("").to_string();
    eprintln!("{} deployment {id} accepted", stamp());
    if !a.wait {
        println!("{id}");
        return Ok(());
    }
    let tty = std::io::stderr().is_terminal();
    let mut events = call(
        &a.conn,
        reqwest::Method::GET,
        &format!("/v1/deployments/{id}/events"),
        None,
        None,
    )
    .await?;
    let (mut buf, mut last, mut final_view) = (String::new(), String::new(), None::<Value>);
    while let Some(chunk) = events
        .chunk()
        .await
        .map_err(|e| CliError::Unavailable(format!("event stream: {e}")))?
    {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            let line = format!(
                "{} {}",
                v["state"].as_str().unwrap_or(""),
                v["phase"].as_str().unwrap_or("")
            );
            if line != last {
                if tty {
                    eprint!("\r\x1b[2K{} {line}", stamp());
                } else {
                    eprintln!("{} {line}", stamp());
                }
                last = line;
            }
            final_view = Some(v);
        }
    }
    if tty {
        eprintln!();
    }
    // The stream ends once the deployment settles; read the final record to be sure.
    let resp = call(
        &a.conn,
        reqwest::Method::GET,
        &format!("/v1/deployments/{id}"),
        None,
        None,
    )
    .await?;
    let d: Value = resp
        .json()
        .await
        .unwrap_or(final_view.unwrap_or(Value::Null));
    outcome(&d, &a.output)
}

/// Runs `sluice status`.
pub async fn status(a: StatusArgs) -> Result<(), CliError> {
    let resp = call(
        &a.conn,
        reqwest::Method::GET,
        &format!("/v1/deployments/{}", a.id),
        None,
        None,
    )
    .await?;
    let d: Value = resp
        .json()
        .await
        .map_err(|e| CliError::Data(e.to_string()))?;
    match outcome(&d, &a.output) {
        // `status` reports; it only fails when it cannot.
        Err(CliError::DeployFailed(_) | CliError::Refused(_)) => Ok(()),
        other => other,
    }
}
