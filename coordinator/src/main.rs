//! `sluice-coordinator --config FILE`: parse, start, wait for a signal, drain.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice_coordinator::config::Config;
use sluice_coordinator::StartError;
use tokio_util::sync::CancellationToken;

/// A Sluice coordinator node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The TOML config file.
    #[arg(long, env = "SLUICE_COORDINATOR_CONFIG")]
    config: PathBuf,
    /// Log format: plain or json.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    log_format: String,
}

/// jemalloc rather than glibc's malloc: under a thousand agents glibc kept a 64 MB arena
/// per busy thread mostly free but resident, and jemalloc hands freed pages back.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// EX_USAGE: bad config; systemd must not restart on it.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,openraft=warn,sled=warn".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(sluice_common::systemd::colour_logs())
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice-coordinator: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let running = sluice_coordinator::start(config, shutdown.clone()).await?;
        sluice_common::systemd::serve_until_signal(shutdown.clone());
        running.wait().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Unusable TLS files or secret files are configuration errors: exit 64 so
        // systemd does not restart into the same failure.
        Err(e @ (StartError::Tls(_) | StartError::SecretFile { .. } | StartError::Notify(_))) => {
            eprintln!("sluice-coordinator: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %e, "coordinator failed");
            ExitCode::FAILURE
        }
    }
}
