//! The agent API (`/agent/v1/...`): JSON in and out, errors as problem+json with stable codes.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/agent/v1/health` | [`AgentHealth`] |
//! | GET | `/agent/v1/services` | [`ServiceList`] |
//! | GET | `/agent/v1/services/{service}` | [`ServiceStatus`] |
//! | DELETE | `/agent/v1/services/{service}` | fenced ([`RemoveServiceRequest`]): remove its containers |
//! | PUT | `/agent/v1/operations/{id}` | [`DeployRequest`] → 202 [`OperationView`] |
//! | PUT | `/agent/v1/operations/{id}/rollback` | [`RollbackRequest`] → 202 [`OperationView`] |
//! | GET | `/agent/v1/operations/{id}?wait=30s` | long-poll until the state changes |
//! | GET | `/agent/v1/images/{image}` | [`ImageCheck`] |
//! | GET | `/agent/v1/ports/{port}` | [`PortProbe`] |
//! | GET | `/agent/v1/fence/{key}` | [`FenceView`] |
//!
//! Errors are typed below the edge; this module alone turns them into statuses and problems.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use sluice_common::agent_api::{
    AbortRequest, AgentHealth, ContainerView, DeployRequest, FenceView, ImageCheck, OperationView,
    PortProbe, RemoveServiceRequest, RemovedService, RollbackRequest, ServiceList, ServiceStatus,
};
use sluice_common::image::ImageRef;
use sluice_common::names::{LockKey, ServiceName};
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::time::DurationSpec;
use sluice_common::tls::{PeerIdentity, Role};
use uuid::Uuid;

use crate::docker::{Container, DockerError};
use crate::ops::{AdmitError, OpRequest};
use crate::Agent;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// The longest long-poll.
const MAX_WAIT: Duration = Duration::from_secs(60);

type Shared = State<Arc<Agent>>;

/// The router.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/agent/v1/health", get(health))
        .route("/agent/v1/services", get(list_services))
        .route(
            "/agent/v1/services/{service}",
            get(service_status).delete(remove_service),
        )
        .route("/agent/v1/operations/{id}", put(deploy).get(operation))
        .route("/agent/v1/operations/{id}/rollback", put(rollback))
        .route("/agent/v1/operations/{id}/abort", put(abort))
        .route("/agent/v1/images/{*image}", get(image))
        .route("/agent/v1/ports/{port}", get(port))
        .route("/agent/v1/fence/{*key}", get(fence))
        .fallback(|| async {
            ApiError::from(Problem::new(ErrorCode::NotFound, "no such endpoint"))
        })
        .method_not_allowed_fallback(|| async {
            ApiError::from(Problem::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            ))
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(only_coordinators))
        .with_state(agent.clone())
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .route("/agent/v1/openapi.json", get(crate::openapi::document))
                .layer(axum::middleware::from_fn(coordinators_or_operators))
                .with_state(agent),
        )
}

async fn metrics(State(a): Shared) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&a).await,
    )
        .into_response()
}

/// `/metrics` (and the API's description) may be read with an operator's (client-role)
/// certificate too.
async fn coordinators_or_operators(req: Request, next: axum::middleware::Next) -> Response {
    match req.extensions().get::<PeerIdentity>() {
        Some(p) if matches!(p.role, Role::Coordinator | Role::Client) => next.run(req).await,
        _ => ApiError::from(Problem::new(
            ErrorCode::Forbidden,
            "metrics need a coordinator or client certificate",
        ))
        .into_response(),
    }
}

/// The agent obeys coordinators only: the handshake already demanded a certificate from
/// the project CA; this refuses every role but `coordinator` (an agent's or an operator's
/// certificate gets 403).
async fn only_coordinators(req: Request, next: axum::middleware::Next) -> Response {
    match req.extensions().get::<PeerIdentity>() {
        Some(p) if p.role == Role::Coordinator => next.run(req).await,
        Some(p) => ApiError::from(Problem::new(
            ErrorCode::Forbidden,
            format!("only coordinators may call the agent API, not {p}"),
        ))
        .into_response(),
        None => ApiError::from(Problem::new(
            ErrorCode::Unauthenticated,
            "a coordinator certificate is required",
        ))
        .into_response(),
    }
}

