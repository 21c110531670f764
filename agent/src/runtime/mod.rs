//! The container runtime seam: exactly what the operation runners and the health checks
//! need from Docker, as a trait.
//!
//! [`crate::docker::Docker`] (bollard) implements it in production; `fake::FakeRuntime` is
//! an in-memory daemon with containers, images and scripted failures, so every path of a
//! runner is tested without Docker, sockets or sleeps, and the simulated agents
//! ([`crate::sim`]) answer deploys without a daemon. [`crate::engine::Engine`] is the one
//! the agent holds: either of the two.
//!
//! Methods return `impl Future + Send` rather than being `async fn`: runners are spawned
//! on the multi-threaded runtime, so their futures must be `Send` whatever the runtime is.
//! The trait is used as a generic bound (`R: Runtime`), never as a trait object.
//!
//! Every container the agent creates carries the labels below; a runtime lists and
//! prunes only containers labelled with its server and the service asked about, so
//! nothing else on the host is touched.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_common::api::HealthCheck;
use sluice_common::image::ImageRef;
use sluice_common::names::ServiceName;
use uuid::Uuid;

pub mod fake;

/// Label: the server (agent) that owns the container.
pub const LABEL_SERVER: &str = "sluice.server";
/// Label: the service.
pub const LABEL_SERVICE: &str = "sluice.service";
/// Label: the deployment (operation id) that created the container.
pub const LABEL_DEPLOYMENT: &str = "sluice.deployment";
/// Label: the fencing token the creating request carried.
pub const LABEL_TOKEN: &str = "sluice.token";
/// Label: the health check the container was deployed with (JSON), so that restoring it
/// later judges it by its own check, not by the one of the version that replaced it.
pub const LABEL_HEALTH: &str = "sluice.health";

/// A runtime failure, classified for the layers above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// The daemon cannot be reached.
    #[error("docker is unreachable: {0}")]
    Unavailable(String),
    /// No such image or container.
    #[error("not found: {0}")]
    NotFound(String),
    /// The daemon refused (conflict, bad parameters, port already allocated, ...).
    #[error("docker refused: {0}")]
    Refused(String),
}

/// The class of a [`DockerError`], as persisted (an operation that failed remembers how,
/// so an answer given after an agent restart is the one given before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// [`DockerError::Unavailable`].
    Unavailable,
    /// [`DockerError::NotFound`].
    NotFound,
    /// [`DockerError::Refused`].
    Refused,
}

impl DockerError {
    /// Its class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Refused(_) => ErrorKind::Refused,
        }
    }
}

/// A managed container, as inspected.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Docker's id.
    pub id: String,
    /// The image as configured (`sluice-testapp:v1`).
    pub image: String,
    /// The deployment that created it.
    pub deployment: Option<Uuid>,
    /// Docker's status (`running`, `exited`, `created`, `restarting`, ...).
    pub status: String,
    /// Running (or restarting after a crash).
    pub running: bool,
    /// Its (last) exit code, when it has exited (or is restarting after exiting).
    pub exit_code: Option<i64>,
    /// How often Docker restarted it (its restart policy after a crash).
    pub restart_count: i64,
    /// When it last stopped, normalised so strings sort by time ("" when it never ran).
    pub finished_at: String,
    /// When it was created, normalised likewise.
    pub created: String,
    /// The host port it publishes (the one Docker assigned, while it runs, when it asked
    /// for any).
    pub host_port: Option<u16>,
    /// The host address it publishes on (`127.0.0.1` behind `sluice-proxy`).
    pub host_ip: Option<String>,
    /// Docker's HEALTHCHECK status, if the image has one.
    pub health: Option<String>,
    /// The health check it was deployed with ([`LABEL_HEALTH`]; absent on containers
    /// created before the label existed).
    pub health_check: Option<HealthCheck>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// The container name.
    pub name: String,
    /// The image.
    pub image: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// `KEY=value` pairs (secret-capable: never log).
    pub env: Vec<String>,
    /// Port inside the container.
    pub container_port: u16,
    /// Host address and port to publish on.
    pub host_ip: String,
    /// Host port; 0 lets Docker pick a free one (behind `sluice-proxy`).
    pub host_port: u16,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in thousandths of a CPU.
    pub millicpus: Option<u32>,
    /// Privileged mode (allowed by policy).
    pub privileged: bool,
    /// Network mode.
    pub network_mode: Option<String>,
    /// PID mode.
    pub pid_mode: Option<String>,
    /// Added capabilities.
    pub cap_add: Vec<String>,
    /// Binds (`src:dst[:ro]`).
    pub binds: Vec<String>,
    /// The rest of the container spec (command, tmpfs, limits, restart policy, networks,
    /// labels, stop behaviour, logs); its policy-gated fields are folded into those above.
    pub spec: sluice_common::container::ContainerSpec,
}

/// What the runners and health checks need from the container runtime.
pub trait Runtime: Send + Sync {
    /// The image's id, if the daemon has it.
    fn image_id(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<String>, DockerError>> + Send;

    /// Pulls `image` from its registry (with `auth`, the login for its host, if any),
    /// calling `progress` with the daemon's status lines.
    fn pull(
        &self,
        image: &ImageRef,
        auth: Option<&sluice_common::api::RegistryCredentials>,
        progress: impl FnMut(&str) + Send,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Creates a container; returns its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;

    /// Starts a container (a running one is fine).
    fn start(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Stops a container (a stopped one is fine), waiting `grace` before SIGKILL.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Removes a container, running or not; a missing one is fine.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Inspects a container; `None` if it does not exist.
    fn inspect(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Container>, DockerError>> + Send;

    /// A service's containers (this server's only), newest first.
    fn service_containers(
        &self,
        service: &ServiceName,
    ) -> impl Future<Output = Result<Vec<Container>, DockerError>> + Send;

    /// The last `lines` lines of a container's stdout and stderr.
    fn log_tail(
        &self,
        id: &str,
        lines: usize,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;
}

/// The container a new one replaces: the running one, else the one that stopped last.
pub fn pick_previous<'a>(
    containers: &'a [Container],
    except: Option<&str>,
) -> Option<&'a Container> {
    let others = containers.iter().filter(|c| Some(c.id.as_str()) != except);
    others
        .clone()
        .find(|c| c.running)
        .or_else(|| others.max_by(|a, b| a.finished_at.cmp(&b.finished_at)))
}

/// A container id as shown in step details (Docker's short form).
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
