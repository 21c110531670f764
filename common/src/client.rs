//! A typed client of the coordinator's API, version 1 (feature `client`).
//!
//! One method per operation of `GET /v1/openapi.json`, each sending and returning the wire
//! types of [`crate::api`]. A failure is a [`ClientError`]: a 4xx/5xx answer carries its
//! [`Problem`] (the server's, or one made from the status when the body was not a problem),
//! while transport and decoding failures are kept apart, so a caller can tell "the cluster
//! said no" from "the cluster did not answer".
//!
//! The caller builds the `reqwest::Client` (trust roots, client certificate, timeouts): this
//! module holds no TLS policy of its own and needs no runtime beyond the caller's. The
//! deployment event stream is handed back as the raw response, for [`crate::sse`] to parse.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::agent_api::{AgentHeartbeat, AgentRegistration};
use crate::api::*;
use crate::audit::AuditPage;
use crate::deployment::DeploymentState;
use crate::locks::FencingToken;
use crate::names::{LockKey, ServerName, ServiceName};
use crate::problem::{ErrorCode, Problem};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator answered with an error status (its problem+json body).
    #[error("{status}: {}", problem.detail)]
    Problem {
        /// The HTTP status.
        status: StatusCode,
        /// The problem; made from the status when the body was not one.
        problem: Box<Problem>,
    },
    /// No answer: connection, TLS or timeout.
    #[error("{url}: {source}")]
    Transport {
        /// The request's URL.
        url: String,
        /// What reqwest said.
        source: reqwest::Error,
    },
    /// A success whose body could not be read as the type the operation returns.
    #[error("reading the answer to {path}: {source}")]
    Decode {
        /// The request's path.
        path: String,
        /// What reqwest said.
        source: reqwest::Error,
    },
}

impl ClientError {
    /// The problem's code, for a problem answer.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Problem { problem, .. } => Some(problem.code),
            _ => None,
        }
    }
}

/// The code a body-less (or non-problem) error answer stands for.
fn code_for(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::ValidationFailed,
        503 => ErrorCode::Unavailable,
        504 => ErrorCode::Timeout,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    }
}

/// `GET /v1/deployments` filters (as text: the server validates them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeploymentFilter {
    /// Only this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<DeploymentState>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The `next` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `GET /v1/audit` filters (as text: the server validates them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFilter {
    /// Only records about this service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only records by this actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only this action or family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// At or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Records after this sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// What `POST /v1/deployments` answered.
#[derive(Debug, Clone)]
pub struct Created {
    /// The deployment.
    pub deployment: DeploymentView,
    /// True when an earlier request with the same `Idempotency-Key` made it (200, not 202).
    pub replayed: bool,
}

/// A coordinator, as the API's client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    timeout: Option<Duration>,
}

impl Client {
    /// A client of the coordinator at `base` (`https://host:port`), sending requests with
    /// `http` (whose TLS settings and timeouts the caller chose).
    pub fn new(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            token: None,
            timeout: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` (without it, only the client certificate of
    /// `http`, if any, authenticates).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().trim().to_string());
        self
    }

    /// Every request of this client times out after `timeout` (instead of `http`'s own).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The same coordinator and credentials over another `reqwest::Client` (other trust
    /// roots or another client certificate, say).
    pub fn with_http(&self, http: reqwest::Client) -> Self {
        Self {
            http,
            ..self.clone()
        }
    }

    /// `https://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req`; an error status becomes [`ClientError::Problem`].
    async fn send(
        &self,
        path: &str,
        req: RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: format!("{}{path}", self.base),
            source,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let problem = match resp.json::<Problem>().await {
            Ok(p) => p,
            Err(_) => Problem::new(code_for(status), "").with_status(status.as_u16()),
        };
        Err(ClientError::Problem {
            status,
            problem: Box::new(problem),
        })
    }

    async fn decode<T: DeserializeOwned>(
        path: &str,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        resp.json().await.map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(path, req).await?;
        Self::decode(path, resp).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

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
        self.call(
            Method::DELETE,
            &format!("/v1/cluster/members/{id}"),
            None::<&()>,
        )
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
        self.call(
            Method::DELETE,
            &format!("/v1/locks/{key}?token={}", token.0),
            None::<&()>,
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
        self.call(
            Method::DELETE,
            &format!("/v1/ports/{server}/{service}"),
            None::<&()>,
        )
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
        self.call(Method::DELETE, &format!("/v1/servers/{name}"), None::<&()>)
            .await
    }

    /// `POST /v1/servers/{name}/forbid`.
    pub async fn forbid_server(&self, name: &ServerName) -> Result<ServerView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/servers/{name}/forbid"),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/servers/{name}/allow`.
    pub async fn allow_server(&self, name: &ServerName) -> Result<ServerView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/servers/{name}/allow"),
            None::<&()>,
        )
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

    /// `GET /v1/deployments/{id}` (the id as text: the server validates it).
    pub async fn deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.get(&format!("/v1/deployments/{id}")).await
    }

    /// `POST /v1/deployments/{id}/rollback`.
    pub async fn rollback_deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/deployments/{id}/rollback"),
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/deployments/{id}/cancel`.
    pub async fn cancel_deployment(&self, id: &str) -> Result<DeploymentView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/deployments/{id}/cancel"),
            None::<&()>,
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
        self.call(Method::DELETE, &format!("/v1/tokens/{name}"), None::<&()>)
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
