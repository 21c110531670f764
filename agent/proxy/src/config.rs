//! Command-line configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sluice_common::time::DurationSpec;

use crate::target::Limits;

/// sluice-proxy: owns each service's public port and forwards to its live container.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// The control socket (HTTP/1.1 + JSON), mode 0660.
    #[arg(
        long,
        default_value = "/run/sluice-proxy/control.sock",
        env = "SLUICE_PROXY_CONTROL_SOCKET"
    )]
    pub control_socket: PathBuf,
    /// A uid allowed on the control socket besides root and the proxy's own (repeatable).
    #[arg(long = "control-uid")]
    pub control_uids: Vec<u32>,
    /// Holds routes.json and handoff.sock.
    #[arg(
        long,
        default_value = "/var/lib/sluice-proxy",
        env = "SLUICE_PROXY_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    /// Serve GET /metrics on this TCP address too (e.g. 127.0.0.1:9466).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest request head (431 beyond).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Largest request body (413 beyond).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// How long a client may take to send a request head.
    #[arg(long, default_value = "30s")]
    pub header_read_timeout: DurationSpec,
    /// How long a connect to a target may take (502 beyond).
    #[arg(long, default_value = "5s")]
    pub connect_timeout: DurationSpec,
    /// How long a target may take to answer with its head (504 beyond).
    #[arg(long, default_value = "60s")]
    pub response_header_timeout: DurationSpec,
    /// How long an idle keep-alive connection stays open (client side and to targets).
    #[arg(long, default_value = "60s")]
    pub idle_timeout: DurationSpec,
    /// Do not take over from a running proxy even if one answers on the handoff socket.
    #[arg(long)]
    pub no_takeover: bool,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

impl Config {
    /// The data-path limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: self.header_read_timeout.0,
            connect_timeout: self.connect_timeout.0,
            response_header_timeout: self.response_header_timeout.0,
            idle_timeout: self.idle_timeout.0,
        }
    }
}
