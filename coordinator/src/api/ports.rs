//! `/v1/ports`: the replicated port ledger.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use sluice_common::api::{AllocatePortRequest, PortAllocationView, PortsList, ServerPortsView};
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::ports::ServerPorts;
use sluice_common::problem::ErrorCode;

use super::auth::Caller;
use super::error::{optional_json, ApiError};
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
pub async fn list(State(app): State<App>) -> Result<Json<PortsList>, ApiError> {
    app.node.linearizable().await?;
    let servers = app
        .node
        .read(|a| a.state.ports.servers().map(|(s, p)| view(s, p)).collect());
    Ok(Json(PortsList { servers }))
}

/// `GET /v1/ports/{server}`.
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
        other => Err(ApiError::new(
            ErrorCode::Internal,
            format!("unexpected {other:?}"),
        )),
    }
}

/// `DELETE /v1/ports/{server}/{service}`: release.
pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path((server, service)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let server = ServerName::parse(&server)?;
    let service = ServiceName::parse(&service)?;
    match app
        .node
        .propose(&caller.actor, Command::ReleasePort { server, service })
        .await?
    {
        Response::PortReleased { port } => Ok(Json(serde_json::json!({ "released": port }))),
        other => Err(ApiError::new(
            ErrorCode::Internal,
            format!("unexpected {other:?}"),
        )),
    }
}
