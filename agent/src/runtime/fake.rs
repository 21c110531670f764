//! An in-memory container runtime: containers with states and labels, images present or
//! not, scripted failures per call and image, and scripted Docker HEALTHCHECK outcomes.
//! Every call answers at once; none sleeps or opens a socket. Unit tests script it; the
//! simulated agents ([`crate::sim`]) run on an [`FakeRuntime::open`] one, where every image
//! is present.
//!
//! Container ids are 12 characters (`c00000000001`, ...), so step details show them whole.
//! `created` and `finished_at` come from a counter, so "newest" and "stopped last" are
//! exact.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sluice_common::image::ImageRef;
use sluice_common::names::ServiceName;
use uuid::Uuid;

use super::{
    Container, ContainerSpec, DockerError, Runtime, LABEL_DEPLOYMENT, LABEL_HEALTH, LABEL_SERVICE,
};

/// A runtime call, for scripting failures and reading the call log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// [`Runtime::image_id`].
    ImageId,
    /// [`Runtime::pull`].
    Pull,
    /// [`Runtime::create`].
    Create,
    /// [`Runtime::start`].
    Start,
    /// [`Runtime::stop`].
    Stop,
    /// [`Runtime::remove`].
    Remove,
    /// [`Runtime::inspect`].
    Inspect,
    /// [`Runtime::service_containers`].
    List,
    /// [`Runtime::log_tail`].
    Logs,
}

#[derive(Debug)]
struct Entry {
    c: Container,
    name: String,
    service: Option<ServiceName>,
}

#[derive(Debug, Default)]
struct State {
    /// Every image is present (the simulated agents).
    open: bool,
    images: BTreeSet<String>,
    /// Images a pull can fetch.
    registry: BTreeSet<String>,
    containers: Vec<Entry>,
    clock: u64,
    next_id: u64,
    /// Failures, by call and image (`None`: any image), until cleared.
    failures: HashMap<(Call, Option<String>), DockerError>,
    /// The HEALTHCHECK status a container of this image reports once started.
    health: HashMap<String, String>,
    /// Images whose containers exit (code 1) as soon as they start.
    crashing: BTreeSet<String>,
    log: Vec<String>,
}

impl State {
    /// Logs a change (not on an open daemon: a simulated agent runs for long).
    fn note(&mut self, line: String) {
        if !self.open {
            self.log.push(line);
        }
    }

    fn tick(&mut self) -> String {
        self.clock += 1;
        format!("{:020}", self.clock)
    }

