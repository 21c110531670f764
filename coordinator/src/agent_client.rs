//! The coordinator's typed client for the agent API (`/agent/v1`).
//!
//! Every call has a deadline; an agent that does not answer is `Unreachable`, an agent that
//! refuses says why in a problem+json body, which is kept whole (`Refused`) so callers can
//! branch on its stable `code` (e.g. `stale_fencing_token`).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_common::agent_api::{
    AbortRequest, AgentHealth, DeployRequest, ImageCheck, OperationTraffic, OperationView,
    PortProbe, RemoveServiceRequest, RemovedService, RollbackRequest, ServiceStatus, WeightRequest,
};
use sluice_common::image::ImageRef;
use sluice_common::names::ServiceName;
use sluice_common::problem::{ErrorCode, Problem};
use uuid::Uuid;

use crate::http::Transport;

/// Why an agent call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No answer (connection refused, timeout).
    #[error("agent at {addr} unreachable: {reason}")]
    Unreachable {
        /// The agent's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The agent has seen a larger fencing token for the lock: this coordinator was
    /// superseded (a new leader re-fenced) and must stop acting.
    #[error("agent refused a stale fencing token: {detail}")]
    Stale {
        /// The agent's words (key, offered and highest token).
        detail: String,
    },
    /// Another operation is running for the service there; retry once it has ended.
    #[error("agent busy: {detail}")]
    Busy {
        /// The agent's words (the running operation).
        detail: String,
    },
    /// The agent refused for another reason.
    #[error("agent refused ({code}): {detail}")]
    Refused {
        /// The problem's code.
        code: ErrorCode,
        /// The agent's words.
        detail: String,
    },
    /// The agent answered something unparseable.
    #[error("agent at {addr} answered nonsense: {reason}")]
    Protocol {
        /// The agent's address.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl AgentError {
    /// Classifies an agent's problem (`not_found` is an answer, not an error: callers get
    /// `None` for it).
    fn from_problem(p: Problem) -> Self {
        match p.code {
            ErrorCode::StaleFencingToken => Self::Stale { detail: p.detail },
            ErrorCode::Conflict if p.extensions.contains_key("running_operation") => {
                Self::Busy { detail: p.detail }
            }
            code => Self::Refused {
                code,
                detail: p.detail,
            },
        }
    }

    /// The problem code, when the agent refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Stale { .. } => Some(ErrorCode::StaleFencingToken),
            Self::Busy { .. } => Some(ErrorCode::Conflict),
            Self::Refused { code, .. } => Some(*code),
            Self::Unreachable { .. } | Self::Protocol { .. } => None,
        }
    }
}

/// A client for every agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    transport: Transport,
    timeout: Duration,
}

