//! The typed client of the control API (what the agent uses). One connection per call, each
//! call bounded by a 5 s timeout.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sluice_common::names::ServiceName;
use sluice_common::proxy::{ProxyStatus, RouteSpec, RouteView, Target, TargetsUpdate};

use super::problem::ProblemBody;
use super::wire::{collect, Full};

/// How long one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket is missing, refused the connection, or the connection broke.
    #[error("proxy unreachable: {0}")]
    Unreachable(String),
    /// The proxy refused the request (its problem+json).
    #[error("proxy refused ({status} {code}): {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The stable code.
        code: String,
        /// What the proxy said.
        detail: String,
    },
    /// An answer this client does not understand.
    #[error("unexpected answer from the proxy: {0}")]
    Protocol(String),
}

/// A client for the proxy at one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for the control socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ControlError> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method, path, body))
            .await
            .map_err(|_| ControlError::Unreachable(format!("no answer within {CALL_TIMEOUT:?}")))?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ControlError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            ControlError::Unreachable(format!("{}: {e}", self.socket.display()))
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Full>(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "sluice-proxy");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(body.map(Full::new).unwrap_or_default())
            .map_err(|e| ControlError::Protocol(e.to_string()))?;
        let resp = send.send_request(req).await.map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let bytes = collect(resp.into_body(), 64 * 1024 * 1024)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok((status, bytes))
    }

    fn decode<T: serde::de::DeserializeOwned>(
        status: StatusCode,
        body: &Bytes,
    ) -> Result<T, ControlError> {
        if status.is_success() {
            return serde_json::from_slice(body).map_err(|e| ControlError::Protocol(e.to_string()));
        }
        Err(Self::refused(status, body))
    }

    fn refused(status: StatusCode, body: &Bytes) -> ControlError {
        match serde_json::from_slice::<ProblemBody>(body) {
            Ok(p) => ControlError::Refused {
                status: status.as_u16(),
                code: p.code,
                detail: p.detail,
            },
            Err(_) => ControlError::Protocol(format!("{status} without a problem body")),
        }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<ProxyStatus, ControlError> {
        let (s, b) = self.call(Method::GET, "/v1/status", None).await?;
        Self::decode(s, &b)
    }

    /// `GET /metrics`: the proxy's Prometheus text.
    pub async fn metrics(&self) -> Result<String, ControlError> {
        let (s, b) = self.call(Method::GET, "/metrics", None).await?;
        if !s.is_success() {
            return Err(Self::refused(s, &b));
        }
        String::from_utf8(b.to_vec()).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    /// `GET /v1/routes`.
    pub async fn routes(&self) -> Result<Vec<RouteView>, ControlError> {
        let (s, b) = self.call(Method::GET, "/v1/routes", None).await?;
        Self::decode(s, &b)
    }

    /// `GET /v1/routes/{service}`; `None` when there is no such route.
    pub async fn route(&self, service: &ServiceName) -> Result<Option<RouteView>, ControlError> {
        let (s, b) = self
            .call(Method::GET, &format!("/v1/routes/{service}"), None)
            .await?;
        if s == StatusCode::NOT_FOUND {
            return match Self::refused(s, &b) {
                ControlError::Refused { code, .. } if code == "unknown_service" => Ok(None),
                e => Err(e),
            };
        }
        Self::decode(s, &b).map(Some)
    }

    /// `PUT /v1/routes/{service}`: creates or replaces the route.
    pub async fn put_route(
        &self,
        service: &ServiceName,
        spec: &RouteSpec,
    ) -> Result<RouteView, ControlError> {
        let body = serde_json::to_vec(spec).map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (s, b) = self
            .call(Method::PUT, &format!("/v1/routes/{service}"), Some(body))
            .await?;
        Self::decode(s, &b)
    }

    /// `PUT /v1/routes/{service}/targets`: the switch.
    pub async fn switch(
        &self,
        service: &ServiceName,
        targets: &[Target],
    ) -> Result<RouteView, ControlError> {
        let body = serde_json::to_vec(&TargetsUpdate {
            targets: targets.to_vec(),
        })
        .map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (s, b) = self
            .call(
                Method::PUT,
                &format!("/v1/routes/{service}/targets"),
                Some(body),
            )
            .await?;
        Self::decode(s, &b)
    }

    /// `DELETE /v1/routes/{service}`; `false` if there was no such route.
    pub async fn remove_route(&self, service: &ServiceName) -> Result<bool, ControlError> {
        let (s, b) = self
            .call(Method::DELETE, &format!("/v1/routes/{service}"), None)
            .await?;
        match s {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => match Self::refused(s, &b) {
                ControlError::Refused { code, .. } if code == "unknown_service" => Ok(false),
                e => Err(e),
            },
            _ => Err(Self::refused(s, &b)),
        }
    }
}