    fn failure(&self, call: Call, image: Option<&str>) -> Result<(), DockerError> {
        let specific = image.and_then(|i| self.failures.get(&(call, Some(i.to_string()))));
        match specific.or_else(|| self.failures.get(&(call, None))) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn entry(&mut self, id: &str) -> Option<&mut Entry> {
        self.containers.iter_mut().find(|e| e.c.id == id)
    }

    fn image_of(&self, id: &str) -> Option<String> {
        self.containers
            .iter()
            .find(|e| e.c.id == id)
            .map(|e| e.c.image.clone())
    }
}

/// The in-memory daemon.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    /// An empty daemon: no images, no containers.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("poisoned"))
    }

    /// A daemon that has every image (for simulated agents: deploys of any image work).
    pub fn open() -> Self {
        let rt = Self::default();
        rt.with(|s| s.open = true);
        rt
    }

    /// Every container with a service label, with its service, by service then newest
    /// first.
    pub fn all(&self) -> Vec<(ServiceName, Container)> {
        self.with(|s| {
            let mut out: Vec<_> = s
                .containers
                .iter()
                .filter_map(|e| e.service.clone().map(|n| (n, e.c.clone())))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.created.cmp(&a.1.created)));
            out
        })
    }

    /// Makes `image` present locally.
    pub fn add_image(&self, image: &str) {
        self.with(|s| s.images.insert(image.to_string()));
    }

    /// Makes `image` pullable from its registry (absent locally until pulled).
    pub fn publish(&self, image: &str) {
        self.with(|s| s.registry.insert(image.to_string()));
    }

    /// From now on, `call` fails with `error` (for containers or pulls of `image` only,
    /// when given).
    pub fn fail(&self, call: Call, image: Option<&str>, error: DockerError) {
        self.with(|s| s.failures.insert((call, image.map(str::to_string)), error));
    }

    /// Containers of `image` report this HEALTHCHECK status once started.
    pub fn health_of(&self, image: &str, status: &str) {
        self.with(|s| s.health.insert(image.to_string(), status.to_string()));
    }

    /// Containers of `image` exit with code 1 as soon as they start.
    pub fn crashing(&self, image: &str) {
        self.with(|s| s.crashing.insert(image.to_string()));
    }

    /// A container of `service` made outside any operation (a version deployed earlier),
    /// running or stopped; returns its id.
    pub fn existing(&self, service: &str, image: &str, running: bool) -> String {
        self.with(|s| {
            s.next_id += 1;
            let id = format!("c{:011}", s.next_id);
            let created = s.tick();
            let finished_at = if running { String::new() } else { s.tick() };
            let health = s.health.get(image).cloned().filter(|_| running);
            s.containers.push(Entry {
                name: format!("old-{id}"),
                service: ServiceName::parse(service).ok(),
                c: Container {
                    id: id.clone(),
                    image: image.to_string(),
                    deployment: None,
                    status: if running { "running" } else { "exited" }.into(),
                    running,
                    exit_code: (!running).then_some(0),
                    restart_count: 0,
                    finished_at,
                    created,
                    host_port: Some(20000),
                    host_ip: Some("127.0.0.1".into()),
                    health,
                    health_check: None,
                },
            });
            id
        })
    }

    /// A container created (not started) by operation `deployment`, as a run interrupted
    /// after creating it leaves it; returns its id.
    pub fn created_by(&self, service: &str, image: &str, deployment: Uuid) -> String {
        let id = self.existing(service, image, false);
        self.with(|s| {
            if let Some(e) = s.entry(&id) {
                e.c.deployment = Some(deployment);
                e.c.status = "created".into();
                e.c.exit_code = None;
                e.c.finished_at = String::new();
            }
        });
        id
    }

    /// Starts a container behind the agent's back (as a run interrupted after starting
    /// it leaves it).
    pub fn run_now(&self, id: &str) {
        self.with(|s| {
            let health = s.image_of(id).and_then(|i| s.health.get(&i).cloned());
            if let Some(e) = s.entry(id) {
                e.c.status = "running".into();
                e.c.running = true;
                e.c.exit_code = None;
                e.c.health = health;
            }
        });
    }

    /// Stops a container behind the agent's back.
    pub fn stop_now(&self, id: &str) {
        self.with(|s| {
            let at = s.tick();
            if let Some(e) = s.entry(id) {
                e.c.status = "exited".into();
                e.c.running = false;
                e.c.exit_code = Some(0);
                e.c.finished_at = at;
            }
        });
    }

    /// Takes a container away behind the agent's back (a `docker rm -f`).
    pub fn vanish(&self, id: &str) {
        self.with(|s| s.containers.retain(|e| e.c.id != id));
    }

    /// A container as the fake holds it.
    pub fn get(&self, id: &str) -> Option<Container> {
        self.with(|s| {
            s.containers
                .iter()
                .find(|e| e.c.id == id)
                .map(|e| e.c.clone())
        })
    }

    /// Every container of `service`, oldest first.
    pub fn of(&self, service: &str) -> Vec<Container> {
        self.with(|s| {
            s.containers
                .iter()
                .filter(|e| e.service.as_ref().is_some_and(|n| n.as_str() == service))
                .map(|e| e.c.clone())
                .collect()
        })
    }

    /// The calls that changed something, in order (`"start c00000000002"`, `"pull app:v2"`).
    pub fn changes(&self) -> Vec<String> {
        self.with(|s| s.log.clone())
    }
}

