//! The CI-facing HTTP API, `/v1/...`.
//!
//! One module per resource; handlers parse input through `sluice-common`'s validated types,
//! call the node, and map typed errors to problem+json in [`error`] only.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::{Json, Router};
use sluice_common::api::{Health, Ready};
use sluice_common::problem::ErrorCode;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::agents::AgentTracker;
use crate::node::Node;

pub mod agents;
pub mod audit;
pub mod auth;
pub mod canary;
pub mod cluster;
pub mod console;
pub mod deployments;
pub mod error;
pub mod locks;
pub mod openapi;
mod plan;
pub mod ports;
pub mod registries;
pub mod servers;
mod spec;
pub mod tokens;

use error::ApiError;

/// Request bodies on the public API are small; anything bigger is a mistake or an attack.
const API_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler gets.
#[derive(Debug, Clone)]
pub struct App {
    /// The node.
    pub node: Arc<Node>,
    /// Agent heartbeats (meaningful on the leader).
    pub agents: Arc<AgentTracker>,
    /// Hex SHA-256 of the bootstrap admin secret (`admin_token_file`), if configured.
    pub bootstrap_admin: Option<Arc<str>>,
    /// The listener's TLS configuration (its certificate's expiry goes to `/metrics`, and
    /// follows rotations).
    pub tls: Option<sluice_common::tls::ServerTls>,
    /// What this process counts for `/metrics`.
    pub counters: Arc<crate::counters::Counters>,
    /// The cluster key: secrets are sealed with it before they are proposed.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// The sequencer's driver: a plan runs its validation checks, read-only.
    pub driver: Arc<crate::sequencer::Driver>,
}

/// Puts the route guard ([`auth::guard`]) in front of `router`: every route of the
/// listener, the Raft and internal ones included, and the fallbacks; each request runs in
/// its own span ([`traced`]).
pub fn guarded(router: Router, app: App) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(app, auth::guard))
        .layer(axum::middleware::from_fn(traced))
}

/// One `request` span per call (method, path, and an id taken from `X-Request-Id` or made
/// up, echoed in the answer) so every log line a request causes can be told apart; public
/// API calls log their status and latency when they finish. Raft and internal traffic
/// log at debug only. Never the query string, which may hold a lock token.
async fn traced(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let public = path.starts_with("/v1/") && !path.contains("/heartbeat");
    let span = tracing::info_span!("request", %method, %path, request_id = %id);
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if public {
            tracing::info!(status, ms, "served");
        } else {
            tracing::debug!(status, ms, "served");
        }
    });
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The public routes, each registered together with its documentation: a handler's
/// `#[utoipa::path]` attribute gives both its route and its operation in
/// `GET /v1/openapi.json` ([`openapi`]). [`Documented`] takes nothing else, so no route of
/// the public API can be left undocumented.
pub fn documented() -> Documented {
    Documented::default()
        .op(routes!(healthz))
        .op(routes!(readyz))
        .op(routes!(metrics))
        .op(routes!(cluster::status))
        .op(routes!(cluster::add))
        .op(routes!(cluster::remove))
        .op(routes!(locks::list))
        .op(routes!(
            locks::get,
            locks::acquire,
            locks::renew,
            locks::release
        ))
        .op(routes!(ports::list))
        .op(routes!(ports::server))
        .op(routes!(ports::allocate, ports::release))
        .op(routes!(servers::list))
        .op(routes!(servers::get, servers::put, servers::remove))
        .op(routes!(servers::get_policy, servers::put_policy))
        .op(routes!(servers::forbid))
        .op(routes!(servers::allow))
        .op(routes!(servers::cordon))
        .op(routes!(servers::uncordon))
        .op(routes!(servers::labels))
        .op(routes!(deployments::list, deployments::create))
        .op(routes!(plan::plan))
        .op(routes!(deployments::get))
        .op(routes!(deployments::events))
        .op(routes!(deployments::rollback))
        .op(routes!(deployments::cancel))
        .op(routes!(canary::promote))
        .op(routes!(canary::pause))
        .op(routes!(canary::resume))
        .op(routes!(deployments::services))
        .op(routes!(audit::list))
        .op(routes!(openapi::document))
        .op(routes!(tokens::list, tokens::create))
        .op(routes!(tokens::revoke))
        .op(routes!(registries::list))
        .op(routes!(
            registries::get,
            registries::put,
            registries::remove
        ))
        .op(routes!(agents::register))
        .op(routes!(agents::heartbeat))
}

/// A router whose routes are all documented: it grows by `utoipa_axum::routes!` entries
/// only (no plain `.route`).
#[derive(Default)]
pub struct Documented(OpenApiRouter<App>);

impl std::fmt::Debug for Documented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Documented")
    }
}

impl Documented {
    /// Adds the operations of one path.
    pub fn op(self, r: UtoipaMethodRouter<App>) -> Self {
        Self(self.0.routes(r))
    }

    /// The axum router and the operations' document (before [`openapi`] completes it).
    pub fn into_parts(self) -> (Router<App>, utoipa::openapi::OpenApi) {
        self.0.split_for_parts()
    }
}

/// The public router.
pub fn router(app: App) -> Router {
    let (routes, _) = documented().into_parts();
    routes
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .with_state(app)
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "probes",
    summary = "Prometheus metrics.",
    responses((
        status = 200,
        description = "Text exposition format 0.0.4.",
        body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )),
)]
async fn metrics(State(app): State<App>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(crate::metrics::Sources {
            node: &app.node,
            tls: app.tls.as_ref(),
            counters: &app.counters,
        }),
    )
}

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "probes",
    summary = "Liveness: the process answers.",
    responses((status = 200, description = "Alive.", body = Health)),
)]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready when this node is in contact with a working cluster: as the leader, a quorum
/// acknowledged it within two maximal election timeouts; as a follower, its leader's
/// appends (heartbeats included) reached it within that time. A leader cut off from its
/// quorum turns unready within that bound, so a load balancer stops sending it work.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "probes",
    summary = "Readiness: this node is in contact with a working cluster.",
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, response = openapi::Unavailable),
    ),
)]
async fn readyz(State(app): State<App>) -> Result<Json<Ready>, ApiError> {
    let s = app.node.status();
    match app.node.in_contact() {
        Ok(()) => Ok(Json(Ready {
            applied: s.applied,
            leader: s.leader,
            status: "ready".into(),
        })),
        Err(why) => Err(ApiError::new(ErrorCode::Unavailable, why)),
    }
}
