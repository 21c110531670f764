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
    /// A uid (or user name, looked up in /etc/passwd) allowed on the control socket besides
    /// root and the proxy's own uid (repeatable).
    #[arg(long = "control-uid")]
    pub control_uids: Vec<String>,
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
    /// Threads serving connections (each a single-threaded runtime); 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub data_threads: usize,
    /// Do not take over from a running proxy even if one answers on the handoff socket.
    #[arg(long)]
    pub no_takeover: bool,
    /// Start a successor with the same flags (without this one), wait until it has taken
    /// over the sockets and answers on the control socket, then exit 0: the zero-downtime
    /// upgrade (`ExecReload=` of the unit).
    #[arg(long)]
    pub upgrade: bool,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

/// Resolves `--control-uid` values: numbers as they are, names through /etc/passwd.
pub fn resolve_uids(values: &[String], passwd: &str) -> Result<Vec<u32>, String> {
    values
        .iter()
        .map(|v| {
            if let Ok(n) = v.parse::<u32>() {
                return Ok(n);
            }
            passwd
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let uid = f.nth(1)?.parse::<u32>().ok()?;
                    (name == v).then_some(uid)
                })
                .next()
                .ok_or_else(|| format!("--control-uid {v}: no such user in /etc/passwd"))
        })
        .collect()
}

impl Config {
    /// `--data-threads`, 0 resolved to the number of cores.
    pub fn data_threads(&self) -> usize {
        match self.data_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_uids_by_number_or_name() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nsluice-agent:x:998:998::/var/lib/sluice-agent:/usr/sbin/nologin\n";
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve_uids(&v(&["1000", "sluice-agent"]), passwd),
            Ok(vec![1000, 998])
        );
        assert!(resolve_uids(&v(&["nobody-here"]), passwd).is_err());
    }

    #[test]
    fn defaults_are_what_an_operator_expects() {
        let c = Config::parse_from(["sluice-proxy"]);
        let l = c.limits();
        assert_eq!(
            c.control_socket,
            PathBuf::from("/run/sluice-proxy/control.sock")
        );
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/sluice-proxy"));
        assert_eq!((l.max_header_bytes, l.max_body_bytes), (65536, 64 << 20));
        assert_eq!(l.header_read_timeout.as_secs(), 30);
        assert_eq!(l.connect_timeout.as_secs(), 5);
        assert_eq!(l.response_header_timeout.as_secs(), 60);
        assert_eq!(l.idle_timeout.as_secs(), 60);
    }
}
