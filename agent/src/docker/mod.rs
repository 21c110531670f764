//! The agent's view of the local Docker daemon, through bollard: the production
//! [`Runtime`], plus what only the daemon itself has (reachability, the event stream, every
//! managed container at once).
//!
//! The daemon may be down when the agent starts or go away later; the agent keeps running,
//! reports `docker_reachable: false`, and reconnects with backoff ([`Docker::monitor`]).
//! Everything it lists or prunes is filtered by `sluice.server` and `sluice.service`, so
//! nothing else on the host is touched.
//!
//! # Layout
//! - `connect` ([`connect()`]): dialling the daemon and agreeing on an API version.
//! - `convert`: bollard's models to and from the runtime's types.
//! - `pull`: the registry login header (URL-safe, which bollard's is not) and why a pull
//!   failed.
//! - `spec`: what the container spec needs beyond the creation body (networks, stop grace).

mod connect;
mod convert;
mod pull;
mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use sluice_common::api::RegistryCredentials;
use sluice_common::image::ImageRef;
use sluice_common::names::{ServerName, ServiceName};
use tokio_util::sync::CancellationToken;

pub use self::connect::connect;
pub use crate::runtime::{
    Container, ContainerSpec, DockerError, Runtime, LABEL_DEPLOYMENT, LABEL_HEALTH, LABEL_SERVER,
    LABEL_SERVICE, LABEL_TOKEN,
};

/// Classifies a bollard error.
fn from_bollard(e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => DockerError::NotFound(message),
        BollardError::DockerResponseServerError { message, .. } => DockerError::Refused(message),
        BollardError::DockerStreamError { error } => DockerError::Refused(error),
        BollardError::JsonDataError { message, .. } => {
            DockerError::Refused(format!("unexpected answer: {message}"))
        }
        other => DockerError::Unavailable(other.to_string()),
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

/// The Docker client plus its reachability, shared by the whole agent.
#[derive(Debug)]
pub struct Docker {
    socket: PathBuf,
    server: ServerName,
    client: RwLock<Option<bollard::Docker>>,
    state: RwLock<Reachability>,
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
                    let e = from_bollard(e);
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
            let e = from_bollard(e);
            self.mark_down(&e);
            e
        })
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
                out.push((s, convert::to_container(r)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.created.cmp(&a.1.created)));
        Ok(out)
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
        Ok(c.events(Some(opts)).map(|r| r.map_err(from_bollard)))
    }
}

impl Runtime for Docker {
    /// The image's id, if the daemon has it.
    async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self
            .call(|c| async move { c.inspect_image(image).await })
            .await
        {
            Ok(i) => Ok(Some(i.id.unwrap_or_default())),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pulls `image` from its registry with `auth` if given, calling `progress` with
    /// Docker's status lines; a failure says why (see [`pull::explain_pull_failure`]).
    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<&RegistryCredentials>,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<(), DockerError> {
        let mut c = self.client().await?;
        if let (Some(auth), Some(server)) = (auth, image.registry()) {
            let header = pull::registry_auth_header(server, auth);
            let value = http::HeaderValue::from_str(&header)
                .map_err(|_| DockerError::Refused("unusable registry login".into()))?;
            c = c.with_request_modifier(move |mut req| {
                req.headers_mut().insert("x-registry-auth", value.clone());
                req
            });
        }
        let name = image.name();
        let tag = image
            .digest()
            .or(image.effective_tag())
            .unwrap_or("latest")
            .to_string();
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&name)
            .tag(&tag)
            .build();
        let mut stream = c.create_image(Some(opts), None, None);
        let explain = |e: DockerError| match e {
            DockerError::Refused(m) => DockerError::Refused(pull::explain_pull_failure(&m)),
            DockerError::NotFound(m) => DockerError::NotFound(pull::explain_pull_failure(&m)),
            other => other,
        };
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                let e = from_bollard(e);
                self.mark_down(&e);
                explain(e)
            })?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(explain(DockerError::Refused(err)));
            }
            if let Some(s) = info.status {
                progress(&s);
            }
        }
        Ok(())
    }

    /// Creates a container; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let body = convert::create_body(spec, &self.server);
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let r = self
            .call(|c| async move { c.create_container(Some(opts), body).await })
            .await?;
        if let Err(e) = self.join_networks(&r.id, spec).await {
            // A container that could not join its networks is not the one asked for.
            let _ = self.remove(&r.id).await;
            return Err(e);
        }
        Ok(r.id)
    }

    /// Starts a container (a running one is fine).
    async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.call(|c| async move { c.start_container(id, None).await })
            .await
    }

    /// Stops a container (a stopped one is fine), waiting `grace` before SIGKILL.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let grace = self.stop_grace_of(id, grace).await;
        let opts = StopContainerOptionsBuilder::default()
            .t(grace.as_secs() as i32)
            .build();
        self.call(|c| async move { c.stop_container(id, Some(opts)).await })
            .await
    }

    /// Removes a container, running or not; a missing one is fine.
    async fn remove(&self, id: &str) -> Result<(), DockerError> {
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
    async fn inspect(&self, id: &str) -> Result<Option<Container>, DockerError> {
        match self
            .call(|c| async move { c.inspect_container(id, None).await })
            .await
        {
            Ok(r) => Ok(Some(convert::to_container(r))),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A service's containers (this server's only), newest first.
    async fn service_containers(
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

    /// The last `lines` lines of a container's stdout and stderr.
    async fn log_tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        let c = self.client().await?;
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = c.logs(id, Some(opts));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.map_err(from_bollard)?.into_bytes());
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
