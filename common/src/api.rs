//! Wire types of the coordinator's CI-facing API, version 1 (`/v1/...`).
//!
//! Request bodies use `deny_unknown_fields` and validated field types, so a typo in a CI
//! script is a 400 that names the field instead of a silently ignored option. Responses may
//! gain fields within v1; clients must ignore fields they do not know.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::deployment::{DeploymentState, Phase, SubState};
use crate::image::ImageRef;
use crate::locks::FencingToken;
use crate::names::{EnvName, Holder, Label, LockKey, ServerName, ServiceName};
use crate::ports::{Port, PortRange};
use crate::time::{DurationSpec, Timestamp};

/// The API version these types describe; paths are prefixed `/v{API_VERSION}`.
pub const API_VERSION: u32 = 1;

// ---------------------------------------------------------------- locks

/// `POST /v1/locks/{key}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireLockRequest {
    /// Who takes the lock (a CI job id, a person).
    pub holder: Holder,
    /// Why, shown to whoever finds it held.
    #[serde(default)]
    pub reason: String,
    /// Lease length; renew before it lapses. Default 60 s.
    #[serde(default = "default_lock_ttl")]
    #[cfg_attr(feature = "openapi", schema(default = "60s"))]
    pub ttl: DurationSpec,
    /// How long to wait for a held lock before answering 409. Default: do not wait.
    #[serde(default)]
    pub wait: Option<DurationSpec>,
}

fn default_lock_ttl() -> DurationSpec {
    DurationSpec::secs(60)
}

/// `PATCH /v1/locks/{key}`: renew (compare-and-set on the token). A release is
/// `DELETE /v1/locks/{key}?token=N`, without a body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewLockRequest {
    /// The token of the grant being renewed.
    pub token: FencingToken,
    /// New lease length from now. Default 60 s.
    #[serde(default = "default_lock_ttl")]
    #[cfg_attr(feature = "openapi", schema(default = "60s"))]
    pub ttl: DurationSpec,
}

/// A lock as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    /// The key.
    pub key: LockKey,
    /// Who holds it.
    pub holder: Holder,
    /// Why.
    pub reason: String,
    /// The fencing token: the Raft log index of the grant.
    pub token: FencingToken,
    /// When it was granted.
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

impl From<crate::locks::Lease> for LockView {
    fn from(l: crate::locks::Lease) -> Self {
        Self {
            key: l.key,
            holder: l.holder,
            reason: l.reason,
            token: l.token,
            acquired_at: l.acquired_at,
            expires_at: l.expires_at,
        }
    }
}

/// `GET /v1/locks`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockList {
    /// Live leases.
    pub locks: Vec<LockView>,
}

// ---------------------------------------------------------------- ports

/// `POST /v1/ports/{server}/{service}`: allocate (idempotent).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocatePortRequest {
    /// An explicit port; else the lowest free one in the server's range.
    #[serde(default)]
    pub port: Option<Port>,
}

/// A port held by a service on a server.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAllocationView {
    /// The server.
    pub server: ServerName,
    /// The service.
    pub service: ServiceName,
    /// The port.
    pub port: u16,
    /// False when the service already had it.
    pub newly_allocated: bool,
}

/// One server's port usage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPortsView {
    /// The server.
    pub server: ServerName,
    /// Its range.
    pub range: PortRange,
    /// Ports of the range that are not free.
    pub used: u32,
    /// Ports of the range that are free.
    pub free: u32,
    /// Service → port.
    pub assignments: BTreeMap<ServiceName, u16>,
    /// Ports the agent reported bound on the host.
    pub host_bound: Vec<u16>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// `DELETE /v1/ports/{server}/{service}`.
pub struct PortReleased {
    /// The freed port; null when the service had none there.
    pub released: Option<u16>,
}

/// `GET /v1/ports`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsList {
    /// Every server's ports.
    pub servers: Vec<ServerPortsView>,
}

// ---------------------------------------------------------------- servers

/// `PUT /v1/servers/{name}`: register or update a server (admin).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutServerRequest {
    /// Where its agent listens (`host:port`).
    pub agent_addr: String,
    /// Labels for policy and selectors.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Its port range. Default 20000–32000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "20000-32000"))]
    pub port_range: PortRange,
    /// Forbidden servers refuse every deployment.
    #[serde(default)]
    pub forbidden: bool,
}

