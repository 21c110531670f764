//! The agent's view of the local Docker daemon, through bollard.
//!
//! The daemon may be down when the agent starts or go away later; the agent keeps running,
//! reports `docker_reachable: false`, and reconnects with backoff ([`Docker::monitor`]).
//! Every container the agent creates carries the labels below; everything it lists or prunes
//! is filtered by `sluice.server` and `sluice.service`, so nothing else on the host is touched.
//!
//! API version: bollard 0.21 speaks API 1.53 by default, which older daemons (Docker 20.10
//! speaks 1.41) refuse with a 400 on every call. [`connect`] reads the daemon's maximum from
//! that refusal and reconnects with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::ClientVersion;
use futures_util::{Stream, StreamExt};
use sluice_common::image::ImageRef;
use sluice_common::names::{ServerName, ServiceName};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

/// A Docker failure, classified for the layers above.
#[derive(Debug, Clone, thiserror::Error)]
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

impl DockerError {
    fn from_bollard(e: BollardError) -> Self {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => Self::NotFound(message),
            BollardError::DockerResponseServerError { message, .. } => Self::Refused(message),
            BollardError::DockerStreamError { error } => Self::Refused(error),
            BollardError::JsonDataError { message, .. } => {
                Self::Refused(format!("unexpected answer: {message}"))
            }
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// What the agent last knew about the daemon.
#[derive(Debug, Clone, Default)]
pub struct Reachability {
    /// Whether the last call got an answer.
    pub reachable: bool,
    /// The daemon's version.
    pub version: Option<String>,
    /// The last connection error.
    pub error: Option<String>,
}

/// A managed container, as inspected.
#[derive(Debug, Clone)]
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
    /// The host port it publishes.
    pub host_port: Option<u16>,
    /// Docker's HEALTHCHECK status, if the image has one.
    pub health: Option<String>,
    /// The health check it was deployed with ([`LABEL_HEALTH`]; absent on containers
    /// created before the label existed).
    pub health_check: Option<sluice_common::api::HealthCheck>,
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
    /// Host port.
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
}

/// The Docker client plus its reachability, shared by the whole agent.
#[derive(Debug)]
pub struct Docker {
    socket: PathBuf,
    server: ServerName,
    client: RwLock<Option<bollard::Docker>>,
    state: RwLock<Reachability>,
}

/// Connects to the daemon at `socket`, settling on an API version it accepts, and returns the
/// client and the daemon's version.
pub async fn connect(socket: &Path) -> Result<(bollard::Docker, String), DockerError> {
    let path = socket.to_string_lossy();
    let mut version = *bollard::API_DEFAULT_VERSION;
    for _ in 0..2 {
        let client = bollard::Docker::connect_with_unix(&path, 120, &version)
            .map_err(|e| DockerError::Unavailable(e.to_string()))?;
        match client.version().await {
            Ok(v) => {
                let client = client
                    .negotiate_version()
                    .await
                    .map_err(DockerError::from_bollard)?;
                return Ok((client, v.version.unwrap_or_default()));
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 400,
                message,
            }) => match max_api_version(&message) {
                Some(v) => version = v,
                None => return Err(DockerError::Refused(message)),
            },
            Err(e) => return Err(DockerError::from_bollard(e)),
        }
    }
    Err(DockerError::Refused(
        "could not agree on an API version".into(),
    ))
}

/// Parses "... Maximum supported API version is 1.41" out of a daemon's refusal.
fn max_api_version(message: &str) -> Option<ClientVersion> {
    let tail = message.split("Maximum supported API version is ").nth(1)?;
    let v: String = tail
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = v.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.trim_end_matches('.').parse().ok()?,
    })
}

/// Docker's RFC 3339 times with their fraction padded to 9 digits, so they sort as strings.
fn sortable_time(t: Option<&str>) -> String {
    let Some(t) = t.filter(|t| !t.starts_with("0001-")) else {
        return String::new();
    };
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{secs}.{frac:0<9}Z")
}

impl Docker {
    /// A client for the daemon at `socket`; nothing is dialled until first use.
    pub fn new(socket: PathBuf, server: ServerName) -> Self {
        Self {
            socket,
            server,
            client: RwLock::new(None),
            state: RwLock::new(Reachability::default()),
        }
    }

    /// What the agent last knew about the daemon.
    pub fn reachability(&self) -> Reachability {
        self.state.read().expect("poisoned").clone()
    }

    fn set_state(&self, r: Reachability) {
        if r.reachable != self.state.read().expect("poisoned").reachable {
            if r.reachable {
                tracing::info!(version = ?r.version, "docker reachable");
            } else {
                tracing::warn!(error = ?r.error, "docker unreachable");
            }
        }
        *self.state.write().expect("poisoned") = r;
    }

