//! Wire types of the agent API, version 1 (`/agent/v1/...`), spoken only by coordinators.
//!
//! The API is declarative per service and fenced: every mutating request carries the
//! `(lock key, token)` its sender holds, and operations are keyed by deployment id, so a
//! repeated request returns the operation already under way instead of starting another.
//! Long steps run as operations the caller polls (optionally long-polling with `wait`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::{HealthCheck, Strategy};
use crate::container::ContainerSpec;
use crate::fence::FenceClaim;
use crate::image::ImageRef;
use crate::names::{EnvName, ServiceName};
use crate::ports::Port;
use crate::time::{DurationSpec, Timestamp};

/// The agent API version; paths are prefixed `/agent/v{AGENT_API_VERSION}`.
pub const AGENT_API_VERSION: u32 = 1;

/// Optional resource limits for a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU limit in thousandths of a CPU.
    #[serde(default)]
    pub millicpus: Option<u32>,
}

/// `PUT /agent/v1/operations/{deployment_id}`: deploy `image` for `service` with `strategy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The lock the coordinator holds for this service.
    pub fence: FenceClaim,
    /// The service.
    pub service: ServiceName,
    /// The image to run.
    pub image: ImageRef,
    /// Port inside the container.
    pub container_port: Port,
    /// Port on the host (from the coordinator's ledger).
    pub host_port: Port,
    /// Environment, secrets included (this is the only place they travel).
    #[serde(default)]
    pub env: BTreeMap<EnvName, String>,
    /// How to judge the new container healthy.
    pub health: HealthCheck,
    /// How the version this deploy replaces was judged healthy, if the coordinator knows:
    /// a failed deploy restores that version and checks it with its own check. (The agent
    /// prefers the check recorded on the previous container itself.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_health: Option<HealthCheck>,
    /// The operation's own deadline, from its acceptance: past it the agent stops the
    /// deploy and restores the previous version even when the coordinator cannot reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DurationSpec>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Run privileged. Refused unless the agent's policy allows it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Docker network mode (`bridge` when absent). `host` is refused unless the agent's
    /// policy allows it; `container:<id>` is always refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// PID namespace mode; only `host` exists, refused unless the agent's policy allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// Linux capabilities to add. Refused unless the agent's policy allows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Mounts, Docker `-v` syntax: `source:/target[:ro]`. A named volume source is always
    /// allowed; a host path source (starting with `/`) only if the agent's policy allows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// How the agent replaces the running version (absent: `recreate`, the only one agents
    /// before this field knew; it is left off the wire then, so they still accept it).
    #[serde(
        default = "Strategy::wire_default",
        skip_serializing_if = "is_recreate"
    )]
    pub strategy: Strategy,
    /// The watch period after the first good health check (absent: none, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<DurationSpec>,
    /// `blue_green`: how long the old version's TCP and WebSocket connections may go on
    /// after the switch (absent: 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<DurationSpec>,
    /// `canary`: the new version's first weight (percent of new requests). The operation
    /// then holds both versions until its weight reaches 100 (`PUT .../weight`), or it is
    /// aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<u32>,
    /// The login for the image's registry, when the cluster stores one for its host: used
    /// for the pull only, kept in the agent's memory, never written to its disk or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<crate::api::RegistryCredentials>,
    /// The container spec (absent: the defaults). Its `privileged`, `network_mode`,
    /// `cap_add` and host-path `volumes` are held to the agent's policy like the fields above.
    #[serde(default, skip_serializing_if = "ContainerSpec::is_default")]
    pub spec: ContainerSpec,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_recreate(s: &Strategy) -> bool {
    *s == Strategy::Recreate
}

/// `DELETE /agent/v1/services/{service}`: stop and remove every container of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveServiceRequest {
    /// The lock the coordinator holds for this service.
    pub fence: FenceClaim,
}

/// The answer to `DELETE /agent/v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedService {
    /// The service.
    pub service: ServiceName,
    /// Ids of the containers removed.
    pub removed: Vec<String>,
}

/// `GET /agent/v1/images/{image}`: is the image present locally?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCheck {
    /// The image asked about.
    pub image: ImageRef,
    /// Whether the local daemon has it.
    pub present: bool,
    /// Docker's image id, when present.
    pub id: Option<String>,
}

