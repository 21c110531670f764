//! What is on disk at the moment of each Docker change: the stage, and the step being
//! performed (begun and persisted before the call), so that a crash at any point leaves a
//! record that a restarted agent reads truthfully.

use std::sync::Mutex;
use std::time::Duration;

use sluice_common::image::ImageRef;
use sluice_common::names::ServiceName;

use super::*;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{Container, ContainerSpec, Runtime};
use crate::store::Store;

/// The fake runtime, noting the persisted stage and open step at every change.
struct Witness {
    inner: FakeRuntime,
    store: Store,
    op: Mutex<Option<Uuid>>,
    seen: Mutex<Vec<(String, Stage, String)>>,
}

impl Witness {
    fn note(&self, call: &str) {
        let Some(id) = *self.op.lock().unwrap() else {
            return;
        };
        let rec = self.store.get_op(id).unwrap().unwrap();
        let open = rec
            .view
            .steps
            .last()
            .filter(|s| s.ok.is_none())
            .map_or(String::new(), |s| s.name.clone());
        self.seen
            .lock()
            .unwrap()
            .push((call.to_string(), rec.stage, open));
    }
}

impl Runtime for Witness {
    async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        self.inner.image_id(image).await
    }
    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<&sluice_common::api::RegistryCredentials>,
        progress: impl FnMut(&str) + Send,
    ) -> Result<(), DockerError> {
        self.note("pull");
        self.inner.pull(image, auth, progress).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        self.note("create");
        self.inner.create(spec).await
    }
    async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.note(&format!(
            "start {}",
            self.inner.get(id).map_or("?".into(), |c| c.image)
        ));
        self.inner.start(id).await
    }
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        self.note(&format!(
            "stop {}",
            self.inner.get(id).map_or("?".into(), |c| c.image)
        ));
        self.inner.stop(id, grace).await
    }
    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        self.note(&format!(
            "remove {}",
            self.inner.get(id).map_or("?".into(), |c| c.image)
        ));
        self.inner.remove(id).await
    }
    async fn inspect(&self, id: &str) -> Result<Option<Container>, DockerError> {
        self.inner.inspect(id).await
    }
    async fn service_containers(
        &self,
        service: &ServiceName,
    ) -> Result<Vec<Container>, DockerError> {
        self.inner.service_containers(service).await
    }
    async fn log_tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        self.inner.log_tail(id, lines).await
    }
}

#[tokio::test]
async fn every_docker_change_is_preceded_by_its_persisted_stage_and_step() {
    let k = Kit::new();
    let w = Witness {
        inner: FakeRuntime::new(),
        store: k.ops.store().clone(),
        op: Mutex::new(None),
        seen: Mutex::new(Vec::new()),
    };
    w.inner.existing("api", "app:v0", false);
    w.inner.existing("api", "app:v1", true);
    w.inner.health_of("app:v1", "healthy");
    w.inner.publish("app:v2");
    w.inner.health_of("app:v2", "unhealthy");
    let cell = deploy(&k, "app:v2", json!({}));
    *w.op.lock().unwrap() = Some(cell.view().id);
    let x = crate::runner::exec::Exec {
        rt: &w,
        env: &k.env,
        cell: &cell,
    };
    crate::runner::run(&x).await.unwrap();
    assert_eq!(cell.view().state, OperationState::RolledBack);
    let seen = w.seen.lock().unwrap().clone();
    let expected: Vec<(String, Stage, String)> = [
        ("pull", Stage::Start, "ensure image"),
        ("create", Stage::Start, "create container"),
        ("stop app:v1", Stage::Switching, "stop previous container"),
        ("start app:v2", Stage::Switching, "start new container"),
        (
            "remove app:v2",
            Stage::RollingBack,
            "remove failed container",
        ),
        (
            "start app:v1",
            Stage::RollingBack,
            "start previous container",
        ),
    ]
    .into_iter()
    .map(|(c, s, o)| (c.to_string(), s, o.to_string()))
    .collect();
    assert_eq!(seen, expected);
}