/// A problem, as a response.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(Box::new(p))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        sluice_common::http_problem::response(&self.0).into_response()
    }
}

impl From<DockerError> for ApiError {
    fn from(e: DockerError) -> Self {
        let p = match &e {
            DockerError::Unavailable(_) => {
                Problem::new(ErrorCode::DockerUnavailable, e.to_string())
            }
            DockerError::NotFound(_) => Problem::new(ErrorCode::NotFound, e.to_string()),
            DockerError::Refused(_) => {
                Problem::new(ErrorCode::DockerUnavailable, e.to_string()).with_status(502)
            }
        };
        Self::from(p)
    }
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> Self {
        let p = match &e {
            AdmitError::Stale(s) => Problem::new(ErrorCode::StaleFencingToken, e.to_string())
                .with_extension("key", &s.key)
                .with_extension("offered", s.offered)
                .with_extension("highest", s.highest),
            AdmitError::Reused(_) => Problem::new(ErrorCode::IdempotencyKeyReused, e.to_string()),
            AdmitError::Busy { running, .. } => Problem::new(ErrorCode::Conflict, e.to_string())
                .with_extension("running_operation", running),
            AdmitError::Store(_) => {
                tracing::error!(error = %e, "storage failure");
                Problem::new(
                    ErrorCode::Internal,
                    "the agent could not persist the request",
                )
            }
        };
        Self::from(p)
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::from(
        Problem::new(ErrorCode::InvalidRequest, format!("{field}: {message}"))
            .with_field(field, message),
    )
}

/// A JSON body: `application/json` (415 otherwise), at most [`BODY_LIMIT`] (413), parsed
/// strictly (400 naming the offending field).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(mime == "application/json" || mime.ends_with("+json")) {
            return Err(ApiError::from(Problem::new(
                ErrorCode::UnsupportedMediaType,
                format!("content-type must be application/json, not {ct:?}"),
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from(Problem::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body exceeds {BODY_LIMIT} bytes"),
                ))
            } else {
                invalid("body", r.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = e.path().to_string();
        let msg = e.into_inner().to_string();
        // serde names a missing field in the message, with the path of its parent.
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or("");
            path = match path.as_str() {
                "." | "?" => name.to_string(),
                parent => format!("{parent}.{name}"),
            };
        }
        if path == "." || path == "?" {
            path = "body".into();
        }
        // Drop serde's "at line 1 column 9": the field says where.
        let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        // serde quotes offending values; environment values may be secrets.
        if path.starts_with("env.") && !msg.starts_with("invalid environment variable name") {
            msg = "must be a string (the value is not shown: environment values may be secret)"
                .into();
        }
        invalid(&path, msg)
    })?;
    de.end().map_err(|e| invalid("body", e.to_string()))?;
    Ok(v)
}

fn service_name(s: &str) -> Result<ServiceName, ApiError> {
    ServiceName::parse(s).map_err(|e| invalid("service", e.reason))
}

fn op_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|e| invalid("id", format!("{s:?} is not a UUID: {e}")))
}

async fn health(State(a): Shared) -> Json<AgentHealth> {
    let r = a.docker.reachability();
    Json(AgentHealth {
        server: a.config.name.to_string(),
        docker_reachable: r.reachable,
        docker_version: r.version,
        docker_error: r.error,
    })
}

fn views(containers: &[Container]) -> Vec<ContainerView> {
    let current = containers.iter().find(|c| c.running).map(|c| c.id.as_str());
    let previous = crate::recreate::pick_previous(containers, current)
        .filter(|c| !c.running)
        .map(|c| c.id.as_str());
    containers
        .iter()
        .map(|c| ContainerView {
            id: c.id.clone(),
            image: c.image.clone(),
            deployment: c.deployment,
            state: c.status.clone(),
            current: c.running,
            previous: Some(c.id.as_str()) == previous,
            host_port: c.host_port,
            exit_code: c.exit_code,
        })
        .collect()
}

async fn list_services(State(a): Shared) -> Result<Json<ServiceList>, ApiError> {
    let all = a.docker.all_containers().await?;
    let mut services: Vec<ServiceStatus> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let name = all[i].0.clone();
        let group: Vec<Container> = all[i..]
            .iter()
            .take_while(|(s, _)| *s == name)
            .map(|(_, c)| c.clone())
            .collect();
        i += group.len();
        services.push(ServiceStatus {
            service: name,
            containers: views(&group),
        });
    }
    Ok(Json(ServiceList { services }))
}