/// `GET /agent/v1/fence/{key}`: the highest token the agent has seen for a lock key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceView {
    /// The lock key.
    pub key: crate::names::LockKey,
    /// The highest token seen, if any.
    pub highest: Option<crate::locks::FencingToken>,
}

/// `GET /agent/v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    /// Every service with a container on this server, by name.
    pub services: Vec<ServiceStatus>,
}

/// `PUT /agent/v1/operations/{operation_id}/rollback`: switch `service` back to the kept
/// previous container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The lock the coordinator holds for this service.
    pub fence: FenceClaim,
    /// The service.
    pub service: ServiceName,
    /// How to judge the restored container healthy (the agent prefers the check recorded
    /// on the container itself).
    pub health: HealthCheck,
    /// The container being replaced is a failed version (an automatic rollback): remove it
    /// once the previous one is back, as a failed deploy does on its own server, so no
    /// server keeps a failed version. A manual rollback keeps it (it can be rolled back to).
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_replaced: bool,
    /// How the service was deployed: a `blue_green` service switches its proxy route back
    /// (absent: `recreate`).
    #[serde(
        default = "Strategy::wire_default",
        skip_serializing_if = "is_recreate"
    )]
    pub strategy: Strategy,
    /// `blue_green`: how long the replaced version's connections may drain (absent: 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<DurationSpec>,
}

/// `PUT /agent/v1/operations/{id}/abort`: stop a running deploy going forward and
/// restore the previous version (the coordinator gave up on it: its progress deadline
/// passed). Fenced like every command; a finished operation is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortRequest {
    /// The lock the coordinator holds for this service.
    pub fence: FenceClaim,
    /// Why (recorded in the operation).
    pub reason: String,
}

/// `PUT /agent/v1/operations/{id}/weight`: a canary's next weight for the new version
/// (0-100; 100 finishes the canary: the old version drains and is kept). Fenced like every
/// command; an operation that is not holding a canary answers its view unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightRequest {
    /// The lock the coordinator holds for this service.
    pub fence: FenceClaim,
    /// The new version's share of new requests, percent.
    pub weight: u32,
}

pub use crate::analysis::exposition::TargetTraffic;

/// `GET /agent/v1/operations/{id}/traffic`: what the host's proxy counted for a deploy's
/// new container and the previous one (absent: no such target, no request yet).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OperationTraffic {
    /// The new version.
    pub new: Option<TargetTraffic>,
    /// The version it replaces.
    pub previous: Option<TargetTraffic>,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// A recreate deploy.
    Deploy,
    /// A switch back to the previous container.
    Rollback,
    /// The removal of every container of a service (`DELETE /agent/v1/services/{service}`).
    Remove,
}

/// Where an agent operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Still working.
    Running,
    /// The new version (or, for a rollback, the previous one) runs healthy.
    Succeeded,
    /// The new version failed; the previous one runs healthy again.
    RolledBack,
    /// Failed, and the previous version could not be restored (or there was none).
    Failed,
}

impl OperationState {
    /// Whether the operation has finished.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// One step of an operation, for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    /// What ("pull image", "start new container", "health check").
    pub name: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Whether it worked; `None` while running.
    pub ok: Option<bool>,
    /// A short note (the error, the container id).
    #[serde(default)]
    pub detail: String,
}

/// An agent operation, as returned by every operation endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationView {
    /// The operation id (the deployment id for deploys).
    pub id: Uuid,
    /// Deploy, rollback or removal.
    pub kind: OperationKind,
    /// The service.
    pub service: ServiceName,
    /// The image being deployed (or restored).
    pub image: Option<ImageRef>,
    /// Where it stands.
    pub state: OperationState,
    /// Human-readable progress.
    pub phase: String,
    /// Steps so far.
    pub steps: Vec<StepView>,
    /// The last lines of the failed container's log, when a new version failed.
    #[serde(default)]
    pub log_tail: Option<String>,
    /// What went wrong, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The fence it runs under.
    pub fence: FenceClaim,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// The container the operation started (deploy) or switched to (rollback).
    #[serde(default)]
    pub container: Option<String>,
    /// The container that served before, kept for rollback.
    #[serde(default)]
    pub previous_container: Option<String>,
    /// How many times the agent restarted while this operation ran and resumed it.
    #[serde(default)]
    pub resumed: u32,
    /// `canary`: the new version's weight the proxy applies now (absent before the first
    /// weight is set, and for other strategies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<u32>,
}

