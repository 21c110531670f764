//! The coordinator's configuration file (TOML). Every key is documented here and in
//! `packaging/coordinator.example.toml`; unknown keys are refused so a typo is an error,
//! not a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_common::time::DurationSpec;

mod retention;

pub use retention::RetentionConfig;

/// Why a config file was refused. `main` exits 64 (EX_USAGE) on any of these, and the
/// systemd unit does not restart on that code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// Values parse but do not make sense together.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A coordinator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Raft node id: unique in the cluster, non-zero, never reused for another machine.
    pub node_id: u64,
    /// Raft log and vote (sled), and the snapshot (`snapshot.bin`). Created if missing.
    pub data_dir: PathBuf,
    /// Address to listen on for the API and for Raft traffic from other coordinators.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address other coordinators and agents use to reach this node (`host:port`).
    /// Defaults to the bound listen address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// How long a request may wait for the cluster (a leader, a quorum) before it is
    /// answered 503. Default 5 s.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: DurationSpec,
    /// How a new cluster forms.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Raft timing.
    #[serde(default)]
    pub raft: RaftConfig,
    /// Agent liveness.
    #[serde(default)]
    pub agents: AgentsConfig,
    /// This node's certificate, key and the project CA. Required: there is no plaintext mode.
    pub tls: TlsConfig,
    /// A file holding the bootstrap admin token's secret (mode 0600 or stricter: a file
    /// readable by group or others is refused). Its SHA-256 is an admin token on this node
    /// only, never replicated, so the first `sluice token create` has someone to come from.
    /// Remove it once real admin tokens exist. Default: none.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Telegram and webhook notifications, sent by the leader.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// What a deployment request that leaves a knob out gets.
    #[serde(default)]
    pub deploy: DeployDefaults,
    /// Where canary analyses get their metrics beyond the proxies' own.
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// How much deployment history and how many idempotency keys the state keeps.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// How container registries are reached (`[registries] ca_file`).
    #[serde(default)]
    pub registries: crate::registry::RegistriesConfig,
    /// The cluster key for secrets at rest (`[secrets] key_file`).
    #[serde(default)]
    pub secrets: crate::secrets::SecretsConfig,
}

/// `[analysis]`: the Prometheus that `prometheus` checks of a canary analysis query.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Its base URL (`http://prometheus.internal:9090`); `/api/v1/query` is appended.
    /// Default: none, and a canary with a `prometheus` check fails validation.
    #[serde(default)]
    pub prometheus_url: Option<String>,
    /// How long one query may take (default 5 s); longer counts as an error.
    #[serde(default = "default_query_timeout")]
    pub query_timeout: DurationSpec,
}

fn default_query_timeout() -> DurationSpec {
    DurationSpec::secs(5)
}

/// Cluster-wide defaults for deployment knobs a request leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployDefaults {
    /// The watch period after the first good health check (`min_healthy`). Default 10 s,
    /// as Nomad's `min_healthy_time`.
    #[serde(default = "default_min_healthy")]
    pub min_healthy: DurationSpec,
    /// How long the old version's TCP and WebSocket connections drain after a
    /// `blue_green` switch (`drain_timeout`). Default 30 s.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: DurationSpec,
}

impl Default for DeployDefaults {
    fn default() -> Self {
        Self {
            min_healthy: default_min_healthy(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_min_healthy() -> DurationSpec {
    DurationSpec::secs(10)
}
fn default_drain_timeout() -> DurationSpec {
    DurationSpec::secs(30)
}

/// Notifications. With neither `telegram` nor `webhook` set, nothing is sent, but a lock
/// held too long is still recorded in the audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A lock held longer than this is announced (once per grant). Default 30m.
    #[serde(default = "default_lock_held_too_long")]
    pub lock_held_too_long: DurationSpec,
    /// The longest wait between two attempts at a failing delivery. Default 60s.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: DurationSpec,
    /// Telegram's Bot API.
    #[serde(default)]
    pub telegram: Option<TelegramConfig>,
    /// A generic JSON webhook, HMAC-signed.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// `[notify.telegram]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// A file holding the bot token (mode 0600 or stricter).
    pub bot_token_file: PathBuf,
    /// The chat to post to (a number, or `@channel`).
    pub chat_id: String,
    /// The Bot API's base URL. Default `https://api.telegram.org`.
    #[serde(default = "default_telegram_url")]
    pub base_url: String,
}

/// `[notify.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST each event.
    pub url: String,
    /// A file holding the HMAC-SHA256 key (mode 0600 or stricter); the signature goes in
    /// `X-Sluice-Signature-256: sha256=<hex>`.
    pub secret_file: PathBuf,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            lock_held_too_long: default_lock_held_too_long(),
            max_backoff: default_max_backoff(),
            telegram: None,
            webhook: None,
        }
    }
}

