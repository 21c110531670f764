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

mod operations;
#[cfg(test)]
mod tests;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::*;
use crate::deployment::DeploymentState;
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
        /// True when the body was not a problem and `problem` was made from the status
        /// (the coordinator's own refusals always carry one; a proxy's may not).
        from_status: bool,
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
        self.problem().map(|p| p.code)
    }

    /// The problem, for a problem answer.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The HTTP status, for a problem answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Problem { status, .. } => Some(*status),
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
    /// Accepted at or after this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Accepted before this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
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
        let (problem, from_status) = match resp.json::<Problem>().await {
            Ok(p) => (p, false),
            Err(_) => (
                Problem::new(code_for(status), "").with_status(status.as_u16()),
                true,
            ),
        };
        Err(ClientError::Problem {
            status,
            problem: Box::new(problem),
            from_status,
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

    /// A request without a body (a `GET`, a `DELETE`, an action's `POST`).
    async fn bodiless<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call(method, path, None::<&()>).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.bodiless(Method::GET, path).await
    }
}
