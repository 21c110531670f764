//! The CI-facing HTTP API, `/v1/...`.
//!
//! One module per resource; handlers parse input through `sluice-common`'s validated types,
//! call the node, and map typed errors to problem+json in [`error`] only.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sluice_common::problem::ErrorCode;

use crate::agents::AgentTracker;
use crate::node::Node;

pub mod agents;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod deployments;
pub mod error;
pub mod locks;
pub mod openapi;
pub mod ports;
pub mod servers;
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

/// The public router.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/members", post(cluster::add))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(cluster::remove),
        )
        .route("/v1/locks", get(locks::list))
        .route(
            "/v1/locks/{*key}",
            get(locks::get)
                .post(locks::acquire)
                .patch(locks::renew)
                .delete(locks::release),
        )
        .route("/v1/ports", get(ports::list))
        .route("/v1/ports/{server}", get(ports::server))
        .route(
            "/v1/ports/{server}/{service}",
            post(ports::allocate).delete(ports::release),
        )
        .route("/v1/servers", get(servers::list))
        .route(
            "/v1/servers/{name}",
            get(servers::get).put(servers::put).delete(servers::remove),
        )
        .route(
            "/v1/policy",
            get(servers::get_policy).put(servers::put_policy),
        )
        .route("/v1/servers/{name}/forbid", post(servers::forbid))
        .route("/v1/servers/{name}/allow", post(servers::allow))
        .route(
            "/v1/servers/{name}/labels",
            axum::routing::put(servers::labels),
        )
        .route(
            "/v1/deployments",
            get(deployments::list).post(deployments::create),
        )
        .route("/v1/deployments/{id}", get(deployments::get))
        .route("/v1/deployments/{id}/events", get(deployments::events))
        .route("/v1/deployments/{id}/rollback", post(deployments::rollback))
        .route("/v1/deployments/{id}/cancel", post(deployments::cancel))
        .route("/v1/services", get(deployments::services))
        .route("/v1/audit", get(audit::list))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{name}", axum::routing::delete(tokens::revoke))
        .route("/v1/agents/register", post(agents::register))
        .route("/v1/agents/{server}/heartbeat", post(agents::heartbeat))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .with_state(app)
}

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

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when this node is in contact with a working cluster: as the leader, a quorum
/// acknowledged it within two maximal election timeouts; as a follower, its leader's
/// appends (heartbeats included) reached it within that time. A leader cut off from its
/// quorum turns unready within that bound, so a load balancer stops sending it work.
async fn readyz(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = app.node.status();
    match app.node.in_contact() {
        Ok(()) => Ok(Json(
            json!({"status": "ready", "leader": s.leader, "applied": s.applied}),
        )),
        Err(why) => Err(ApiError::new(ErrorCode::Unavailable, why)),
    }
}
