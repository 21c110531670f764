//! The agent's configuration file (TOML). Every key is documented here and in
//! `packaging/agent.example.toml`; unknown keys are refused so a typo is an error, not a
//! silently ignored setting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sluice_common::names::{Label, ServerName};
use sluice_common::ports::PortRange;
use sluice_common::time::DurationSpec;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This server's name, as the coordinator knows it (and, once mTLS is on, as the agent's
    /// certificate names it).
    pub name: ServerName,
    /// Where the agent API listens. Port 0 picks a free port (tests).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The `host:port` coordinators should dial to reach this agent; defaults to `listen`
    /// (after binding, so port 0 resolves to the real port).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Coordinator API addresses (`host:port`) to register with and heartbeat to. Any of
    /// them will do; a follower forwards. Empty: run standalone.
    #[serde(default)]
    pub coordinators: Vec<String>,
    /// The Docker daemon's Unix socket.
    #[serde(default = "default_docker_socket")]
    pub docker_socket: PathBuf,
    /// The host address service ports are published on (and port probes bind to).
    #[serde(default = "default_host_ip")]
    pub host_ip: IpAddr,
    /// The control socket of this host's `sluice-proxy` (which owns the public port of every
    /// `blue_green` service).
    #[serde(default = "default_proxy_socket")]
    pub proxy_socket: PathBuf,
    /// The range service ports are allocated from; a deploy outside it is refused.
    #[serde(default)]
    pub port_range: PortRange,
    /// This server's labels (`env=prod`), reported to the coordinator.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Where the agent keeps its state (fence tokens, operations): a sled database.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Finished operation records older than this are forgotten (the newest of each service
    /// always stays). Default 7 days.
    #[serde(default = "default_operation_retention")]
    pub operation_retention: DurationSpec,
    /// How long `docker stop` waits after SIGTERM before SIGKILL.
    #[serde(default = "default_stop_grace")]
    pub stop_grace: DurationSpec,
    /// Between heartbeats to the coordinator.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: DurationSpec,
    /// What containers may do. Everything is off unless allowed here.
    #[serde(default)]
    pub policy: Policy,
    /// The agent's certificate, key and the project CA. Required: there is no plaintext mode.
    pub tls: TlsConfig,
}

/// Where the agent's TLS files are (as `sluice ca issue --role agent --name NAME` writes
/// them). The certificate must name role `agent` and this server's `name`, with SANs for
/// the address coordinators dial (`advertise`). It serves the agent API (only coordinator
/// certificates are let in) and identifies the agent when it registers and heartbeats.
/// The files are re-read on SIGHUP and whenever one of them changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The project CA certificate (PEM).
    pub ca: PathBuf,
    /// This agent's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
}

impl TlsConfig {
    /// As the TLS library's file set.
    pub fn files(&self) -> sluice_common::tls::TlsFiles {
        sluice_common::tls::TlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// The container policy. The agent enforces it whatever a request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Allow `privileged: true`.
    #[serde(default)]
    pub allow_privileged: bool,
    /// Allow `network_mode = "host"`.
    #[serde(default)]
    pub allow_host_network: bool,
    /// Allow `pid_mode = "host"`.
    #[serde(default)]
    pub allow_host_pid: bool,
    /// Allow added Linux capabilities (`cap_add`).
    #[serde(default)]
    pub allow_cap_add: bool,
    /// Allow host path bind mounts (`/host/path:/in/container`). Named volumes are always allowed.
    #[serde(default)]
    pub allow_host_mounts: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 7100))
}
fn default_docker_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}
fn default_host_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn default_proxy_socket() -> PathBuf {
    PathBuf::from("/run/sluice-proxy/control.sock")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/sluice-agent")
}
fn default_stop_grace() -> DurationSpec {
    DurationSpec::secs(10)
}
fn default_operation_retention() -> DurationSpec {
    DurationSpec::secs(7 * 24 * 3600)
}

fn default_heartbeat() -> DurationSpec {
    DurationSpec::secs(2)
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (names the key).
        source: Box<toml::de::Error>,
    },
    /// A value is out of bounds.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl AgentConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            source: Box::new(e),
        })?;
        if cfg.heartbeat_interval.get() < Duration::from_millis(100) {
            return Err(ConfigError::Invalid(
                "heartbeat_interval must be at least 100ms".into(),
            ));
        }
        if cfg.stop_grace.get() > Duration::from_secs(60) {
            return Err(ConfigError::Invalid(
                "stop_grace must be at most 60s".into(),
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: &str = "\n[tls]\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = AgentConfig::parse(&format!("name = \"web-1\"{TLS}")).unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.host_ip, default_host_ip());
        assert_eq!(c.port_range, PortRange::DEFAULT);
        assert_eq!(c.policy, Policy::default());
        assert!(c.coordinators.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e = AgentConfig::parse("name = \"web-1\"").unwrap_err();
        assert!(e.to_string().contains("tls"), "{e}");
        let e =
            AgentConfig::parse(&format!("name = \"web-1\"\nlisten_addr = \"x\"{TLS}")).unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = AgentConfig::parse(&format!("name = \"Web 1\"{TLS}")).unwrap_err();
        assert!(e.to_string().contains("server name"), "{e}");
        let e = AgentConfig::parse(&format!(
            "name = \"w\"\n[policy]\nallow_everything = true{TLS}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("allow_everything"), "{e}");
    }

    #[test]
    fn the_packaged_example_parses() {
        let text = include_str!("../../packaging/agent.example.toml");
        let c = AgentConfig::parse(text).unwrap();
        assert_eq!(c.name.as_str(), "web-1");
        assert!(!c.policy.allow_privileged);
        assert_eq!(c.labels.len(), 2);
    }
}