/// `GET /agent/v1/ports/{port}`: is the port bound on the host?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortProbe {
    /// The port.
    pub port: u16,
    /// Whether a bind on the agent's host address failed.
    pub bound: bool,
    /// The Sluice service whose container holds it, if it is one of ours.
    pub service: Option<ServiceName>,
}

/// `GET /agent/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    /// The server this agent runs on.
    pub server: String,
    /// Whether the Docker daemon answers.
    pub docker_reachable: bool,
    /// The daemon's version, when it answers.
    pub docker_version: Option<String>,
    /// Why it does not, when it does not.
    pub docker_error: Option<String>,
    /// Whether the host's `sluice-proxy` answers on its control socket (absent from agents
    /// before the proxy existed: false).
    #[serde(default)]
    pub proxy_reachable: bool,
    /// The proxy's version, when it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_version: Option<String>,
    /// Why it does not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_error: Option<String>,
    /// The agent's container policy, so a coordinator's validation can report what it
    /// would refuse (absent from agents before the container spec existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::container::ContainerPolicy>,
}

/// A container of a service, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerView {
    /// Docker's id.
    pub id: String,
    /// The image.
    pub image: String,
    /// The deployment that created it.
    pub deployment: Option<Uuid>,
    /// Docker's state (`running`, `exited`, ...).
    pub state: String,
    /// Whether it is the one serving (running).
    pub current: bool,
    /// Whether it is the stopped container kept for an instant rollback.
    #[serde(default)]
    pub previous: bool,
    /// The host port it publishes, if any.
    #[serde(default)]
    pub host_port: Option<u16>,
    /// Its exit code, when it has exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
}

/// `GET /agent/v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service.
    pub service: ServiceName,
    /// Its containers, newest first.
    pub containers: Vec<ContainerView>,
}

/// `POST /v1/agents/register` on a coordinator: an agent announces itself (on start and
/// whenever it (re)connects). Registration is a Raft write only when something changed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRegistration {
    /// The server the agent runs on (must match its certificate once mTLS is on).
    pub server: crate::names::ServerName,
    /// Where the agent API listens, as coordinators should dial it (`host:port`).
    pub agent_addr: String,
    /// The server's labels.
    #[serde(default)]
    pub labels: Vec<crate::names::Label>,
    /// The range the agent allocates service ports from.
    pub port_range: crate::ports::PortRange,
    /// The Docker daemon's version, if reachable.
    #[serde(default)]
    pub docker_version: Option<String>,
    /// The agent's own version.
    pub agent_version: String,
    /// Ports in the range already listening on the host when it registered, so that none
    /// is allocated before the first heartbeat reports them (absent from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_ports: Option<Vec<u16>>,
}

/// `POST /v1/agents/{server}/heartbeat` on a coordinator, every few seconds. Heartbeats stay
/// in the leader's memory; only changes (up/down, bound ports) go through Raft.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentHeartbeat {
    /// The server.
    pub server: crate::names::ServerName,
    /// Whether Docker answers.
    pub docker_reachable: bool,
    /// Ports inside the agent's range currently bound on the host (by anyone), sorted.
    pub bound_ports: Vec<u16>,
    /// Running containers managed by Sluice.
    pub containers_running: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_request_policy_fields_default_off_and_stay_off_the_wire() {
        let text = r#"{"fence":{"key":"service/api","token":3},"service":"api","image":"app:v1",
            "container_port":8080,"host_port":20000,"health":{"kind":"none"}}"#;
        let r: DeployRequest = serde_json::from_str(text).unwrap();
        assert!(!r.privileged && r.network_mode.is_none() && r.pid_mode.is_none());
        assert!(r.cap_add.is_empty() && r.mounts.is_empty());
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "privileged",
            "network_mode",
            "pid_mode",
            "cap_add",
            "mounts",
        ] {
            assert!(v.get(k).is_none(), "{k} is omitted when off");
        }
        assert_eq!(r.strategy, Strategy::Recreate);
        assert!(v.get("strategy").is_none(), "recreate stays off the wire");
        let explicit = text.replace("\"service\":", "\"strategy\":\"recreate\",\"service\":");
        assert_eq!(serde_json::from_str::<DeployRequest>(&explicit).unwrap(), r);
        let bad = text.replace("\"service\":", "\"privileged\":\"yes\",\"service\":");
        assert!(serde_json::from_str::<DeployRequest>(&bad).is_err());
    }
}