async fn service_status(
    State(a): Shared,
    Path(service): Path<String>,
) -> Result<Json<ServiceStatus>, ApiError> {
    let service = service_name(&service)?;
    let containers = a.docker.service_containers(&service).await?;
    if containers.is_empty() {
        return Err(ApiError::from(Problem::new(
            ErrorCode::NotFound,
            format!("service {service} has no containers on this server"),
        )));
    }
    Ok(Json(ServiceStatus {
        service,
        containers: views(&containers),
    }))
}

async fn remove_service(
    State(a): Shared,
    Path(service): Path<String>,
    JsonBody(req): JsonBody<RemoveServiceRequest>,
) -> Result<Json<RemovedService>, ApiError> {
    let service = service_name(&service)?;
    ensure_docker(&a).await?;
    a.ops.admit_plain(&req.fence, &service)?;
    let mut removed = Vec::new();
    for c in a.docker.service_containers(&service).await? {
        a.docker.remove(&c.id).await?;
        removed.push(c.id);
    }
    tracing::info!(%service, removed = removed.len(), "service removed");
    Ok(Json(RemovedService { service, removed }))
}

/// Refuses new work while Docker is unreachable (rather than admitting an operation that
/// can only fail).
async fn ensure_docker(a: &Agent) -> Result<(), ApiError> {
    if a.docker.reachability().reachable {
        return Ok(());
    }
    a.docker.refresh().await.map_err(ApiError::from)
}

fn accepted(view: OperationView) -> Response {
    let status = if view.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(view)).into_response()
}

async fn deploy(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<DeployRequest>,
) -> Result<Response, ApiError> {
    let id = op_id(&id)?;
    if !a.config.port_range.contains(req.host_port.get()) {
        return Err(invalid(
            "host_port",
            format!(
                "{} is outside this server's port range {}",
                req.host_port, a.config.port_range
            ),
        ));
    }
    let bad = crate::policy::malformed(&req);
    if !bad.is_empty() {
        let mut p = Problem::new(ErrorCode::InvalidRequest, "the request has invalid fields");
        for (f, m) in bad {
            p = p.with_field(f, m);
        }
        return Err(ApiError::from(p));
    }
    let denied = crate::policy::violations(&a.config.policy, &req);
    if !denied.is_empty() {
        let rules: Vec<&str> = denied.iter().map(|(f, _)| f.as_str()).collect();
        let mut p = Problem::new(
            ErrorCode::Forbidden,
            format!("the container policy forbids: {}", rules.join(", ")),
        );
        for (f, m) in denied {
            p = p.with_field(f, m);
        }
        return Err(ApiError::from(p));
    }
    ensure_docker(&a).await?;
    let (view, cell) = a.ops.admit(id, OpRequest::Deploy(Box::new(req)))?;
    if let Some(cell) = cell {
        tracing::info!(op = %id, service = %view.service, image = ?view.image.as_ref().map(|i| i.to_string()), "deploy accepted");
        crate::recreate::spawn(a.clone(), cell);
    }
    Ok(accepted(view))
}

async fn rollback(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> Result<Response, ApiError> {
    let id = op_id(&id)?;
    ensure_docker(&a).await?;
    let (view, cell) = a.ops.admit(id, OpRequest::Rollback(req))?;
    if let Some(cell) = cell {
        tracing::info!(op = %id, service = %view.service, "rollback accepted");
        crate::recreate::spawn(a.clone(), cell);
    }
    Ok(accepted(view))
}

async fn abort(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AbortRequest>,
) -> Result<Json<OperationView>, ApiError> {
    let id = op_id(&id)?;
    match a.ops.abort(id, &req.fence, &req.reason)? {
        Some(view) => {
            tracing::warn!(op = %id, reason = %req.reason, state = ?view.state, "abort asked by the coordinator");
            Ok(Json(view))
        }
        None => Err(ApiError::from(Problem::new(
            ErrorCode::NotFound,
            format!("no operation {id}"),
        ))),
    }
}

fn wait_param(query: Option<String>) -> Result<Option<Duration>, ApiError> {
    let mut wait = None;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "wait" => {
                let d = DurationSpec::parse(v).map_err(|e| invalid("wait", e.reason))?;
                wait = Some(d.get().min(MAX_WAIT));
            }
            other => return Err(invalid(other, "unknown query parameter")),
        }
    }
    Ok(wait)
}