impl Runtime for FakeRuntime {
    async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        self.with(|s| {
            s.failure(Call::ImageId, Some(image))?;
            Ok((s.open || s.images.contains(image)).then(|| format!("sha256:{image}")))
        })
    }

    async fn pull(
        &self,
        image: &ImageRef,
        _auth: Option<&sluice_common::api::RegistryCredentials>,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<(), DockerError> {
        let name = image.to_string();
        let r = self.with(|s| {
            s.failure(Call::Pull, Some(&name))?;
            if !s.open && !s.registry.contains(&name) {
                return Err(DockerError::NotFound(format!(
                    "manifest for {name} not found"
                )));
            }
            s.images.insert(name.clone());
            s.note(format!("pull {name}"));
            Ok(())
        });
        if r.is_ok() {
            progress("Downloaded newer image");
        }
        r
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        self.with(|s| {
            s.failure(Call::Create, Some(&spec.image))?;
            if !s.open && !s.images.contains(&spec.image) {
                return Err(DockerError::NotFound(format!(
                    "No such image: {}",
                    spec.image
                )));
            }
            if s.containers.iter().any(|e| e.name == spec.name) {
                return Err(DockerError::Refused(format!(
                    "Conflict. The container name \"/{}\" is already in use",
                    spec.name
                )));
            }
            s.next_id += 1;
            let id = format!("c{:011}", s.next_id);
            let created = s.tick();
            let label = |k: &str| spec.labels.get(k).cloned();
            s.containers.push(Entry {
                name: spec.name.clone(),
                service: label(LABEL_SERVICE).and_then(|n| ServiceName::parse(&n).ok()),
                c: Container {
                    id: id.clone(),
                    image: spec.image.clone(),
                    deployment: label(LABEL_DEPLOYMENT).and_then(|d| Uuid::parse_str(&d).ok()),
                    status: "created".into(),
                    running: false,
                    exit_code: None,
                    restart_count: 0,
                    finished_at: String::new(),
                    created,
                    // "Any port": the fake daemon assigns one above the service ranges.
                    host_port: Some(match spec.host_port {
                        0 => 40000 + s.next_id as u16,
                        p => p,
                    }),
                    host_ip: Some(spec.host_ip.clone()),
                    health: None,
                    health_check: label(LABEL_HEALTH).and_then(|h| serde_json::from_str(&h).ok()),
                },
            });
            s.note(format!("create {id} {}", spec.image));
            Ok(id)
        })
    }

    async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.with(|s| {
            let image = s.image_of(id);
            s.failure(Call::Start, image.as_deref())?;
            let Some(image) = image else {
                return Err(DockerError::NotFound(format!("No such container: {id}")));
            };
            let crashes = s.crashing.contains(&image);
            let health = s.health.get(&image).cloned();
            let at = s.tick();
            let Some(e) = s.entry(id) else {
                return Err(DockerError::NotFound(format!("No such container: {id}")));
            };
            if crashes {
                e.c.status = "exited".into();
                e.c.running = false;
                e.c.exit_code = Some(1);
                e.c.finished_at = at;
            } else {
                e.c.status = "running".into();
                e.c.running = true;
                e.c.exit_code = None;
                e.c.health = health;
            }
            s.note(format!("start {id}"));
            Ok(())
        })
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), DockerError> {
        self.with(|s| {
            let image = s.image_of(id);
            s.failure(Call::Stop, image.as_deref())?;
            let at = s.tick();
            let Some(e) = s.entry(id) else {
                return Err(DockerError::NotFound(format!("No such container: {id}")));
            };
            if e.c.running {
                e.c.status = "exited".into();
                e.c.running = false;
                e.c.exit_code = Some(0);
                e.c.finished_at = at;
            }
            s.note(format!("stop {id}"));
            Ok(())
        })
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.with(|s| {
            let image = s.image_of(id);
            s.failure(Call::Remove, image.as_deref())?;
            let before = s.containers.len();
            s.containers.retain(|e| e.c.id != id);
            if s.containers.len() != before {
                s.note(format!("remove {id}"));
            }
            Ok(())
        })
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, DockerError> {
        self.with(|s| {
            let image = s.image_of(id);
            s.failure(Call::Inspect, image.as_deref())?;
            Ok(s.containers
                .iter()
                .find(|e| e.c.id == id)
                .map(|e| e.c.clone()))
        })
    }

    async fn service_containers(
        &self,
        service: &ServiceName,
    ) -> Result<Vec<Container>, DockerError> {
        self.with(|s| {
            s.failure(Call::List, None)?;
            let mut out: Vec<Container> = s
                .containers
                .iter()
                .filter(|e| e.service.as_ref() == Some(service))
                .map(|e| e.c.clone())
                .collect();
            out.sort_by(|a, b| b.created.cmp(&a.created));
            Ok(out)
        })
    }

    async fn log_tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        self.with(|s| {
            let image = s.image_of(id);
            s.failure(Call::Logs, image.as_deref())?;
            match image {
                Some(image) => Ok((1..=lines.min(3))
                    .map(|n| format!("{image} line {n}\n"))
                    .collect()),
                None => Err(DockerError::NotFound(format!("No such container: {id}"))),
            }
        })
    }
}
