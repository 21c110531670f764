//! The agent API (`/agent/v1/...`): JSON in and out, errors as problem+json with stable codes.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/agent/v1/health` | `AgentHealth` |
//! | GET | `/agent/v1/services` | `ServiceList` |
//! | GET | `/agent/v1/services/{service}` | `ServiceStatus` |
//! | DELETE | `/agent/v1/services/{service}` | fenced (`RemoveServiceRequest`): remove its containers (an operation; answered once it ends) |
//! | PUT | `/agent/v1/operations/{id}` | `DeployRequest` → 202 `OperationView` |
//! | PUT | `/agent/v1/operations/{id}/rollback` | `RollbackRequest` → 202 `OperationView` |
//! | PUT | `/agent/v1/operations/{id}/abort` | `AbortRequest` → `OperationView` |
//! | PUT | `/agent/v1/operations/{id}/weight` | `WeightRequest` → `OperationView` (a canary's next weight) |
//! | GET | `/agent/v1/operations/{id}/traffic` | `OperationTraffic` (the proxy's counters of its containers) |
//! | GET | `/agent/v1/operations/{id}?wait=30s` | long-poll until the state changes |
//! | GET | `/agent/v1/images/{image}` | `ImageCheck` |
//! | GET | `/agent/v1/ports/{port}` | `PortProbe` |
//! | GET | `/agent/v1/fence/{key}` | `FenceView` |
//!
//! The wire types are `sluice_common::agent_api`'s. Errors are typed below the edge; this
//! module alone turns them into statuses and problems.
//!
//! # Layout
//! - [`error`]: [`ApiError`], and the mapping of every lower error to a problem.
//! - [`body`]: [`JsonBody`], the strict JSON extractor.
//! - `operations`: deploys, rollbacks, aborts, long-polls and service removal.
//! - `canary`: a canary's weight and the proxy's counters of its containers.
//! - `host`: what the agent reports about its host (health, services, images, ports, fence).

pub mod body;
mod canary;
pub mod error;
mod host;
mod operations;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use sluice_common::names::ServiceName;
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::tls::{PeerIdentity, Role};
use uuid::Uuid;

pub use self::body::JsonBody;
use self::error::invalid;
pub use self::error::ApiError;
use self::host::{fence, health, image, list_services, port, service_status};
use self::operations::{abort, deploy, operation, remove_service, rollback};
use crate::Agent;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// The longest long-poll.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

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
        .route("/agent/v1/operations/{id}/weight", put(canary::weight))
        .route("/agent/v1/operations/{id}/traffic", get(canary::traffic))
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

pub(crate) fn service_name(s: &str) -> Result<ServiceName, ApiError> {
    ServiceName::parse(s).map_err(|e| invalid("service", e.reason))
}

pub(crate) fn op_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|e| invalid("id", format!("{s:?} is not a UUID: {e}")))
}

/// Refuses new work while Docker is unreachable (rather than admitting an operation that
/// can only fail).
pub(crate) async fn ensure_docker(a: &Agent) -> Result<(), ApiError> {
    if a.engine.reachability().reachable {
        return Ok(());
    }
    a.engine.refresh().await.map_err(ApiError::from)
}
