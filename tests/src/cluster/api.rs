//! The cluster's API through the typed client ([`sluice_common::client::Client`]): one node,
//! whichever running node answers, a deployment's end, and a refusal's problem.
//!
//! Every operation has exactly one success status (201 for an acquired lock, 202 for an
//! accepted deployment or request, 200 otherwise; a created deployment says `replayed` for
//! its 200), so a test that reads `Ok` reads that status too.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use sluice_common::api::{
    AcquireLockRequest, ClusterStatus, CreateDeploymentRequest, DeploymentView, ServerStepState,
};
use sluice_common::audit::AuditRecord;
use sluice_common::client::{Client, ClientError};
use sluice_common::deployment::DeploymentState;
use sluice_common::names::Holder;
use sluice_common::problem::Problem;
use sluice_common::time::DurationSpec;

use super::Cluster;
use crate::eventually::eventually;

/// The status and problem an operation was refused with. Panics on a success, on no answer,
/// or on an error answer whose body is not a problem (the coordinator's refusals always
/// carry one: a test asserting a code must read it from the body).
pub fn refusal<T: Debug>(answer: Result<T, ClientError>) -> (u16, Problem) {
    match answer {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(ClientError::Problem {
            status,
            problem,
            from_status: false,
        }) => (status.as_u16(), *problem),
        Err(e) => panic!("expected a problem+json refusal, got {e:?}"),
    }
}

/// A deployment request written as JSON (so that a test can set or change any field with
/// `json!`), read as the API's type: a body the type refuses fails the test here.
pub fn deployment_request(body: &serde_json::Value) -> CreateDeploymentRequest {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `POST /v1/locks/{key}`'s body: `holder` for `ttl` (`"30s"`), no reason, no waiting.
pub fn acquire_request(holder: &str, ttl: &str) -> AcquireLockRequest {
    AcquireLockRequest {
        holder: Holder::parse(holder).unwrap(),
        reason: String::new(),
        ttl: DurationSpec::parse(ttl).unwrap(),
        wait: None,
    }
}

/// The value of an unlabelled sample `name` in Prometheus text, if present.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Cluster {
    /// The typed API client of node index `i`, as the admin (`http`'s bearer token).
    pub fn api(&self, i: usize) -> Client {
        Client::new(self.http.clone(), self.nodes[i].url(""))
    }

    /// `GET /metrics` on node index `i`: the Prometheus text.
    pub async fn metrics(&self, i: usize) -> String {
        let url = self.nodes[i].url("/metrics");
        let resp = self.http.get(&url).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("{url}: {e}"));
        resp.text().await.unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// `GET /v1/cluster` on node index `i`.
    pub async fn status(&self, i: usize) -> Result<ClusterStatus, String> {
        let api = self.api(i).with_timeout(Duration::from_secs(2));
        api.cluster().await.map_err(|e| e.to_string())
    }

    /// `call` on each running node in turn, until one answers it with a success; the error
    /// names the last node asked and what it answered.
    pub async fn on_any<T, F, Fut>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut last = format!("no running node to ask for {what}");
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.is_running() {
                continue;
            }
            match call(self.api(i)).await {
                Ok(v) => return Ok(v),
                Err(ClientError::Problem { status, .. }) => {
                    last = format!("{what} on node {}: {status}", n.id)
                }
                Err(e) => last = format!("{what} on node {}: {e}", n.id),
            }
        }
        Err(last)
    }

    /// `GET /v1/deployments/{id}` from whichever running node answers.
    pub async fn deployment_any(&self, id: &str) -> Result<DeploymentView, String> {
        self.on_any(&format!("deployment {id}"), |api| async move {
            api.deployment(id).await
        })
        .await
    }

    /// The whole audit trail as node index `i` exports it (`format=jsonl`).
    pub async fn audit(&self, i: usize) -> Result<Vec<AuditRecord>, String> {
        let text = self.api(i).audit_export().await.map_err(|e| match e {
            ClientError::Problem { status, .. } => {
                format!("audit export on node {}: {status}", self.nodes[i].id)
            }
            other => other.to_string(),
        })?;
        text.lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
            .collect()
    }

    /// Polls deployment `id` until nothing is left to do for it: `success` or `rolled_back`
    /// (no rollback requested), or `failed` having touched no server, or `failed` with its
    /// rollback given up. A failed deployment that touched a server is still rolling back,
    /// whatever its phase says at that instant (the state machine keeps its lock for that).
    pub async fn final_deployment(&self, id: &str, deadline: Duration) -> DeploymentView {
        eventually(&format!("deployment {id} to end"), deadline, || async {
            let d = self.deployment_any(id).await?;
            let touched = d
                .servers
                .iter()
                .any(|s| s.state != ServerStepState::Pending);
            let gave_up = d.phase.as_str().starts_with("rollback failed");
            match d.state {
                DeploymentState::Success | DeploymentState::RolledBack if !d.rollback_requested => {
                    Ok(d)
                }
                DeploymentState::Failed if !touched || gave_up => Ok(d),
                other => Err(format!("{other}: {:?}", d.phase.as_str())),
            }
        })
        .await
    }
}