    /// Keeps the connection alive: reconnects with backoff while the daemon is down, checks
    /// it every few seconds while it is up. Never returns before `cancel`.
    pub async fn monitor(&self, cancel: CancellationToken) {
        let policy = sluice_common::backoff::Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(10),
        );
        let mut retries = policy.retries(crate::jitter_seed(self.server.as_str()));
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    retries.reset();
                    Duration::from_secs(5)
                }
                Err(_) => retries.next_delay(),
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Pings the daemon (connecting first if needed) and records the outcome.
    pub async fn refresh(&self) -> Result<(), DockerError> {
        let existing = self.client.read().expect("poisoned").clone();
        if let Some(c) = existing {
            match c.version().await {
                Ok(v) => {
                    self.set_state(Reachability {
                        reachable: true,
                        version: v.version,
                        error: None,
                    });
                    return Ok(());
                }
                Err(e) => {
                    let e = DockerError::from_bollard(e);
                    self.mark_down(&e);
                    if !matches!(e, DockerError::Unavailable(_)) {
                        return Err(e);
                    }
                }
            }
        }
        match connect(&self.socket).await {
            Ok((c, version)) => {
                *self.client.write().expect("poisoned") = Some(c);
                self.set_state(Reachability {
                    reachable: true,
                    version: Some(version),
                    error: None,
                });
                Ok(())
            }
            Err(e) => {
                self.mark_down(&e);
                Err(e)
            }
        }
    }

    fn mark_down(&self, e: &DockerError) {
        if let DockerError::Unavailable(msg) = e {
            self.set_state(Reachability {
                reachable: false,
                version: None,
                error: Some(msg.clone()),
            });
        }
    }

    async fn client(&self) -> Result<bollard::Docker, DockerError> {
        let existing = self.client.read().expect("poisoned").clone();
        match existing {
            Some(c) => Ok(c),
            None => {
                self.refresh().await?;
                self.client
                    .read()
                    .expect("poisoned")
                    .clone()
                    .ok_or_else(|| DockerError::Unavailable("not connected".into()))
            }
        }
    }

    /// Runs `f` on the client and classifies its error (marking the daemon down when it is).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, DockerError>
    where
        F: FnOnce(bollard::Docker) -> Fut,
        Fut: std::future::Future<Output = Result<T, BollardError>>,
    {
        let c = self.client().await?;
        f(c).await.map_err(|e| {
            let e = DockerError::from_bollard(e);
            self.mark_down(&e);
            e
        })
    }

    /// The image's id, if the daemon has it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self
            .call(|c| async move { c.inspect_image(image).await })
            .await
        {
            Ok(i) => Ok(Some(i.id.unwrap_or_default())),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pulls `image` from its registry, calling `progress` with Docker's status lines.
    pub async fn pull(
        &self,
        image: &ImageRef,
        mut progress: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let c = self.client().await?;
        let name = image.name();
        let tag = image
            .effective_tag()
            .or(image.digest())
            .unwrap_or("latest")
            .to_string();
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&name)
            .tag(&tag)
            .build();
        let mut stream = c.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                let e = DockerError::from_bollard(e);
                self.mark_down(&e);
                e
            })?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Refused(err));
            }
            if let Some(s) = info.status {
                progress(&s);
            }
        }
        Ok(())
    }

    /// Creates a container; returns its id.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let port_key = format!("{}/tcp", spec.container_port);
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_SERVER.into(), self.server.to_string());
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(labels),
            env: Some(spec.env.clone()),
            exposed_ports: Some(vec![port_key.clone()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    port_key,
                    Some(vec![PortBinding {
                        host_ip: Some(spec.host_ip.clone()),
                        host_port: Some(spec.host_port.to_string()),
                    }]),
                )])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                memory: spec.memory_bytes.map(|m| m as i64),
                nano_cpus: spec.millicpus.map(|m| i64::from(m) * 1_000_000),
                privileged: Some(spec.privileged),
                network_mode: spec.network_mode.clone(),
                pid_mode: spec.pid_mode.clone(),
                cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
                binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let r = self
            .call(|c| async move { c.create_container(Some(opts), body).await })
            .await?;
        Ok(r.id)
    }

    /// Starts a container (a running one is fine).
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.call(|c| async move { c.start_container(id, None).await })
            .await
    }

    /// Stops a container (a stopped one is fine), waiting `grace` before SIGKILL.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let opts = StopContainerOptionsBuilder::default()
            .t(grace.as_secs() as i32)
            .build();
        self.call(|c| async move { c.stop_container(id, Some(opts)).await })
            .await
    }

    /// Removes a container, running or not; a missing one is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self
            .call(|c| async move { c.remove_container(id, Some(opts)).await })
            .await
        {
            Err(DockerError::NotFound(_)) => Ok(()),
            r => r,
        }
    }

    /// Inspects a container; `None` if it does not exist.
    pub async fn inspect(&self, id: &str) -> Result<Option<Container>, DockerError> {
        match self
            .call(|c| async move { c.inspect_container(id, None).await })
            .await
        {
            Ok(r) => Ok(Some(to_container(r))),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ids of this server's managed containers, optionally of one service, running or not.
    async fn list_ids(&self, service: Option<&ServiceName>) -> Result<Vec<String>, DockerError> {
        let mut labels = vec![format!("{LABEL_SERVER}={}", self.server)];
        match service {
            Some(s) => labels.push(format!("{LABEL_SERVICE}={s}")),
            None => labels.push(LABEL_SERVICE.to_string()),
        }
        let filters = HashMap::from([("label", labels)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .call(|c| async move { c.list_containers(Some(opts)).await })
            .await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// A service's containers (this server's only), newest first.
    pub async fn service_containers(
        &self,
        service: &ServiceName,
    ) -> Result<Vec<Container>, DockerError> {
        let mut out = Vec::new();
        for id in self.list_ids(Some(service)).await? {
            if let Some(c) = self.inspect(&id).await? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// Every managed container on this server, with its service.
    pub async fn all_containers(&self) -> Result<Vec<(ServiceName, Container)>, DockerError> {
        let mut out = Vec::new();
        for id in self.list_ids(None).await? {
            let Some(r) = self
                .call(|c| async move { c.inspect_container(&id, None).await })
                .await
                .map(Some)
                .or_else(|e| match e {
                    DockerError::NotFound(_) => Ok(None),
                    e => Err(e),
                })?
            else {
                continue;
            };
            let service = r
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_SERVICE))
                .and_then(|s| ServiceName::parse(s).ok());
            if let Some(s) = service {
                out.push((s, to_container(r)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.created.cmp(&a.1.created)));
        Ok(out)
    }

    /// The last `lines` lines of a container's stdout and stderr.
    pub async fn log_tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        let c = self.client().await?;
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = c.logs(id, Some(opts));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(DockerError::from_bollard)?.into_bytes());
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Lifecycle events of this server's managed containers.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<bollard::models::EventMessage, DockerError>>, DockerError>
    {
        let c = self.client().await?;
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![format!("{LABEL_SERVER}={}", self.server)]),
            (
                "event",
                vec!["die".into(), "start".into(), "oom".into(), "destroy".into()],
            ),
        ]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        Ok(c.events(Some(opts))
            .map(|r| r.map_err(DockerError::from_bollard)))
    }
}

fn to_container(r: ContainerInspectResponse) -> Container {
    let state = r.state.unwrap_or_default();
    let labels = r
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let host_port = r
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .and_then(|m| m.values().flatten().flatten().next().cloned())
        .and_then(|b| b.host_port)
        .and_then(|p| p.parse().ok());
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let restart_count = r.restart_count.unwrap_or(0);
    let exited = matches!(status.as_str(), "exited" | "dead" | "restarting") || restart_count > 0;
    Container {
        id: r.id.unwrap_or_default(),
        image: r.config.and_then(|c| c.image).unwrap_or_default(),
        deployment: labels
            .get(LABEL_DEPLOYMENT)
            .and_then(|d| Uuid::parse_str(d).ok()),
        running: state.running.unwrap_or(false) || state.restarting.unwrap_or(false),
        exit_code: state.exit_code.filter(|_| exited),
        restart_count,
        finished_at: sortable_time(state.finished_at.as_deref()),
        created: sortable_time(r.created.as_deref()),
        health_check: labels
            .get(LABEL_HEALTH)
            .and_then(|h| serde_json::from_str(h).ok()),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        status,
        host_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_maximum_version_from_a_refusal() {
        let v = max_api_version(
            "client version 1.53 is too new. Maximum supported API version is 1.41",
        )
        .unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(max_api_version("something else").is_none());
    }

    #[test]
    fn docker_times_sort_as_strings() {
        let a = sortable_time(Some("2024-01-01T10:00:00.1Z"));
        let b = sortable_time(Some("2024-01-01T10:00:00.12Z"));
        assert!(a < b, "{a} {b}");
        assert_eq!(sortable_time(Some("0001-01-01T00:00:00Z")), "");
        assert!(sortable_time(Some("2024-01-01T10:00:00Z")) < b);
    }
}