/// A server as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// Its name.
    pub name: ServerName,
    /// Its agent's address.
    pub agent_addr: String,
    /// Labels.
    pub labels: Vec<Label>,
    /// Port range.
    pub port_range: PortRange,
    /// Whether deployments to it are refused.
    pub forbidden: bool,
    /// Whether its agent is up (replicated: changes when heartbeats stop or resume).
    #[serde(default)]
    pub up: bool,
    /// Milliseconds since the agent's last heartbeat, when the answering node is the
    /// leader (heartbeats live in the leader's memory only).
    #[serde(default)]
    pub last_heartbeat_ms: Option<u64>,
    /// The Docker version the agent reported.
    #[serde(default)]
    pub docker_version: Option<String>,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Ports of the range in use (ledger or bound on the host).
    #[serde(default)]
    pub ports_used: u32,
    /// Ports of the range free.
    #[serde(default)]
    pub ports_free: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// `DELETE /v1/servers/{name}`.
pub struct ServerRemoved {
    /// The server forgotten.
    pub removed: ServerName,
}

/// `PUT /v1/servers/{name}/labels`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLabelsRequest {
    /// The server's labels, replacing the current ones.
    pub labels: Vec<Label>,
}

// ---------------------------------------------------------------- cluster

/// A coordinator node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Raft node id.
    pub id: u64,
    /// Its advertised address.
    pub addr: String,
    /// Voter or learner.
    pub voter: bool,
}

/// `GET /v1/cluster`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    /// Its role: leader, follower, candidate, learner.
    pub state: String,
    /// The leader, as this node knows it.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Last log index on this node.
    pub last_log_index: Option<u64>,
    /// Committed index as this node knows it.
    pub committed: Option<u64>,
    /// Last applied index on this node.
    pub applied: Option<u64>,
    /// Index of the last snapshot.
    pub snapshot: Option<u64>,
    /// Index of the last log entry purged (entries up to it exist only in snapshots).
    #[serde(default)]
    pub purged: Option<u64>,
    /// Members.
    pub members: Vec<ClusterMember>,
}

/// `POST /v1/cluster/members`: add a node (as learner, then voter).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Raft node id (unique, non-zero).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub id: u64,
    /// Its advertised address (`host:port`).
    #[cfg_attr(feature = "openapi", schema(pattern = ":"))]
    pub addr: String,
    /// Promote to voter once caught up. Default true.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub voter: bool,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- deployments

/// An environment variable for the container; `secret` values are never shown again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// Its value.
    pub value: String,
    /// Redacted everywhere but on the agent and in the container.
    #[serde(default)]
    pub secret: bool,
}

/// How to tell a new container is healthy.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HealthCheck {
    /// An HTTP GET to the container port expecting 2xx.
    Http {
        /// The path: starts with `/`, no control characters.
        #[cfg_attr(
            feature = "openapi",
            schema(pattern = r"^/[^\u0000-\u001F\u007F-\u009F]*$")
        )]
        path: String,
        /// Per-attempt timeout (default 2 s).
        #[serde(default = "two_secs")]
        #[cfg_attr(feature = "openapi", schema(default = "2s"))]
        timeout: DurationSpec,
        /// Between attempts (default 1 s).
        #[serde(default = "one_sec")]
        #[cfg_attr(feature = "openapi", schema(default = "1s"))]
        interval: DurationSpec,
        /// Consecutive failures tolerated after the start period (default 10).
        #[serde(default = "ten")]
        #[cfg_attr(feature = "openapi", schema(default = 10))]
        retries: u32,
        /// Grace time in which failures do not count (default 0 s).
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(default = "0s"))]
        start_period: DurationSpec,
    },
    /// A TCP connect to the container port.
    Tcp {
        /// Per-attempt timeout.
        #[serde(default = "two_secs")]
        #[cfg_attr(feature = "openapi", schema(default = "2s"))]
        timeout: DurationSpec,
        /// Between attempts.
        #[serde(default = "one_sec")]
        #[cfg_attr(feature = "openapi", schema(default = "1s"))]
        interval: DurationSpec,
        /// Consecutive failures tolerated.
        #[serde(default = "ten")]
        #[cfg_attr(feature = "openapi", schema(default = 10))]
        retries: u32,
        /// Grace time.
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(default = "0s"))]
        start_period: DurationSpec,
    },
    /// The image's own Docker HEALTHCHECK.
    Docker {
        /// How long to wait for `healthy` (default 60 s).
        #[serde(default = "sixty_secs")]
        #[cfg_attr(feature = "openapi", schema(default = "60s"))]
        deadline: DurationSpec,
    },
    /// Healthy as soon as it runs (not recommended). A struct variant with no fields, so
    /// that unknown fields are refused here as in every other kind.
    None {},
}

fn one_sec() -> DurationSpec {
    DurationSpec::secs(1)
}
fn two_secs() -> DurationSpec {
    DurationSpec::secs(2)
}
fn sixty_secs() -> DurationSpec {
    DurationSpec::secs(60)
}
fn ten() -> u32 {
    10
}