impl AgentClient {
    /// A client whose calls time out after `timeout` (long polls get their wait on top).
    pub fn new(transport: Transport, timeout: Duration) -> Self {
        Self { transport, timeout }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Option<T>, AgentError> {
        let mut req = self
            .transport
            .agent_client()
            .request(method, self.transport.url(addr, path))
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| AgentError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        let protocol = |reason: String| AgentError::Protocol {
            addr: addr.to_string(),
            reason,
        };
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| protocol(e.to_string()));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) if p.code == ErrorCode::NotFound => Ok(None),
            Ok(p) => Err(AgentError::from_problem(p)),
            Err(_) => Err(protocol(format!("status {status} without a problem body"))),
        }
    }

    fn found<T>(addr: &str, what: &str, v: Option<T>) -> Result<T, AgentError> {
        v.ok_or_else(|| AgentError::Protocol {
            addr: addr.to_string(),
            reason: format!("{what}: not found"),
        })
    }

    /// `GET /agent/v1/health`.
    pub async fn health(&self, addr: &str) -> Result<AgentHealth, AgentError> {
        let r = self
            .call::<(), _>(
                reqwest::Method::GET,
                addr,
                "/agent/v1/health",
                None,
                self.timeout,
            )
            .await?;
        Self::found(addr, "health", r)
    }

    /// `GET /agent/v1/images/{image}`.
    pub async fn image(&self, addr: &str, image: &ImageRef) -> Result<ImageCheck, AgentError> {
        let path = format!("/agent/v1/images/{image}");
        let r = self
            .call::<(), _>(reqwest::Method::GET, addr, &path, None, self.timeout)
            .await?;
        Self::found(addr, "image", r)
    }

    /// `GET /agent/v1/ports/{port}`.
    pub async fn port(&self, addr: &str, port: u16) -> Result<PortProbe, AgentError> {
        let path = format!("/agent/v1/ports/{port}");
        let r = self
            .call::<(), _>(reqwest::Method::GET, addr, &path, None, self.timeout)
            .await?;
        Self::found(addr, "port", r)
    }

    /// `GET /agent/v1/services/{service}`; `None` when the agent has no container of it.
    pub async fn service(
        &self,
        addr: &str,
        service: &ServiceName,
    ) -> Result<Option<ServiceStatus>, AgentError> {
        let path = format!("/agent/v1/services/{service}");
        self.call::<(), _>(reqwest::Method::GET, addr, &path, None, self.timeout)
            .await
    }

    /// `PUT /agent/v1/operations/{id}`: start (or find) a deploy.
    pub async fn deploy(
        &self,
        addr: &str,
        id: Uuid,
        req: &DeployRequest,
    ) -> Result<OperationView, AgentError> {
        let path = format!("/agent/v1/operations/{id}");
        let r = self
            .call(reqwest::Method::PUT, addr, &path, Some(req), self.timeout)
            .await?;
        Self::found(addr, "deploy", r)
    }

    /// `PUT /agent/v1/operations/{id}/rollback`: start (or find) a rollback.
    pub async fn rollback(
        &self,
        addr: &str,
        id: Uuid,
        req: &RollbackRequest,
    ) -> Result<OperationView, AgentError> {
        let path = format!("/agent/v1/operations/{id}/rollback");
        let r = self
            .call(reqwest::Method::PUT, addr, &path, Some(req), self.timeout)
            .await?;
        Self::found(addr, "rollback", r)
    }

    /// `PUT /agent/v1/operations/{id}/abort`: stop a running deploy going forward and
    /// restore the previous version; `None` when the agent never saw it.
    pub async fn abort(
        &self,
        addr: &str,
        id: Uuid,
        req: &AbortRequest,
    ) -> Result<Option<OperationView>, AgentError> {
        let path = format!("/agent/v1/operations/{id}/abort");
        self.call(reqwest::Method::PUT, addr, &path, Some(req), self.timeout)
            .await
    }

    /// An operation an agent answered about, or the refusal a command on an operation it
    /// does not know amounts to.
    pub fn known(op: Option<OperationView>) -> Result<OperationView, AgentError> {
        op.ok_or_else(|| AgentError::Refused {
            code: ErrorCode::NotFound,
            detail: "the agent does not know the operation".into(),
        })
    }

    /// `PUT /agent/v1/operations/{id}/weight`: a canary's next weight (`None`: the agent
    /// does not know the operation).
    pub async fn weight(
        &self,
        addr: &str,
        id: Uuid,
        req: &WeightRequest,
    ) -> Result<Option<OperationView>, AgentError> {
        let path = format!("/agent/v1/operations/{id}/weight");
        self.call(reqwest::Method::PUT, addr, &path, Some(req), self.timeout)
            .await
    }

    /// `GET /agent/v1/operations/{id}/traffic`: what the host's proxy counted for the
    /// operation's new and previous containers.
    pub async fn traffic(&self, addr: &str, id: Uuid) -> Result<OperationTraffic, AgentError> {
        let path = format!("/agent/v1/operations/{id}/traffic");
        let v = self
            .call::<(), _>(reqwest::Method::GET, addr, &path, None, self.timeout)
            .await?;
        Self::found(addr, "operation", v)
    }

    /// `DELETE /agent/v1/services/{service}` (fenced): remove every container of it.
    pub async fn remove_service(
        &self,
        addr: &str,
        service: &ServiceName,
        req: &RemoveServiceRequest,
    ) -> Result<RemovedService, AgentError> {
        let path = format!("/agent/v1/services/{service}");
        let r = self
            .call(
                reqwest::Method::DELETE,
                addr,
                &path,
                Some(req),
                self.timeout,
            )
            .await?;
        Ok(r.unwrap_or(RemovedService {
            service: service.clone(),
            removed: Vec::new(),
        }))
    }

    /// `GET /agent/v1/operations/{id}?wait=…`; `None` when the agent never saw it.
    pub async fn operation(
        &self,
        addr: &str,
        id: Uuid,
        wait: Duration,
    ) -> Result<Option<OperationView>, AgentError> {
        let path = format!("/agent/v1/operations/{id}?wait={}ms", wait.as_millis());
        self.call::<(), _>(reqwest::Method::GET, addr, &path, None, self.timeout + wait)
            .await
    }
}

#[cfg(test)]
mod classification {
    use super::*;

    #[test]
    fn agent_problems_become_typed_errors() {
        let stale = Problem::new(ErrorCode::StaleFencingToken, "offered 3, highest 5");
        assert!(matches!(
            AgentError::from_problem(stale),
            AgentError::Stale { .. }
        ));
        let busy = Problem::new(ErrorCode::Conflict, "operation x is still running")
            .with_extension("running_operation", "x");
        assert!(matches!(
            AgentError::from_problem(busy),
            AgentError::Busy { .. }
        ));
        let other = Problem::new(ErrorCode::Conflict, "something else");
        let e = AgentError::from_problem(other);
        assert_eq!(e.code(), Some(ErrorCode::Conflict));
        assert!(matches!(e, AgentError::Refused { .. }));
        let forbidden = Problem::new(
            ErrorCode::Forbidden,
            "the container policy forbids: privileged",
        );
        assert_eq!(
            AgentError::from_problem(forbidden).to_string(),
            "agent refused (forbidden): the container policy forbids: privileged"
        );
    }
}
