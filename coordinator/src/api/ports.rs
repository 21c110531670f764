//! `/v1/ports`: the replicated port ledger.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use sluice_common::api::{
    AllocatePortRequest, PortAllocationView, PortReleased, PortsList, ServerPortsView,
};
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::ports::ServerPorts;

use super::auth::Caller;
use super::error::{optional_json, unexpected, ApiError};
use super::openapi::{NotFound, PortConflict, ServerPath, ServerServicePath};
use super::App;
use crate::state::{Command, Response};

fn view(server: &ServerName, p: &ServerPorts) -> ServerPortsView {
    ServerPortsView {
        server: server.clone(),
        range: p.range(),
        used: p.used_count(),
        free: p.free_count(),
        assignments: p.assignments().clone(),
        host_bound: p.host_bound().iter().copied().collect(),
    }
}

/// `GET /v1/ports`.
#[utoipa::path(
    get,
    path = "/v1/ports",
    operation_id = "listPorts",
    tag = "ports",
    summary = "Every server's ports.",
    responses(
        (status = 200, description = "The ledger.", body = PortsList),
    ),
)]
pub async fn list(State(app): State<App>) -> Result<Json<PortsList>, ApiError> {
    app.node.linearizable().await?;
    let servers = app
        .node
        .read(|a| a.state.ports.servers().map(|(s, p)| view(s, p)).collect());
    Ok(Json(PortsList { servers }))
}

/// `GET /v1/ports/{server}`.
#[utoipa::path(
    get,
    path = "/v1/ports/{server}",
    operation_id = "getServerPorts",
    tag = "ports",
    summary = "One server's ports.",
    params(ServerPath),
    responses(
        (status = 200, description = "Its ports.", body = ServerPortsView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn server(
    State(app): State<App>,
    Path(server): Path<String>,
) -> Result<Json<ServerPortsView>, ApiError> {
    let server = ServerName::parse(&server)?;
    app.node.linearizable().await?;
    app.node
        .read(|a| a.state.ports.server(&server).map(|p| view(&server, p)))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {server}")))
}

/// `POST /v1/ports/{server}/{service}`: allocate (idempotent), optionally an explicit port.
#[utoipa::path(
    post,
    path = "/v1/ports/{server}/{service}",
    operation_id = "allocatePort",
    tag = "ports",
    summary = "Allocate a port (idempotent), optionally an explicit one. Admin. The body is optional.",
    params(ServerServicePath),
    request_body(content = Option<AllocatePortRequest>, description = "Optional."),
    responses(
        (status = 200, description = "The allocation (also when new).", body = PortAllocationView),
        (status = 404, response = NotFound),
        (status = 409, response = PortConflict),
    ),
)]
pub async fn allocate(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path((server, service)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<PortAllocationView>, ApiError> {
    let server = ServerName::parse(&server)?;
    let service = ServiceName::parse(&service)?;
    let req: AllocatePortRequest = optional_json(&body)?;
    let r = app
        .node
        .propose(
            &caller.actor,
            Command::AllocatePort {
                server: server.clone(),
                service: service.clone(),
                port: req.port,
            },
        )
        .await?;
    match r {
        Response::Port { outcome } => {
            let a = outcome?;
            Ok(Json(PortAllocationView {
                server,
                service,
                port: a.port,
                newly_allocated: a.newly_allocated,
            }))
        }
        other => Err(unexpected(other)),
    }
}

/// `DELETE /v1/ports/{server}/{service}`: release.
#[utoipa::path(
    delete,
    path = "/v1/ports/{server}/{service}",
    operation_id = "releasePort",
    tag = "ports",
    summary = "Release the service's port on the server. Admin.",
    params(ServerServicePath),
    responses(
        (status = 200, description = "The freed port, or null.", body = PortReleased),
    ),
)]
pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path((server, service)): Path<(String, String)>,
) -> Result<Json<PortReleased>, ApiError> {
    let server = ServerName::parse(&server)?;
    let service = ServiceName::parse(&service)?;
    match app
        .node
        .propose(&caller.actor, Command::ReleasePort { server, service })
        .await?
    {
        Response::PortReleased { port } => Ok(Json(PortReleased { released: port })),
        other => Err(unexpected(other)),
    }
}
