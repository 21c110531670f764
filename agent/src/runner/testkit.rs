//! What the runners' unit tests share: a fake runtime, an operation table over a
//! temporary store, and requests built from JSON as the coordinator sends them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use sluice_common::agent_api::{DeployRequest, RollbackRequest};
use sluice_common::names::ServerName;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::exec::{Env, Exec};
use crate::ops::{OpCell, Operations};
use crate::record::{OpRequest, RemoveRequest};
use crate::runtime::fake::FakeRuntime;
use crate::store::Store;

/// A fake daemon and an operation table.
#[derive(Debug)]
pub struct Kit {
    /// The daemon.
    pub rt: FakeRuntime,
    /// The operations.
    pub ops: Operations,
    /// The runners' settings.
    pub env: Env,
}

fn probes() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

/// A deploy of `image` for `service` under token `token`, health-checked by `health`
/// (JSON), with `extra` fields merged in.
pub fn deploy_request(
    service: &str,
    image: &str,
    token: u64,
    health: serde_json::Value,
    extra: serde_json::Value,
) -> DeployRequest {
    let mut v = json!({
        "fence": {"key": format!("service/{service}"), "token": token},
        "service": service, "image": image, "container_port": 8080, "host_port": 20000,
        "health": health,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).expect("a valid deploy request")
}

/// Docker's own HEALTHCHECK, which the fake scripts per image.
pub fn docker_check() -> serde_json::Value {
    json!({"kind": "docker", "deadline": "5s"})
}

/// The names of the operation's steps so far.
pub fn steps(cell: &OpCell) -> Vec<String> {
    cell.view().steps.into_iter().map(|s| s.name).collect()
}

impl Kit {
    /// An empty daemon and table.
    pub fn new() -> Self {
        Self {
            rt: FakeRuntime::new(),
            ops: Operations::open(Store::temporary().expect("temporary store"))
                .expect("operations"),
            env: Env {
                server: ServerName::parse("web-1").expect("name"),
                host_ip: "127.0.0.1".parse().expect("address"),
                stop_grace: Duration::from_secs(1),
                cancel: CancellationToken::new(),
                probes: probes(),
                proxy: None,
            },
        }
    }

    /// Admits `request` under a fresh id.
    pub fn admit(&self, request: OpRequest) -> Arc<OpCell> {
        self.admit_as(Uuid::new_v4(), request)
    }

    /// Admits `request` as operation `id`.
    pub fn admit_as(&self, id: Uuid, request: OpRequest) -> Arc<OpCell> {
        let (_, cell) = self.ops.admit(id, request).expect("admitted");
        cell.expect("a new operation")
    }

    /// Admits a deploy.
    pub fn admit_deploy(&self, req: DeployRequest) -> Arc<OpCell> {
        self.admit(OpRequest::Deploy(Box::new(req)))
    }

    /// Admits a rollback of `service`.
    pub fn admit_rollback(&self, service: &str, token: u64, discard: bool) -> Arc<OpCell> {
        let req: RollbackRequest = serde_json::from_value(json!({
            "fence": {"key": format!("service/{service}"), "token": token},
            "service": service,
            "health": docker_check(),
            "discard_replaced": discard,
        }))
        .expect("a valid rollback request");
        self.admit(OpRequest::Rollback(req))
    }

    /// Admits the removal of `service`.
    pub fn admit_remove(&self, service: &str, token: u64) -> Arc<OpCell> {
        let req: RemoveRequest = serde_json::from_value(json!({
            "fence": {"key": format!("service/{service}"), "token": token},
            "service": service,
        }))
        .expect("a valid removal");
        self.admit_as(req.operation_id(), OpRequest::Remove(req))
    }

    /// Runs the operation to its end; panics if it halts.
    pub async fn run(&self, cell: &OpCell) {
        let x = Exec {
            rt: &self.rt,
            env: &self.env,
            cell,
        };
        if let Err(h) = super::run(&x).await {
            panic!("the runner halted: {h:?}");
        }
    }

    /// Resumes the operation as a restarted agent does, and runs it to its end.
    pub async fn resume(&self, cell: &OpCell) {
        super::mark_resumed(cell);
        self.run(cell).await;
    }
}
