//! The container engine an agent drives: the host's Docker daemon (production), or an
//! in-memory one (the simulated agents of [`crate::sim`]).
//!
//! Runners and health checks take any [`Runtime`]; the rest of the agent (its API, metrics,
//! heartbeats, the event follower) also needs reachability and a listing of every managed
//! container. An enum rather than a trait object: the runtime's methods return
//! `impl Future`, and there are exactly two engines.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_common::api::RegistryCredentials;
use sluice_common::image::ImageRef;
use sluice_common::names::ServiceName;
use sluice_common::ports::PortRange;
use tokio_util::sync::CancellationToken;

use crate::docker::{Docker, Reachability};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{Container, ContainerSpec, DockerError, Runtime};

/// The agent's container engine.
#[derive(Debug)]
pub enum Engine {
    /// The host's Docker daemon, through bollard.
    Docker(Docker),
    /// An in-memory daemon that has every image (simulated agents).
    Memory(FakeRuntime),
}

/// What a simulated engine reports as its version.
pub const MEMORY_VERSION: &str = "in-memory";

impl Engine {
    /// What the agent last knew about the engine (the in-memory one is always there).
    pub fn reachability(&self) -> Reachability {
        match self {
            Self::Docker(d) => d.reachability(),
            Self::Memory(_) => Reachability {
                reachable: true,
                version: Some(MEMORY_VERSION.into()),
                error: None,
            },
        }
    }

    /// Keeps the connection alive until `cancel` (nothing to keep for the in-memory one).
    pub async fn monitor(&self, cancel: CancellationToken) {
        match self {
            Self::Docker(d) => d.monitor(cancel).await,
            Self::Memory(_) => cancel.cancelled().await,
        }
    }

    /// Pings the engine and records the outcome.
    pub async fn refresh(&self) -> Result<(), DockerError> {
        match self {
            Self::Docker(d) => d.refresh().await,
            Self::Memory(_) => Ok(()),
        }
    }

    /// Every managed container on this server, with its service.
    pub async fn all_containers(&self) -> Result<Vec<(ServiceName, Container)>, DockerError> {
        match self {
            Self::Docker(d) => d.all_containers().await,
            Self::Memory(m) => Ok(m.all()),
        }
    }

    /// Ports in `range` bound on the host: every listening socket for Docker (its
    /// published ports and anything else on the host); the published ports of running
    /// containers for the in-memory engine (nothing really listens, and a thousand
    /// simulated agents share one host).
    pub async fn bound_ports(&self, range: PortRange) -> BTreeSet<u16> {
        match self {
            Self::Docker(_) => {
                tokio::task::spawn_blocking(move || crate::ports::listening_in(range))
                    .await
                    .unwrap_or_default()
            }
            Self::Memory(m) => m
                .all()
                .into_iter()
                .filter(|(_, c)| c.running)
                .filter_map(|(_, c)| c.host_port)
                .filter(|p| range.contains(*p))
                .collect(),
        }
    }

    /// Whether `port` is bound on `ip`: a bind probe for Docker; for the in-memory engine,
    /// whether a running container publishes it (simulated agents share one host, so
    /// their probes would see each other's).
    pub async fn port_bound(&self, ip: std::net::IpAddr, port: u16) -> bool {
        match self {
            Self::Docker(_) => {
                tokio::task::spawn_blocking(move || crate::ports::is_bound(ip, port))
                    .await
                    .unwrap_or(true)
            }
            Self::Memory(m) => m
                .all()
                .iter()
                .any(|(_, c)| c.running && c.host_port == Some(port)),
        }
    }

    /// The Docker daemon, when this engine is one (its event stream has no in-memory twin).
    pub fn docker(&self) -> Option<&Docker> {
        match self {
            Self::Docker(d) => Some(d),
            Self::Memory(_) => None,
        }
    }
}

impl Runtime for Engine {
    async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self {
            Self::Docker(d) => d.image_id(image).await,
            Self::Memory(m) => m.image_id(image).await,
        }
    }

    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<&RegistryCredentials>,
        progress: impl FnMut(&str) + Send,
    ) -> Result<(), DockerError> {
        match self {
            Self::Docker(d) => d.pull(image, auth, progress).await,
            Self::Memory(m) => m.pull(image, auth, progress).await,
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        match self {
            Self::Docker(d) => d.create(spec).await,
            Self::Memory(m) => m.create(spec).await,
        }
    }

    async fn start(&self, id: &str) -> Result<(), DockerError> {
        match self {
            Self::Docker(d) => d.start(id).await,
            Self::Memory(m) => m.start(id).await,
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        match self {
            Self::Docker(d) => d.stop(id, grace).await,
            Self::Memory(m) => m.stop(id, grace).await,
        }
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        match self {
            Self::Docker(d) => d.remove(id).await,
            Self::Memory(m) => m.remove(id).await,
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, DockerError> {
        match self {
            Self::Docker(d) => d.inspect(id).await,
            Self::Memory(m) => m.inspect(id).await,
        }
    }

    async fn service_containers(
        &self,
        service: &ServiceName,
    ) -> Result<Vec<Container>, DockerError> {
        match self {
            Self::Docker(d) => d.service_containers(service).await,
            Self::Memory(m) => m.service_containers(service).await,
        }
    }

    async fn log_tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        match self {
            Self::Docker(d) => d.log_tail(id, lines).await,
            Self::Memory(m) => m.log_tail(id, lines).await,
        }
    }
}