async fn operation(
    State(a): Shared,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<OperationView>, ApiError> {
    let id = op_id(&id)?;
    let wait = wait_param(query)?;
    if let (Some(wait), Some(cell)) = (wait, a.ops.live(id)) {
        let from = cell.view().state;
        tokio::select! {
            _ = cell.wait_state_change(from, wait) => {}
            // Shutdown ends long-polls at once instead of holding the drain.
            _ = a.cancel.cancelled() => {}
        }
        return Ok(Json(cell.view()));
    }
    match a.ops.get(id) {
        Ok(Some(v)) => Ok(Json(v)),
        Ok(None) => Err(ApiError::from(Problem::new(
            ErrorCode::NotFound,
            format!("no operation {id}"),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "reading an operation");
            Err(ApiError::from(Problem::new(
                ErrorCode::Internal,
                "the operation record is unreadable",
            )))
        }
    }
}

async fn image(State(a): Shared, Path(image): Path<String>) -> Result<Json<ImageCheck>, ApiError> {
    let image = ImageRef::parse(&image).map_err(|e| invalid("image", e.reason))?;
    let id = a.docker.image_id(&image.to_string()).await?;
    Ok(Json(ImageCheck {
        image,
        present: id.is_some(),
        id,
    }))
}

async fn port(State(a): Shared, Path(port): Path<String>) -> Result<Json<PortProbe>, ApiError> {
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("port", format!("{port:?} is not a port number (1-65535)")))?;
    let ip = a.config.host_ip;
    let bound = tokio::task::spawn_blocking(move || crate::ports::is_bound(ip, port))
        .await
        .unwrap_or(true);
    let service = if bound {
        a.docker.all_containers().await.ok().and_then(|all| {
            all.into_iter()
                .find(|(_, c)| c.running && c.host_port == Some(port))
                .map(|(s, _)| s)
        })
    } else {
        None
    };
    Ok(Json(PortProbe {
        port,
        bound,
        service,
    }))
}

async fn fence(State(a): Shared, Path(key): Path<String>) -> Result<Json<FenceView>, ApiError> {
    let key = LockKey::parse(&key).map_err(|e| invalid("key", e.reason))?;
    Ok(Json(FenceView {
        highest: a.ops.fence().highest(&key),
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<DeployRequest>(
            br#"{"fence":{"key":"service/a","token":1},"service":"A"}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "service");
        assert_eq!(e.0.code, ErrorCode::InvalidRequest);
        let e = parse_json::<RemoveServiceRequest>(
            br#"{"fence":{"key":"service/a","token":1},"force":true}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "force");
        let e = parse_json::<RemoveServiceRequest>(br#"{"fence":{"key":"service/a","token":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.0.errors[0].field, "fence.token");
        let e = parse_json::<DeployRequest>(
            br#"{"fence":{"key":"service/a","token":1},"service":"a","image":"a:1","container_port":1,"host_port":2,"health":{"kind":"none"},"env":{"TOKEN":918273645}}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "env.TOKEN");
        assert!(!e.0.to_string().contains("918273645"), "{}", e.0);
        let e =
            parse_json::<RemoveServiceRequest>(br#"{"fence":{"key":"service/a"}}"#).unwrap_err();
        assert_eq!(e.0.errors[0].field, "fence.token");
        let e = parse_json::<RemoveServiceRequest>(b"{").unwrap_err();
        assert_eq!(e.0.errors[0].field, "body");
    }

    #[test]
    fn wait_is_a_duration() {
        assert_eq!(wait_param(None).unwrap(), None);
        assert_eq!(
            wait_param(Some("wait=2s".into())).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(wait_param(Some("wait=1h".into())).unwrap(), Some(MAX_WAIT));
        assert_eq!(
            wait_param(Some("wait=30".into())).unwrap_err().0.errors[0].field,
            "wait"
        );
        assert_eq!(
            wait_param(Some("w=1s".into())).unwrap_err().0.errors[0].field,
            "w"
        );
    }
}
