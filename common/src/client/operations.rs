//! One method per operation of the coordinator's API (the document's `operationId`s).

use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::{AuditFilter, Client, ClientError, Created, DeploymentFilter};
use crate::agent_api::{AgentHeartbeat, AgentRegistration};
use crate::api::*;
use crate::audit::AuditPage;
use crate::locks::FencingToken;
use crate::names::{LockKey, ServerName, ServiceName};

impl Client {
    // ------------------------------------------------------------ probes and meta

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    /// `GET /readyz`.
    pub async fn readyz(&self) -> Result<Ready, ClientError> {
        self.get("/readyz").await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let resp = self
            .send("/metrics", self.request(Method::GET, "/metrics"))
            .await?;
        resp.text().await.map_err(|source| ClientError::Decode {
            path: "/metrics".into(),
            source,
        })
    }

    /// `GET /v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/v1/openapi.json").await
    }

    // ------------------------------------------------------------ cluster

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/v1/cluster").await
    }

    /// `POST /v1/cluster/members`.
    pub async fn add_member(&self, req: &AddMemberRequest) -> Result<ClusterStatus, ClientError> {
        self.call(Method::POST, "/v1/cluster/members", Some(req))
            .await
    }

    /// `DELETE /v1/cluster/members/{id}` (the id as text: the server validates it).
    pub async fn remove_member(&self, id: &str) -> Result<ClusterStatus, ClientError> {
        self.bodiless(Method::DELETE, &format!("/v1/cluster/members/{id}"))
            .await
    }

    // ------------------------------------------------------------ locks

    /// `GET /v1/locks`.
    pub async fn locks(&self) -> Result<LockList, ClientError> {
        self.get("/v1/locks").await
    }

    /// `GET /v1/locks/{key}`.
    pub async fn lock(&self, key: &LockKey) -> Result<LockView, ClientError> {
        self.get(&format!("/v1/locks/{key}")).await
    }

    /// `POST /v1/locks/{key}`. The server may hold the request for `req.wait`: the request's
    /// timeout is extended by that much beyond `http`'s (30 s when it has none of its own).
    pub async fn acquire_lock(
        &self,
        key: &LockKey,
        req: &AcquireLockRequest,
    ) -> Result<LockView, ClientError> {
        let path = format!("/v1/locks/{key}");
        let wait = req.wait.map_or(Duration::ZERO, |w| w.get());
        let builder = self
            .request(Method::POST, &path)
            .json(req)
            .timeout(wait + Duration::from_secs(30));
        let resp = self.send(&path, builder).await?;
        Self::decode(&path, resp).await
    }

    /// `PATCH /v1/locks/{key}`.
    pub async fn renew_lock(
        &self,
        key: &LockKey,
        req: &RenewLockRequest,
    ) -> Result<LockView, ClientError> {
        self.call(Method::PATCH, &format!("/v1/locks/{key}"), Some(req))
            .await
    }

    /// `DELETE /v1/locks/{key}?token=N`.
    pub async fn release_lock(
        &self,
        key: &LockKey,
        token: FencingToken,
    ) -> Result<LockView, ClientError> {
        self.bodiless(
            Method::DELETE,
            &format!("/v1/locks/{key}?token={}", token.0),
        )
        .await
    }

    // ------------------------------------------------------------ ports

    /// `GET /v1/ports`.
    pub async fn ports(&self) -> Result<PortsList, ClientError> {
        self.get("/v1/ports").await
    }

    /// `GET /v1/ports/{server}`.
    pub async fn server_ports(&self, server: &ServerName) -> Result<ServerPortsView, ClientError> {
        self.get(&format!("/v1/ports/{server}")).await
    }

    /// `POST /v1/ports/{server}/{service}`.
    pub async fn allocate_port(
        &self,
        server: &ServerName,
        service: &ServiceName,
        req: &AllocatePortRequest,
    ) -> Result<PortAllocationView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/ports/{server}/{service}"),
            Some(req),
        )
        .await
    }

    /// `DELETE /v1/ports/{server}/{service}`.
    pub async fn release_port(
        &self,
        server: &ServerName,
        service: &ServiceName,
    ) -> Result<PortReleased, ClientError> {
        self.bodiless(Method::DELETE, &format!("/v1/ports/{server}/{service}"))
            .await
    }

    // ------------------------------------------------------------ servers and policy

    /// `GET /v1/servers`.
    pub async fn servers(&self) -> Result<Vec<ServerView>, ClientError> {
        self.get("/v1/servers").await
    }

    /// `GET /v1/servers/{name}`.
    pub async fn server(&self, name: &ServerName) -> Result<ServerView, ClientError> {
        self.get(&format!("/v1/servers/{name}")).await
    }

    /// `PUT /v1/servers/{name}`.
    pub async fn put_server(
        &self,
        name: &ServerName,
        req: &PutServerRequest,
    ) -> Result<ServerView, ClientError> {
        self.call(Method::PUT, &format!("/v1/servers/{name}"), Some(req))
            .await
    }

    /// `DELETE /v1/servers/{name}`.
    pub async fn remove_server(&self, name: &ServerName) -> Result<ServerRemoved, ClientError> {
        self.bodiless(Method::DELETE, &format!("/v1/servers/{name}"))
            .await
    }

    /// `POST /v1/servers/{name}/forbid`.
    pub async fn forbid_server(&self, name: &ServerName) -> Result<ServerView, ClientError> {
        self.bodiless(Method::POST, &format!("/v1/servers/{name}/forbid"))
            .await
    }

    /// `POST /v1/servers/{name}/allow`.
    pub async fn allow_server(&self, name: &ServerName) -> Result<ServerView, ClientError> {
        self.bodiless(Method::POST, &format!("/v1/servers/{name}/allow"))
            .await
    }

    /// `POST /v1/servers/{name}/cordon` (`true`) or `/uncordon`.
    pub async fn cordon_server(
        &self,
        name: &ServerName,
        cordoned: bool,
    ) -> Result<ServerView, ClientError> {
        let verb = if cordoned { "cordon" } else { "uncordon" };
        self.bodiless(Method::POST, &format!("/v1/servers/{name}/{verb}"))
            .await
    }

    /// `PUT /v1/servers/{name}/labels`.
    pub async fn set_server_labels(
        &self,
        name: &ServerName,
        req: &SetLabelsRequest,
    ) -> Result<ServerView, ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/servers/{name}/labels"),
            Some(req),
        )
        .await
    }

    /// `GET /v1/policy`.
    pub async fn policy(&self) -> Result<Policy, ClientError> {
        self.get("/v1/policy").await
    }

    /// `PUT /v1/policy`.
    pub async fn put_policy(&self, policy: &Policy) -> Result<Policy, ClientError> {
        self.call(Method::PUT, "/v1/policy", Some(policy)).await
    }

    // ------------------------------------------------------------ deployments

    /// `GET /v1/deployments`.
    pub async fn deployments(
        &self,
        filter: &DeploymentFilter,
    ) -> Result<DeploymentList, ClientError> {
        let path = "/v1/deployments";
        let req = self.request(Method::GET, path).query(filter);
        let resp = self.send(path, req).await?;
        Self::decode(path, resp).await
    }

    /// `POST /v1/deployments`, with an `Idempotency-Key` if given.
    pub async fn create_deployment(
        &self,
        req: &CreateDeploymentRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Created, ClientError> {
        let path = "/v1/deployments";
        let mut builder = self.request(Method::POST, path).json(req);
        if let Some(k) = idempotency_key {
            builder = builder.header("Idempotency-Key", k);
        }
        let resp = self.send(path, builder).await?;
        let replayed = resp.status() == StatusCode::OK;
        Ok(Created {
            deployment: Self::decode(path, resp).await?,
            replayed,
        })
    }

    /// `POST /v1/deployments/plan`: what `req` would change, without doing it.
    pub async fn plan_deployment(
        &self,
        req: &CreateDeploymentRequest,
    ) -> Result<crate::api::DeploymentPlan, ClientError> {
        self.call(Method::POST, "/v1/deployments/plan", Some(req))
            .await
    }

    /// `GET /v1/deployments/{id}` (the id as text: the server validates it).
    pub async fn deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.get(&format!("/v1/deployments/{id}")).await
    }

    /// `POST /v1/deployments/{id}/rollback`.
    pub async fn rollback_deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.bodiless(Method::POST, &format!("/v1/deployments/{id}/rollback"))
            .await
    }

    /// `POST /v1/deployments/{id}/cancel`.
    pub async fn cancel_deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.bodiless(Method::POST, &format!("/v1/deployments/{id}/cancel"))
            .await
    }

    /// `POST /v1/deployments/{id}/promote|pause|resume` a canary, or `.../cancel` for
    /// `abort`.
    pub async fn canary_action(
        &self,
        id: &str,
        action: CanaryAction,
    ) -> Result<DeploymentView, ClientError> {
        self.bodiless(
            Method::POST,
            &format!("/v1/deployments/{id}/{}", action.path()),
        )
        .await
    }

    /// `GET /v1/deployments/{id}/events`: the open response, for [`crate::sse::Parser`].
    /// `http` should have no overall timeout (the stream lasts as long as the deployment).
    pub async fn deployment_events(&self, id: &str) -> Result<reqwest::Response, ClientError> {
        let path = format!("/v1/deployments/{id}/events");
        self.send(&path, self.request(Method::GET, &path)).await
    }

    /// `GET /v1/services`.
    pub async fn services(&self) -> Result<Vec<ServiceView>, ClientError> {
        self.get("/v1/services").await
    }

    // ------------------------------------------------------------ audit

    /// `GET /v1/audit` (a page).
    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage, ClientError> {
        let path = "/v1/audit";
        let req = self.request(Method::GET, path).query(filter);
        let resp = self.send(path, req).await?;
        Self::decode(path, resp).await
    }

    /// `GET /v1/audit?format=jsonl`: every record, one JSON object per line, as sent.
    pub async fn audit_export(&self) -> Result<String, ClientError> {
        let path = "/v1/audit?format=jsonl";
        let resp = self.send(path, self.request(Method::GET, path)).await?;
        resp.text().await.map_err(|source| ClientError::Decode {
            path: path.into(),
            source,
        })
    }

    // ------------------------------------------------------------ tokens

    /// `GET /v1/tokens`.
    pub async fn tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.get("/v1/tokens").await
    }

    /// `POST /v1/tokens`.
    pub async fn create_token(
        &self,
        req: &CreateTokenRequest,
    ) -> Result<CreatedToken, ClientError> {
        self.call(Method::POST, "/v1/tokens", Some(req)).await
    }

    /// `DELETE /v1/tokens/{name}`.
    pub async fn revoke_token(&self, name: &TokenName) -> Result<TokenView, ClientError> {
        self.bodiless(Method::DELETE, &format!("/v1/tokens/{name}"))
            .await
    }

    // ------------------------------------------------------------ registries

    /// `GET /v1/registries`.
    pub async fn registries(&self) -> Result<Vec<RegistryView>, ClientError> {
        self.get("/v1/registries").await
    }

    /// `GET /v1/registries/{host}`.
    pub async fn registry(&self, host: &RegistryHost) -> Result<RegistryView, ClientError> {
        self.get(&format!("/v1/registries/{host}")).await
    }

    /// `PUT /v1/registries/{host}`.
    pub async fn put_registry(
        &self,
        host: &RegistryHost,
        req: &PutRegistryRequest,
    ) -> Result<RegistryView, ClientError> {
        self.call(Method::PUT, &format!("/v1/registries/{host}"), Some(req))
            .await
    }

    /// `DELETE /v1/registries/{host}`.
    pub async fn remove_registry(&self, host: &RegistryHost) -> Result<RegistryView, ClientError> {
        self.bodiless(Method::DELETE, &format!("/v1/registries/{host}"))
            .await
    }

    // ------------------------------------------------------------ agents

    /// `POST /v1/agents/register` (an agent certificate naming `reg.server`).
    pub async fn register_agent(&self, reg: &AgentRegistration) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(Method::POST, "/v1/agents/register", Some(reg))
            .await
            .map(drop)
    }

    /// `POST /v1/agents/{server}/heartbeat`.
    pub async fn agent_heartbeat(&self, hb: &AgentHeartbeat) -> Result<(), ClientError> {
        self.call::<serde_json::Value>(
            Method::POST,
            &format!("/v1/agents/{}/heartbeat", hb.server),
            Some(hb),
        )
        .await
        .map(drop)
    }
}