/// Deployment strategies. Only `recreate` exists today.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Stop (but keep) the old container, start the new one on the same port.
    #[default]
    Recreate,
}

/// `POST /v1/deployments`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentRequest {
    /// The service.
    pub service: ServiceName,
    /// The image to run.
    pub image: ImageRef,
    /// Target servers by name.
    #[serde(default)]
    pub servers: Vec<ServerName>,
    /// Or every server carrying all these labels.
    #[serde(default)]
    pub selector: Vec<Label>,
    /// The port the process listens on inside the container.
    pub container_port: Port,
    /// An explicit host port; else one is allocated (and kept) per server.
    #[serde(default)]
    pub port: Option<Port>,
    /// Environment for the container.
    #[serde(default)]
    pub env: BTreeMap<EnvName, EnvVar>,
    /// How to judge the new version healthy.
    pub health: HealthCheck,
    /// How to roll it out.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "recreate"))]
    pub strategy: Strategy,
    /// How long to wait for the service lock (default: 0, fail at once if held).
    #[serde(default)]
    pub lock_wait: Option<DurationSpec>,
    /// Servers changed at once (default 1).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_parallel: Option<u32>,
    /// A deployment that makes no progress for this long fails and rolls back (default 10m).
    #[serde(default)]
    pub progress_deadline: Option<DurationSpec>,
    /// Protected server labels (see `GET /v1/policy`) this deployment may touch, e.g.
    /// `env=prod`. A target server carrying a protected label not listed here is refused
    /// by validation.
    #[serde(default)]
    pub allow_labels: Vec<Label>,
}

/// `GET`/`PUT /v1/policy`: the cluster's deployment policy (admin to change).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Servers carrying any of these labels take a deployment only when the request lists
    /// the label in `allow_labels` (an explicit allow for, say, `env=prod`).
    #[serde(default)]
    pub protected_labels: Vec<Label>,
}

/// A deployment's state change, as recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionView {
    /// State before.
    pub from: DeploymentState,
    /// State after.
    pub to: DeploymentState,
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
}

/// One pre-flight check's result.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Which check: `agent_reachable`, `server_allowed`, `port_available`, `image_exists`.
    pub check: String,
    /// The server it ran against.
    pub server: ServerName,
    /// Whether it passed.
    pub ok: bool,
    /// What it found.
    pub detail: String,
    /// How long it took.
    pub duration_ms: u64,
}

/// Where one target server stands in a deployment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStepState {
    /// Not started.
    Pending,
    /// The agent is deploying.
    Deploying,
    /// The new version runs healthy.
    Succeeded,
    /// The new version failed; the agent restored the previous one.
    RestoredByAgent,
    /// The new version failed and the previous one could not be restored.
    Failed,
    /// Rolling back to the previous version (another server failed, or a manual rollback).
    RollingBack,
    /// Back on the previous version.
    RolledBack,
    /// The rollback failed: this server needs a human.
    RollbackFailed,
}

/// One target server of a deployment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStepView {
    /// The server.
    pub server: ServerName,
    /// The host port the service has there.
    pub port: Option<u16>,
    /// Where it stands.
    pub state: ServerStepState,
    /// The agent operation that deployed it.
    pub operation: Option<uuid::Uuid>,
    /// The agent operation that rolled it back.
    pub rollback_operation: Option<uuid::Uuid>,
    /// The agent's phase or error.
    #[serde(default)]
    pub detail: String,
    /// The last lines of a failed container's log.
    #[serde(default)]
    pub log_tail: Option<String>,
}

impl ServerStepView {
    /// A server not touched yet.
    pub fn pending(server: &ServerName) -> Self {
        Self {
            server: server.clone(),
            port: None,
            state: ServerStepState::Pending,
            operation: None,
            rollback_operation: None,
            detail: String::new(),
            log_tail: None,
        }
    }
}

/// A deployment as the API shows it (secret env values redacted).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Its id.
    pub id: uuid::Uuid,
    /// The service.
    pub service: ServiceName,
    /// The image.
    pub image: ImageRef,
    /// Where it stands.
    pub state: DeploymentState,
    /// Where it stands within the state: `waiting`, `running`, `cancel_requested`, `done`,
    /// `noop`, `rollback_due`, `rolling_back` or `gave_up` (an operator must act).
    pub sub_state: SubState,
    /// Progress within the state.
    pub phase: Phase,
    /// The fencing token it holds the service lock with, once it has it.
    pub token: Option<FencingToken>,
    /// The servers it targets.
    pub targets: Vec<ServerName>,
    /// Every state change so far.
    pub transitions: Vec<TransitionView>,
    /// Every pre-flight check's result.
    pub validation: Vec<CheckResult>,
    /// Per-server progress.
    pub servers: Vec<ServerStepView>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// True when the image already ran healthy everywhere and nothing was touched.
    pub noop: bool,
    /// A manual rollback was requested.
    pub rollback_requested: bool,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// Environment, secret values shown as `<redacted>`.
    pub env: BTreeMap<EnvName, String>,
    /// Who asked for it.
    pub actor: String,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// `GET /v1/deployments`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentList {
    /// Newest first.
    pub deployments: Vec<DeploymentView>,
    /// Pass as `?before=` for the next page.
    pub next: Option<String>,
}

