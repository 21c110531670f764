//! `sluice-proxy`: see the library's documentation.

use clap::Parser;
use sluice_proxy::config::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice-proxy: cannot start the runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    let result = if config.upgrade {
        runtime.block_on(sluice_proxy::app::upgrade(&config))
    } else {
        runtime.block_on(sluice_proxy::app::run(config))
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e @ sluice_proxy::app::StartError::Usage(_)) => {
            tracing::error!(error = %e, "sluice-proxy");
            // EX_USAGE: systemd does not restart on it (RestartPreventExitStatus=64).
            std::process::ExitCode::from(64)
        }
        Err(e @ sluice_proxy::app::StartError::Upgrade(_)) => {
            tracing::error!(error = %e, "sluice-proxy");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = %e, "sluice-proxy cannot start");
            std::process::ExitCode::from(71)
        }
    }
}
