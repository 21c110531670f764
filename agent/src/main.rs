//! `sluice-agent --config FILE`: runs the agent until SIGTERM or SIGINT.
//! `sluice-agent simulate --count N ...`: runs N simulated agents (in-memory engines) in
//! this process, for scale tests (see `sluice_agent::sim`).
//!
//! Exit status: 0 after a clean shutdown, 64 (`EX_USAGE`) for a bad config (systemd's unit
//! does not restart on it), 1 when the agent cannot start (listener, data directory).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_agent::config::AgentConfig;
use tokio_util::sync::CancellationToken;

/// The Sluice agent: owns this server's Docker daemon and port table.
#[derive(Debug, Parser)]
#[command(version, subcommand_negates_reqs = true)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, env = "SLUICE_AGENT_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// Log format: plain or json (one JSON object per line).
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"], global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs many simulated agents in this process: each a whole agent (its own certificate
    /// issued from the CA, store, API listener, registration and heartbeats) over an
    /// in-memory container engine that has every image. For scale tests, never production.
    Simulate(sluice_agent::sim::Fleet),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(sluice_common::systemd::colour_logs())
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(Command::Simulate(fleet)) = args.command {
        return rt.block_on(simulate(fleet));
    }
    let Some(path) = args.config else {
        eprintln!("sluice-agent: --config is required");
        return ExitCode::from(64);
    };
    let config = match AgentConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-agent: {e}");
            return ExitCode::from(64);
        }
    };
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let running = match sluice_agent::build(config, shutdown.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sluice-agent: {e}");
                // Unusable or mismatched TLS files are configuration errors: exit 64 so
                // systemd does not restart into the same failure.
                let config_error = matches!(
                    e,
                    sluice_agent::StartError::Tls(_) | sluice_agent::StartError::Identity { .. }
                );
                return ExitCode::from(if config_error { 64 } else { 1 });
            }
        };
        sluice_common::systemd::serve_until_signal(shutdown.clone());
        running.wait().await;
        ExitCode::SUCCESS
    })
}

/// Runs a simulated fleet until SIGTERM or SIGINT.
async fn simulate(fleet: sluice_agent::sim::Fleet) -> ExitCode {
    let shutdown = CancellationToken::new();
    let running = match sluice_agent::sim::start(&fleet, &shutdown).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice-agent simulate: {e}");
            shutdown.cancel();
            return ExitCode::from(1);
        }
    };
    tracing::info!(agents = running.len(), "simulated fleet running");
    sluice_common::systemd::serve_until_signal(shutdown.clone());
    sluice_agent::sim::wait(running).await;
    ExitCode::SUCCESS
}
