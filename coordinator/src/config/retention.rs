//! `[retention]`: how much history the replicated state keeps.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use sluice_common::time::DurationSpec;

use crate::state::deployments::Retention;

/// `[retention]`. The leader's copy is what applies: a prune entry carries it to every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Deployments kept per service, newest first. In-flight deployments and each service's
    /// current and previous deployment are kept beyond it. Default 100; 0 keeps only those.
    #[serde(default = "default_per_service")]
    pub deployments_per_service: u32,
    /// Settled deployments last changed longer ago than this are forgotten (`90d`, `12h`;
    /// days up to 3650). Default: no age limit.
    #[serde(default, deserialize_with = "age")]
    pub deployment_max_age: Option<Duration>,
    /// An `Idempotency-Key` is forgotten this long after its first use (a later request
    /// with it is a new deployment). Default 24 h.
    #[serde(default = "default_idempotency_ttl")]
    pub idempotency_ttl: DurationSpec,
    /// The audit chain keeps at most this many records live (in the Raft state and every
    /// snapshot); older ones are archived to `<data_dir>/audit-archive/` on every node.
    /// Default 10,000.
    #[serde(default = "default_audit_live")]
    pub audit_live_records: u64,
    /// Records archived at least at once (one segment file each). Default 1,000.
    #[serde(default = "default_audit_segment")]
    pub audit_segment_records: u64,
    /// How often the leader checks whether there is history to forget. Default 1 m. (The
    /// audit chain's length is checked every 5 s, or this often if shorter.)
    #[serde(default = "default_prune_interval")]
    pub prune_interval: DurationSpec,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            deployments_per_service: default_per_service(),
            deployment_max_age: None,
            idempotency_ttl: default_idempotency_ttl(),
            audit_live_records: default_audit_live(),
            audit_segment_records: default_audit_segment(),
            prune_interval: default_prune_interval(),
        }
    }
}

impl RetentionConfig {
    /// The limits a prune entry carries.
    pub fn limits(&self) -> Retention {
        Retention {
            per_service: Some(self.deployments_per_service),
            max_age: self.deployment_max_age,
            idempotency_ttl: self.idempotency_ttl.get(),
        }
    }
}

fn default_per_service() -> u32 {
    100
}
fn default_audit_live() -> u64 {
    10_000
}
fn default_audit_segment() -> u64 {
    1_000
}
fn default_idempotency_ttl() -> DurationSpec {
    DurationSpec(Duration::from_secs(24 * 3600))
}
fn default_prune_interval() -> DurationSpec {
    DurationSpec::secs(60)
}

/// The longest age limit: ten years of days.
const MAX_DAYS: u64 = 3650;

/// An age: `<n>d` up to [`MAX_DAYS`], or any [`DurationSpec`].
fn parse_age(s: &str) -> Result<Duration, String> {
    if let Some(days) = s.strip_suffix('d').and_then(|d| d.parse::<u64>().ok()) {
        if days == 0 || days > MAX_DAYS {
            return Err(format!("{s:?}: between 1d and {MAX_DAYS}d"));
        }
        return Ok(Duration::from_secs(days * 86_400));
    }
    let d = DurationSpec::parse(s).map_err(|e| e.to_string())?.get();
    if d.is_zero() {
        return Err(format!("{s:?}: must be longer than zero"));
    }
    Ok(d)
}

fn age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_age(&s).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_days_beyond_the_usual_thirty() {
        assert_eq!(parse_age("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_age("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_age("0d").is_err());
        assert!(parse_age("4000d").is_err());
        assert!(parse_age("90").is_err());
        let c: RetentionConfig = toml::from_str(
            "deployments_per_service = 50\ndeployment_max_age = \"90d\"\nidempotency_ttl = \"2h\"",
        )
        .unwrap();
        assert_eq!(c.limits().per_service, Some(50));
        assert_eq!(c.limits().idempotency_ttl, Duration::from_secs(7200));
        assert_eq!(c.prune_interval, DurationSpec::secs(60));
        assert!(toml::from_str::<RetentionConfig>("keep = 1").is_err());
    }
}
