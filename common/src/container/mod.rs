//! The container spec: everything about a service's container beyond its image, port,
//! environment and health check — command, mounts, limits, networks, restart policy, labels,
//! stop behaviour and log rotation.
//!
//! It travels unchanged from `POST /v1/deployments` to the agent, which applies it through
//! Docker. Each field parses through a validated type ([`values`]); the rules that relate
//! fields to each other are in [`ContainerSpec::problems`]; what a server's container policy
//! forbids is [`ContainerPolicy::violations`], run by the coordinator during validation and
//! again, on its own, by the agent.
//!
//! # Layout
//! - [`values`]: the validated values (paths, volumes, sizes, signals, ...).
//! - this file: the spec, its cross-field rules, the policy.

pub mod values;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::DurationSpec;
pub use values::*;

/// How the container joins the network.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Docker's default bridge (the container port is published on the host).
    Bridge,
    /// The host's network stack (no port mapping: the process listens on the host itself).
    /// Only where the server's policy allows it.
    Host,
}

/// Memory, CPU and process limits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Hard memory limit (`512m`, `1g`; at least 6m, Docker's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Soft memory limit the kernel reclaims towards under pressure (at most `memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<ByteSize>,
    /// CPUs (`0.5`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, minimum = 0.001, maximum = 1024, multiple_of = 0.001))]
    pub cpus: Option<Cpus>,
    /// The most processes and threads the container may run (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub pids_limit: Option<u32>,
}

/// A Docker network to join, with the container's DNS aliases on it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    /// The network (a bridge network is created on the server if it does not exist).
    pub name: NetworkName,
    /// Names other containers on the network reach this one by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<NetworkAlias>,
}

/// Where the container's stdout and stderr go.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// The log driver (default `json-file`).
    #[serde(default = "LogSpec::default_driver")]
    #[cfg_attr(feature = "openapi", schema(default = "json-file"))]
    pub driver: LogDriver,
    /// The driver's options. For `json-file` and `local`, `max-size` (default `10m`) and
    /// `max-file` (default `3`) are filled in when absent, so a chatty container never
    /// fills the disk.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<LogOptionKey, String>,
}

impl LogSpec {
    fn default_driver() -> LogDriver {
        LogDriver::parse("json-file").expect("valid")
    }