/// One server of a service.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceServerView {
    /// The server.
    pub server: ServerName,
    /// The image running there.
    pub image: ImageRef,
    /// Its host port.
    pub port: u16,
    /// The deployment that put it there.
    pub deployment: uuid::Uuid,
    /// Whether the server's agent is up.
    pub agent_up: bool,
}

/// `GET /v1/services` entries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// The service.
    pub service: ServiceName,
    /// Per server.
    pub servers: Vec<ServiceServerView>,
    /// The deployment in flight, if any.
    pub active_deployment: Option<uuid::Uuid>,
}

// ---------------------------------------------------------------- tokens

/// What a token may do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Reads only (`GET`).
    Viewer,
    /// Reads, deploys, rolls back, cancels and takes locks, within its services if scoped.
    Deployer,
    /// Everything: servers, ports, cluster membership, tokens.
    Admin,
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Viewer => "viewer",
            Self::Deployer => "deployer",
            Self::Admin => "admin",
        })
    }
}

/// A token's name: 1–64 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    /// Validates a name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.is_empty() || s.len() > 64 || !first_ok || !s.chars().all(ok_char) {
            return Err(format!(
                "token name {s:?} must be 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TokenName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token without its hash: what `GET /v1/tokens` shows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its name.
    pub name: TokenName,
    /// Its role.
    pub role: TokenRole,
    /// Its service scope (empty: all).
    pub services: Vec<ServiceName>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// `POST /v1/tokens` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A unique name (never reused).
    pub name: TokenName,
    /// Its role.
    pub role: TokenRole,
    /// For deployers: the services it may deploy (default: all). Refused for the other roles.
    #[serde(default)]
    pub services: Vec<ServiceName>,
}

/// `POST /v1/tokens` answer: the token and, this once, its secret.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token.
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret (`sluice_` and 64 hex digits). Shown here only; the cluster keeps its hash.
    #[cfg_attr(feature = "openapi", schema(pattern = "^sluice_[0-9a-f]{64}$"))]
    pub secret: String,
}

// ---------------------------------------------------------------- probes

/// `GET /healthz`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ok$"))]
    pub status: String,
}

/// `GET /readyz` (fields in the order serde_json's maps wrote them before this type existed).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The last index this node applied.
    pub applied: Option<u64>,
    /// The leader this node follows (or is).
    pub leader: Option<u64>,
    /// Always `ready`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ready$"))]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<AcquireLockRequest>(r#"{"holder":"ci","tll":"5s"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `tll`"), "{e}");
    }

    #[test]
    fn lock_request_defaults() {
        let r: AcquireLockRequest = serde_json::from_str(r#"{"holder":"ci-1"}"#).unwrap();
        assert_eq!(r.ttl, DurationSpec::secs(60));
        assert_eq!(r.wait, None);
    }

    #[test]
    fn deployment_request_validates_every_field() {
        let ok = r#"{
            "service": "api", "image": "localhost:5000/api:v2", "servers": ["web-1"],
            "container_port": 8080,
            "env": {"DATABASE_URL": {"value": "postgres://x", "secret": true}},
            "health": {"kind": "http", "path": "/healthz"}
        }"#;
        let r: CreateDeploymentRequest = serde_json::from_str(ok).unwrap();
        assert_eq!(r.strategy, Strategy::Recreate);
        match r.health {
            HealthCheck::Http { retries, .. } => assert_eq!(retries, 10),
            other => panic!("{other:?}"),
        }
        for (bad, needle) in [
            (ok.replace("\"api\"", "\"API\""), "service name"),
            (ok.replace("v2\"", "v2 \""), "image reference"),
            (ok.replace("8080", "0"), "port"),
            (
                ok.replace("DATABASE_URL", "DATABASE-URL"),
                "environment variable",
            ),
            (ok.replace("\"http\"", "\"ftp\""), "unknown variant"),
        ] {
            let e = serde_json::from_str::<CreateDeploymentRequest>(&bad).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }
}
