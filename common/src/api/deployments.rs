//! `/v1/deployments` and `/v1/services`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::ContainerSpec;
use crate::deployment::{DeploymentState, Phase, SubState};
use crate::image::ImageRef;
use crate::locks::FencingToken;
use crate::names::{EnvName, Label, ServerName, ServiceName};
use crate::ports::Port;
use crate::time::{DurationSpec, Timestamp};

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

/// Deployment strategies.
///
/// There is deliberately no `Default`: the API's default (`blue_green`) and the agent wire's
/// (`recreate`, what agents knew before the field existed) are stated where each is parsed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Stop (but keep) the old container, start the new one on the same port. For services
    /// that cannot run two copies at once (an exclusive volume, a singleton worker).
    Recreate,
    /// Start the new container beside the old one, health-check it directly, switch the
    /// host's `sluice-proxy` route to it, drain the old one, watch for `min_healthy`, then
    /// stop (and keep) the old one. Needs a health check.
    BlueGreen,
    /// Like `blue_green`, but traffic moves to the new version in steps of weight on every
    /// server at once (`canary`), each judged by analysis; a failure sets every server back
    /// to the old version at once. Needs a health check.
    Canary,
}

impl Strategy {
    /// What a request that names no strategy gets.
    pub fn api_default() -> Self {
        Self::BlueGreen
    }

    /// What an agent request that names none means (agents before the field existed knew
    /// only `recreate`).
    pub fn wire_default() -> Self {
        Self::Recreate
    }

    /// Whether the strategy runs the new version beside the old behind the proxy.
    pub fn proxied(self) -> bool {
        matches!(self, Self::BlueGreen | Self::Canary)
    }
}

/// `POST /v1/deployments`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default = "Strategy::api_default")]
    #[cfg_attr(feature = "openapi", schema(default = "blue_green"))]
    pub strategy: Strategy,
    /// `canary`: its steps and analysis (default: 10 % for 1 minute, then 50 % for 1 minute,
    /// no analysis). Only with strategy `canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<super::canary::CanarySpec>,
    /// The watch period after the new version's first good health check: it keeps being
    /// checked, and a failure switches back to the previous version at once (default 10 s).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "10s"))]
    pub min_healthy: Option<DurationSpec>,
    /// `blue_green`: how long TCP and WebSocket connections to the old version may go on
    /// after the switch before they are closed (in-flight HTTP requests always finish;
    /// default 30 s).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "30s"))]
    pub drain_timeout: Option<DurationSpec>,
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
    /// The container beyond image, port, environment and health: command, volumes,
    /// limits, networks, restart policy, labels, stop behaviour, logs. Host paths,
    /// `privileged`, the host network and `cap_add` pass only where the target server's
    /// policy allows them.
    #[serde(default, skip_serializing_if = "ContainerSpec::is_default")]
    pub spec: ContainerSpec,
    /// Deploy only if the service's version index (`index` of `POST /v1/deployments/plan`)
    /// is still this: a deployment of the service accepted since the plan makes this a
    /// 409 `service_changed`, so what was reviewed is what is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_index: Option<u64>,
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
    /// Which check: `agent_reachable`, `server_allowed`, `port_available`, `image_exists`,
    /// for `blue_green` `proxy_reachable`, and with a container spec `container_policy`.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Its id.
    pub id: uuid::Uuid,
    /// The service.
    pub service: ServiceName,
    /// The image.
    pub image: ImageRef,
    /// The digest (`sha256:…`) validation resolved the image's tag to in its registry:
    /// what every server pulls and runs (`repository@digest`). Absent for images that
    /// name no registry, and before validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^sha256:[0-9a-f]{64}$"))]
    pub image_digest: Option<String>,
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
    /// `canary`: the step reached, pauses, and every analysis measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<super::canary::CanaryView>,
    /// True when the image already ran healthy everywhere and nothing was touched.
    pub noop: bool,
    /// A manual rollback was requested.
    pub rollback_requested: bool,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// Environment, secret values shown as `<redacted>`.
    pub env: BTreeMap<EnvName, String>,
    /// The container spec it runs with (empty: the defaults).
    #[serde(default)]
    pub spec: ContainerSpec,
    /// Who asked for it.
    pub actor: String,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// `GET /v1/deployments`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    /// Newest first.
    pub deployments: Vec<DeploymentView>,
    /// Pass as `?before=` for the next page.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+$"))]
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
