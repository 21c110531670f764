//! Wire types of `sluice-proxy`'s control API (HTTP/1.1 + JSON over a local Unix socket).
//!
//! The agent writes a [`RouteSpec`] per service (`PUT /v1/routes/{service}`) and switches it
//! with a [`TargetsUpdate`]; the proxy answers [`RouteView`]s, whose `draining` lists the
//! targets that lost their weight and still carry requests or connections. The proxy's own
//! checks (loopback targets, weights, label syntax) live in [`RouteSpec::validate`] so that
//! the agent can run them before it asks.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::names::ServiceName;
use crate::time::DurationSpec;

/// How a route forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// HTTP/1.1 and HTTP/2 (cleartext) per request, pooled to the target, upgrades passed.
    #[default]
    Http,
    /// Bytes copied both ways; a connection stays on the target it was given.
    Tcp,
}

/// One backend of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Target {
    /// A label (the container's short id or name): 1..=64 of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// Where the container listens; must be a loopback address.
    pub addr: SocketAddr,
    /// Share of new requests/connections, 0..=100. 0 means "keep, send nothing new".
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    100
}

/// The whole route of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RouteSpec {
    /// The public host port, e.g. `0.0.0.0:20001`.
    pub listen: SocketAddr,
    /// `http` (default) or `tcp`.
    #[serde(default)]
    pub mode: ProxyMode,
    /// At least one, at least one with weight > 0.
    pub targets: Vec<Target>,
    /// How long TCP and upgraded connections of a target that lost its weight keep working.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: DurationSpec,
}

fn default_drain_timeout() -> DurationSpec {
    DurationSpec::secs(30)
}

/// A switch: the route's new targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TargetsUpdate {
    /// Replaces the route's targets.
    pub targets: Vec<Target>,
}

/// A target that lost its weight and still carries traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Draining {
    /// The target's label.
    pub target: String,
    /// The target's address.
    pub addr: SocketAddr,
    /// HTTP requests in flight on it.
    pub requests: u64,
    /// TCP or upgraded connections open to it.
    pub connections: u64,
    /// Milliseconds until its remaining connections are closed (0: closing now).
    pub closes_in_ms: u64,
}

/// A route as the proxy serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RouteView {
    /// The service the route belongs to.
    pub service: ServiceName,
    /// What is live.
    pub spec: RouteSpec,
    /// Bumped on every change of the spec (1 for a new route).
    pub generation: u64,
    /// Targets still draining, in the order they started to.
    pub draining: Vec<Draining>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ProxyStatus {
    /// The proxy's version.
    pub version: String,
    /// Its process id (changes on a handoff).
    pub pid: u32,
    /// Routes served.
    pub routes: usize,
    /// Milliseconds since this process started.
    pub uptime_ms: u64,
}

/// Why a spec or a target list is refused before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// No target, or none with weight > 0, or a bad label, weight or duplicate.
    Invalid(String),
    /// A target that is not on a loopback address.
    NotLoopback(String),
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(m) | Self::NotLoopback(m) => f.write_str(m),
        }
    }
}

/// Checks a target list: 1.. targets, labels `[A-Za-z0-9_.-]{1,64}`, unique labels and
/// addresses, weights 0..=100 with at least one > 0, every address on loopback.
pub fn validate_targets(targets: &[Target]) -> Result<(), SpecError> {
    if targets.is_empty() {
        return Err(SpecError::Invalid(
            "targets: at least one target is needed".into(),
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        let label_ok = (1..=64).contains(&t.name.len())
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !label_ok {
            return Err(SpecError::Invalid(format!(
                "targets[{i}].name {:?}: 1 to 64 of A-Z a-z 0-9 _ . -",
                t.name
            )));
        }
        if t.weight > 100 {
            return Err(SpecError::Invalid(format!(
                "targets[{i}].weight {}: must be 0..=100",
                t.weight
            )));
        }
        if !t.addr.ip().is_loopback() {
            return Err(SpecError::NotLoopback(format!(
                "target {} at {} is not a loopback address",
                t.name, t.addr
            )));
        }
        if t.addr.port() == 0 {
            return Err(SpecError::Invalid(format!("targets[{i}].addr: port 0")));
        }
        if targets[..i]
            .iter()
            .any(|o| o.name == t.name || o.addr == t.addr)
        {
            return Err(SpecError::Invalid(format!(
                "targets[{i}]: name {} or address {} appears twice",
                t.name, t.addr
            )));
        }
    }
    if targets.iter().all(|t| t.weight == 0) {
        return Err(SpecError::Invalid(
            "targets: at least one needs weight > 0".into(),
        ));
    }
    Ok(())
}

impl RouteSpec {
    /// Checks the spec as a whole ([`validate_targets`], a non-zero listen port).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.listen.port() == 0 {
            return Err(SpecError::Invalid(
                "listen: port 0 is not a public port".into(),
            ));
        }
        validate_targets(&self.targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, addr: &str, weight: u32) -> Target {
        Target {
            name: name.into(),
            addr: addr.parse().unwrap(),
            weight,
        }
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let s: RouteSpec = serde_json::from_str(
            r#"{"listen":"0.0.0.0:20001","targets":[{"name":"a1","addr":"127.0.0.1:3000"}]}"#,
        )
        .unwrap();
        assert_eq!(s.mode, ProxyMode::Http);
        assert_eq!(s.targets[0].weight, 100);
        assert_eq!(s.drain_timeout, DurationSpec::secs(30));
        assert!(serde_json::from_str::<RouteSpec>(
            r#"{"listen":"0.0.0.0:1","targets":[],"extra":1}"#
        )
        .is_err());
        let tcp: RouteSpec = serde_json::from_str(
            r#"{"listen":"0.0.0.0:2","mode":"tcp","targets":[],"drain_timeout":"2s"}"#,
        )
        .unwrap();
        assert_eq!(tcp.mode, ProxyMode::Tcp);
        let back: RouteSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn target_checks() {
        validate_targets(&[t("a", "127.0.0.1:1", 100)]).unwrap();
        validate_targets(&[t("a", "[::1]:1", 100), t("b", "127.0.0.2:1", 0)]).unwrap();
        assert!(matches!(validate_targets(&[]), Err(SpecError::Invalid(_))));
        assert!(matches!(
            validate_targets(&[t("a", "127.0.0.1:1", 0)]),
            Err(SpecError::Invalid(_))
        ));
        assert!(matches!(
            validate_targets(&[t("a", "10.0.0.1:1", 100)]),
            Err(SpecError::NotLoopback(_))
        ));
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert!(
                validate_targets(&[t(bad, "127.0.0.1:1", 1)]).is_err(),
                "{bad}"
            );
        }
        assert!(validate_targets(&[t("a", "127.0.0.1:1", 101)]).is_err());
        assert!(validate_targets(&[t("a", "127.0.0.1:1", 1), t("a", "127.0.0.1:2", 1)]).is_err());
        assert!(validate_targets(&[t("a", "127.0.0.1:1", 1), t("b", "127.0.0.1:1", 1)]).is_err());
    }
}