    /// The options Docker gets: those given, plus bounded rotation for the file drivers.
    pub fn effective_options(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .options
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if matches!(self.driver.as_str(), "json-file" | "local") {
            out.entry("max-size".into()).or_insert_with(|| "10m".into());
            out.entry("max-file".into()).or_insert_with(|| "3".into());
        }
        out
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for LogSpec {
    fn default() -> Self {
        Self {
            driver: Self::default_driver(),
            options: BTreeMap::new(),
        }
    }
}

/// The container beyond image, port, environment and health: every field is optional and
/// the empty spec is what Sluice always did (the image's command, the default bridge,
/// `unless-stopped`, no limits, json-file logs rotated at 10m × 3).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The command (Docker's CMD), replacing the image's; empty: the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The entrypoint, replacing the image's; empty: the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// The working directory (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<ContainerPath>,
    /// The user to run as: `name`, `uid`, `user:group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSpec>,
    /// Mounts, `source:/target[:ro|rw]`: a named volume source always, a host path (starting
    /// with `/`) only where the server's policy allows host mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// tmpfs mounts, `/path[:options]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<TmpfsMount>,
    /// Run privileged: only where the server's policy allows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `bridge` (default) or `host` (only where the server's policy allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    /// Linux capabilities to add: only where the server's policy allows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<Capability>,
    /// Memory, CPU and process limits.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Docker's restart policy (default `unless-stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(default = "unless-stopped"))]
    pub restart: Option<RestartPolicy>,
    /// Named Docker networks to join besides the default bridge (created if missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Extra container labels; `sluice.*` is reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<LabelKey, String>,
    /// The signal that asks the process to stop (default: the image's, else SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<StopSignal>,
    /// How long the process may take to stop before SIGKILL (default: the agent's, 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace: Option<DurationSpec>,
    /// Log driver and options (default json-file, 10m × 3).
    #[serde(default, skip_serializing_if = "LogSpec::is_default")]
    pub log: LogSpec,
}

impl Resources {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Docker refuses a memory limit below 6 MiB.
pub const MIN_MEMORY: u64 = 6 << 20;

/// The longest stop grace accepted (Docker's stop timeout is whole seconds).
pub const MAX_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A broken rule: the field (JSON path, `.`-separated) and why.
pub type FieldProblem = (String, String);

impl ContainerSpec {
    /// Whether it is the empty spec.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The rules that relate fields, or that a field's type cannot state; empty when it is
    /// fine. Fields are named `spec.<field>`.
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        let mut bad = |f: String, why: &str| out.push((format!("spec.{f}"), why.to_string()));
        for (name, args) in [("command", &self.command), ("entrypoint", &self.entrypoint)] {
            if args.len() > 256 {
                bad(name.into(), "at most 256 arguments");
            }
            for (i, a) in args.iter().enumerate() {
                if a.contains('\0') || a.len() > 8192 {
                    bad(format!("{name}.{i}"), "no NUL, at most 8192 bytes");
                }
            }
        }
        let r = &self.resources;
        if let Some(m) = &r.memory {
            if m.bytes() < MIN_MEMORY {
                bad("resources.memory".into(), "must be at least 6m");
            }
        }
        if let (Some(m), Some(res)) = (&r.memory, &r.memory_reservation) {
            if res.bytes() > m.bytes() {
                bad(
                    "resources.memory_reservation".into(),
                    "must not exceed resources.memory",
                );
            }
        }
        if r.pids_limit == Some(0) {
            bad("resources.pids_limit".into(), "must be at least 1");
        }
        if self.network_mode == Some(NetworkMode::Host) && !self.networks.is_empty() {
            bad(
                "networks".into(),
                "a container on the host network joins no other network",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in self.networks.iter().enumerate() {
            if !seen.insert(n.name.as_str()) {
                bad(format!("networks.{i}.name"), "named twice");
            }
        }
        let mut targets = std::collections::BTreeSet::new();
        let paths = self
            .volumes
            .iter()
            .map(|v| ("volumes", v.target()))
            .chain(self.tmpfs.iter().map(|t| ("tmpfs", t.split().0)));
        for (i, (field, target)) in paths.enumerate() {
            if !targets.insert(target.to_string()) {
                let i = if field == "tmpfs" {
                    i - self.volumes.len()
                } else {
                    i
                };
                bad(format!("{field}.{i}"), "mounts a path already mounted");
            }
        }
        for (k, v) in &self.labels {
            if v.len() > 4096 || v.chars().any(char::is_control) {
                bad(
                    format!("labels.{k}"),
                    "at most 4096 bytes, no control characters",
                );
            }
        }
        for (k, v) in &self.log.options {
            if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                bad(
                    format!("log.options.{k}"),
                    "1 to 256 bytes, no control characters",
                );
            }
        }
        if self.stop_grace.is_some_and(|g| g.get() > MAX_STOP_GRACE) {
            bad("stop_grace".into(), "at most 1h");
        }
        out
    }
}

/// What a server allows a container to ask of its host (the agent's `[policy]`). Everything
/// is off unless its operator turns it on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerPolicy {
    /// `privileged: true`.
    #[serde(default)]
    pub allow_privileged: bool,
    /// `network_mode: host`.
    #[serde(default)]
    pub allow_host_network: bool,
    /// The host PID namespace.
    #[serde(default)]
    pub allow_host_pid: bool,
    /// `cap_add`.
    #[serde(default)]
    pub allow_cap_add: bool,
    /// Host path volumes.
    #[serde(default)]
    pub allow_host_mounts: bool,
}

impl ContainerPolicy {
    /// What `spec` asks that this policy forbids, each named by field (`spec.<field>`) with
    /// the policy key that would allow it.
    pub fn violations(&self, spec: &ContainerSpec) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        let mut deny = |allowed: bool, field: String, what: &str, key: &str| {
            if !allowed {
                out.push((
                    field,
                    format!("{what} is not allowed on this server (policy.{key} = false)"),
                ));
            }
        };
        if spec.privileged {
            deny(
                self.allow_privileged,
                "spec.privileged".into(),
                "a privileged container",
                "allow_privileged",
            );
        }
        if spec.network_mode == Some(NetworkMode::Host) {
            deny(
                self.allow_host_network,
                "spec.network_mode".into(),
                "the host network",
                "allow_host_network",
            );
        }
        if !spec.cap_add.is_empty() {
            deny(
                self.allow_cap_add,
                "spec.cap_add".into(),
                "adding capabilities",
                "allow_cap_add",
            );
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            if v.is_host_path() {
                deny(
                    self.allow_host_mounts,
                    format!("spec.volumes.{i}"),
                    "a host path mount",
                    "allow_host_mounts",
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