/// Reads a secret from a file: refuses one readable by group or others, and an empty one.
/// Errors never contain the content.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "readable by group or others (mode {mode:o}); run chmod 600 on it"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(secret.to_string())
}

/// Where this node's TLS files are (as `sluice ca issue --role coordinator` writes them).
/// The same certificate serves the API and Raft, and identifies this node when it calls
/// other coordinators and agents, so it needs the `coordinator` role and SANs for every
/// address peers, agents and CI dial. The files are re-read on SIGHUP and whenever one of
/// them changes, without a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The project CA certificate (PEM). Only certificates it signed are trusted.
    pub ca: PathBuf,
    /// This node's certificate (PEM), role `coordinator`.
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
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

/// How a cluster forms on first start. Ignored once the data directory holds a cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The voters of a new cluster, this node included. Every initial member gets the same
    /// list. Empty (the default): this node bootstraps a single-node cluster by itself.
    #[serde(default)]
    pub initial_members: Vec<Member>,
    /// Start empty and wait to be added by an existing cluster
    /// (`POST /v1/cluster/members`). Default false.
    #[serde(default)]
    pub join: bool,
}

/// A cluster member.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its node id.
    pub id: u64,
    /// Its advertised address (`host:port`).
    pub addr: String,
}

/// Raft timing. The defaults suit a LAN or loopback on a loaded 2-core machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat interval. Default 50ms. One append RPC (replication, heartbeat, a
    /// read's leadership confirmation) counts as failed only after `election_timeout_min`:
    /// on a loaded machine a slow one is waited for, not cut off and sent again.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: DurationSpec,
    /// Lower bound of the randomized election timeout. Default 150ms.
    ///
    /// When a follower stops hearing from its leader, openraft 0.9 waits the leader lease
    /// (`election_timeout_max`) plus a random election timeout between the two bounds,
    /// checked on ticks of 1.5 × `heartbeat_interval`, before it campaigns; voters refuse
    /// votes inside the lease. Sluice's watchdog calls the election itself once the lease
    /// plus a random 0 to `election_timeout_min / 2` has passed, so with the defaults a
    /// follower campaigns 300–375 ms after the last heartbeat (openraft's own timer, at
    /// 450–600 ms, remains the fallback after a split vote).
    #[serde(default = "default_election_min")]
    pub election_timeout_min: DurationSpec,
    /// Upper bound of the randomized election timeout, and the leader lease. Default 300ms.
    #[serde(default = "default_election_max")]
    pub election_timeout_max: DurationSpec,
    /// Build a snapshot (and purge the log behind it) every this many entries. Default 5000.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot, so a briefly lagging follower catches
    /// up from the log instead of a full snapshot. Default 500.
    #[serde(default = "default_logs_to_keep")]
    pub logs_to_keep: u64,
}

