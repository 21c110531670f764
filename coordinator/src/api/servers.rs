//! `/v1/servers`: the servers the cluster deploys to.

use axum::extract::{Path, State};
use axum::Json;
use sluice_common::api::{PutServerRequest, ServerView};
use sluice_common::names::ServerName;

use super::error::{ApiError, ApiJson};
use super::App;
use crate::state::{Command, Response, ServerRecord};

fn view(name: &ServerName, r: &ServerRecord) -> ServerView {
    ServerView {
        name: name.clone(),
        agent_addr: r.agent_addr.clone(),
        labels: r.labels.clone(),
        port_range: r.port_range,
        forbidden: r.forbidden,
    }
}

/// `GET /v1/servers`.
pub async fn list(State(app): State<App>) -> Result<Json<Vec<ServerView>>, ApiError> {
    app.node.linearizable().await?;
    Ok(Json(app.node.read(|a| {
        a.state.servers.iter().map(|(n, r)| view(n, r)).collect()
    })))
}

/// `GET /v1/servers/{name}`.
pub async fn get(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    app.node.linearizable().await?;
    app.node
        .read(|a| a.state.servers.get(&name).map(|r| view(&name, r)))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))
}

/// `PUT /v1/servers/{name}`: register or update by hand.
pub async fn put(
    State(app): State<App>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PutServerRequest>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    app.node
        .propose(Command::PutServer {
            server: name.clone(),
            agent_addr: req.agent_addr,
            labels: req.labels,
            port_range: req.port_range,
            forbidden: req.forbidden,
        })
        .await?;
    // The write may have been applied by the leader before this node: read after it.
    app.node.linearizable().await?;
    app.node
        .read(|a| a.state.servers.get(&name).map(|r| view(&name, r)))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))
}

/// `DELETE /v1/servers/{name}`.
pub async fn remove(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = ServerName::parse(&name)?;
    match app
        .node
        .propose(Command::RemoveServer {
            server: name.clone(),
        })
        .await?
    {
        Response::UnknownServer { .. } => Err(ApiError::not_found(format!("server {name}"))),
        _ => Ok(Json(serde_json::json!({ "removed": name }))),
    }
}