/// Agent liveness.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// An agent that has not sent a heartbeat for this long is marked down. Default 10s.
    #[serde(default = "default_agent_timeout")]
    pub heartbeat_timeout: DurationSpec,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:7000".parse().expect("literal")
}
fn default_request_timeout() -> DurationSpec {
    DurationSpec::secs(5)
}
fn default_heartbeat() -> DurationSpec {
    DurationSpec(std::time::Duration::from_millis(50))
}
fn default_election_min() -> DurationSpec {
    DurationSpec(std::time::Duration::from_millis(150))
}
fn default_election_max() -> DurationSpec {
    DurationSpec(std::time::Duration::from_millis(300))
}
fn default_snapshot_every() -> u64 {
    5000
}
fn default_logs_to_keep() -> u64 {
    500
}
fn default_lock_held_too_long() -> DurationSpec {
    DurationSpec::secs(30 * 60)
}
fn default_max_backoff() -> DurationSpec {
    DurationSpec::secs(60)
}
fn default_telegram_url() -> String {
    "https://api.telegram.org".into()
}
fn default_agent_timeout() -> DurationSpec {
    DurationSpec::secs(10)
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: default_heartbeat(),
            election_timeout_min: default_election_min(),
            election_timeout_max: default_election_max(),
            snapshot_every: default_snapshot_every(),
            logs_to_keep: default_logs_to_keep(),
        }
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            heartbeat_timeout: default_agent_timeout(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let c: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if self.node_id == 0 {
            return bad("node_id must be non-zero".into());
        }
        let m = &self.cluster.initial_members;
        if !m.is_empty() && !m.iter().any(|x| x.id == self.node_id) {
            return bad(format!(
                "cluster.initial_members does not include this node (id {})",
                self.node_id
            ));
        }
        if self.cluster.join && !m.is_empty() {
            return bad("cluster.join and cluster.initial_members exclude each other".into());
        }
        let mut ids: Vec<u64> = m.iter().map(|x| x.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != m.len() || ids.contains(&0) {
            return bad("cluster.initial_members ids must be unique and non-zero".into());
        }
        let r = &self.raft;
        if r.election_timeout_min.get() <= r.heartbeat_interval.get() * 2 {
            return bad(
                "raft.election_timeout_min must exceed twice raft.heartbeat_interval".into(),
            );
        }
        if r.election_timeout_max.get() <= r.election_timeout_min.get() {
            return bad("raft.election_timeout_max must exceed raft.election_timeout_min".into());
        }
        if r.snapshot_every == 0 {
            return bad("raft.snapshot_every must be positive".into());
        }
        if let Some(w) = &self.notify.webhook {
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return bad(format!(
                    "notify.webhook.url {:?} is not an http(s) URL",
                    w.url
                ));
            }
        }
        if let Some(u) = &self.analysis.prometheus_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return bad(format!(
                    "analysis.prometheus_url {u:?} is not an http(s) URL"
                ));
            }
        }
        if let Some(t) = &self.notify.telegram {
            if !(t.base_url.starts_with("https://") || t.base_url.starts_with("http://")) {
                return bad(format!(
                    "notify.telegram.base_url {:?} is not an http(s) URL",
                    t.base_url
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_example_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/coordinator.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.node_id, 1);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c: Config =
            toml::from_str(&format!("node_id = 1\ndata_dir = \"/tmp/x\"\n{TLS}")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.request_timeout, DurationSpec::secs(5));
        assert!(c.cluster.initial_members.is_empty());
    }

    const TLS: &str = "[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n";

    #[test]
    fn tls_is_required() {
        let err = toml::from_str::<Config>("node_id = 1\ndata_dir = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls"), "{err}");
    }

    #[test]
    fn refuses_nonsense() {
        for (text, needle) in [
            ("node_id = 0\ndata_dir = \"x\"", "non-zero"),
            ("node_id = 1\ndata_dir = \"x\"\nbogus = 1", "unknown field"),
            (
                "node_id = 1\ndata_dir = \"x\"\n[cluster]\ninitial_members = [{id = 2, addr = \"a:1\"}]",
                "does not include this node",
            ),
            (
                "node_id = 1\ndata_dir = \"x\"\n[raft]\nheartbeat_interval = \"300ms\"",
                "twice",
            ),
            ("node_id = 1\ndata_dir = \"x\"\nrequest_timeout = \"5\"", "unit"),
        ] {
            // Tables come last in TOML; `[tls]` goes in before the first one.
            let text = match text.find("\n[") {
                Some(i) => format!("{}\n{TLS}{}", &text[..i], &text[i..]),
                None => format!("{text}\n{TLS}"),
            };
            let err = toml::from_str::<Config>(&text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
                .unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
