//! `/v1/servers`: the servers the cluster deploys to.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use sluice_common::api::{Policy, PutServerRequest, ServerRemoved, ServerView, SetLabelsRequest};
use sluice_common::names::ServerName;

use super::auth::Caller;
use super::error::{ApiError, ApiJson};
use super::openapi::{NotFound, ServerNamePath};
use super::App;
use crate::agents::AgentTracker;
use crate::raft::store::Applied;
use crate::state::{Command, Response, ServerRecord};

fn view(a: &Applied, agents: &AgentTracker, name: &ServerName, r: &ServerRecord) -> ServerView {
    let ports = a.state.ports.server(name);
    ServerView {
        name: name.clone(),
        agent_addr: r.agent_addr.clone(),
        labels: r.labels.clone(),
        port_range: r.port_range,
        forbidden: r.forbidden,
        cordoned: r.cordoned,
        up: r.up,
        last_heartbeat_ms: agents.since_last_beat(name).map(|d| d.as_millis() as u64),
        docker_version: r.docker_version.clone(),
        agent_version: r.agent_version.clone(),
        ports_used: ports.map_or(0, |p| p.used_count()),
        ports_free: ports.map_or(0, |p| p.free_count()),
    }
}

fn read_view(app: &App, name: &ServerName) -> Option<ServerView> {
    app.node.read(|a| {
        a.state
            .servers
            .get(name)
            .map(|r| view(a, &app.agents, name, r))
    })
}

/// `GET /v1/servers`.
#[utoipa::path(
    get,
    path = "/v1/servers",
    operation_id = "listServers",
    tag = "servers",
    summary = "Every server.",
    responses(
        (status = 200, description = "Servers.", body = Vec<ServerView>),
    ),
)]
pub async fn list(State(app): State<App>) -> Result<Json<Vec<ServerView>>, ApiError> {
    app.node.linearizable().await?;
    Ok(Json(app.node.read(|a| {
        a.state
            .servers
            .iter()
            .map(|(n, r)| view(a, &app.agents, n, r))
            .collect()
    })))
}

/// Changes one part of a server's policy, keeping the rest.
async fn update(
    app: &App,
    caller: &Caller,
    name: &ServerName,
    change: impl FnOnce(&mut ServerRecord),
) -> Result<Json<ServerView>, ApiError> {
    app.node.linearizable().await?;
    let mut rec = app
        .node
        .read(|a| a.state.servers.get(name).cloned())
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))?;
    change(&mut rec);
    app.node
        .propose(
            &caller.actor,
            Command::PutServer {
                server: name.clone(),
                agent_addr: rec.agent_addr,
                labels: rec.labels,
                port_range: rec.port_range,
                forbidden: rec.forbidden,
            },
        )
        .await?;
    app.node.linearizable().await?;
    read_view(app, name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))
}

/// `POST /v1/servers/{name}/forbid`: refuse every deployment to it.
#[utoipa::path(
    post,
    path = "/v1/servers/{name}/forbid",
    operation_id = "forbidServer",
    tag = "servers",
    summary = "Refuse every deployment to the server. Admin.",
    params(ServerNamePath),
    responses(
        (status = 200, description = "The server.", body = ServerView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn forbid(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    update(&app, &caller, &name, |r| r.forbidden = true).await
}

/// `POST /v1/servers/{name}/allow`: accept deployments again.
#[utoipa::path(
    post,
    path = "/v1/servers/{name}/allow",
    operation_id = "allowServer",
    tag = "servers",
    summary = "Accept deployments again. Admin.",
    params(ServerNamePath),
    responses(
        (status = 200, description = "The server.", body = ServerView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn allow(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    update(&app, &caller, &name, |r| r.forbidden = false).await
}

/// Cordons (`true`) or uncordons a server.
async fn cordon_as(
    app: &App,
    caller: &Caller,
    name: &str,
    cordoned: bool,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(name)?;
    let cmd = Command::CordonServer {
        server: name.clone(),
        cordoned,
    };
    if let Response::UnknownServer { .. } = app.node.propose(&caller.actor, cmd).await? {
        return Err(ApiError::not_found(format!("server {name}")));
    }
    app.node.linearizable().await?;
    read_view(app, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))
}

/// `POST /v1/servers/{name}/cordon`: place no new deployment on it.
#[utoipa::path(
    post,
    path = "/v1/servers/{name}/cordon",
    operation_id = "cordonServer",
    tag = "servers",
    summary = "Cordon the server: no new deployment is placed on it (validation fails with server_allowed); what runs there keeps serving. Admin.",
    params(ServerNamePath),
    responses(
        (status = 200, description = "The server.", body = ServerView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn cordon(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    cordon_as(&app, &caller, &name, true).await
}

/// `POST /v1/servers/{name}/uncordon`: place deployments on it again.
#[utoipa::path(
    post,
    path = "/v1/servers/{name}/uncordon",
    operation_id = "uncordonServer",
    tag = "servers",
    summary = "End a cordon: deployments may be placed on the server again. Admin.",
    params(ServerNamePath),
    responses(
        (status = 200, description = "The server.", body = ServerView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn uncordon(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    cordon_as(&app, &caller, &name, false).await
}

/// `PUT /v1/servers/{name}/labels`: replace its labels.
#[utoipa::path(
    put,
    path = "/v1/servers/{name}/labels",
    operation_id = "setServerLabels",
    tag = "servers",
    summary = "Replace the server's labels. Admin.",
    params(ServerNamePath),
    request_body = SetLabelsRequest,
    responses(
        (status = 200, description = "The server.", body = ServerView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn labels(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetLabelsRequest>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    update(&app, &caller, &name, |r| r.labels = req.labels).await
}

/// `GET /v1/servers/{name}`.
#[utoipa::path(
    get,
    path = "/v1/servers/{name}",
    operation_id = "getServer",
    tag = "servers",
    summary = "One server.",
    params(ServerNamePath),
    responses(
        (status = 200, description = "The server.", body = ServerView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn get(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    app.node.linearizable().await?;
    read_view(&app, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))
}

/// `PUT /v1/servers/{name}`: register or update by hand.
#[utoipa::path(
    put,
    path = "/v1/servers/{name}",
    operation_id = "putServer",
    tag = "servers",
    summary = "Register or update a server by hand. Admin.",
    params(ServerNamePath),
    request_body = PutServerRequest,
    responses(
        (status = 200, description = "The server.", body = ServerView),
    ),
)]
pub async fn put(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PutServerRequest>,
) -> Result<Json<ServerView>, ApiError> {
    let name = ServerName::parse(&name)?;
    app.node
        .propose(
            &caller.actor,
            Command::PutServer {
                server: name.clone(),
                agent_addr: req.agent_addr,
                labels: req.labels,
                port_range: req.port_range,
                forbidden: req.forbidden,
            },
        )
        .await?;
    // The write may have been applied by the leader before this node: read after it.
    app.node.linearizable().await?;
    read_view(&app, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("server {name}")))
}

/// `DELETE /v1/servers/{name}`.
#[utoipa::path(
    delete,
    path = "/v1/servers/{name}",
    operation_id = "removeServer",
    tag = "servers",
    summary = "Forget a server. Admin.",
    params(ServerNamePath),
    responses(
        (status = 200, description = "Removed.", body = ServerRemoved),
        (status = 404, response = NotFound),
    ),
)]
pub async fn remove(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ServerRemoved>, ApiError> {
    let name = ServerName::parse(&name)?;
    match app
        .node
        .propose(
            &caller.actor,
            Command::RemoveServer {
                server: name.clone(),
            },
        )
        .await?
    {
        Response::UnknownServer { .. } => Err(ApiError::not_found(format!("server {name}"))),
        _ => Ok(Json(ServerRemoved { removed: name })),
    }
}

/// `GET /v1/policy`.
#[utoipa::path(
    get,
    path = "/v1/policy",
    operation_id = "getPolicy",
    tag = "servers",
    summary = "The deployment policy.",
    responses(
        (status = 200, description = "The policy.", body = Policy),
    ),
)]
pub async fn get_policy(State(app): State<App>) -> Result<Json<Policy>, ApiError> {
    app.node.linearizable().await?;
    Ok(Json(app.node.read(|a| a.state.policy.clone())))
}

/// `PUT /v1/policy` (admin): replace the deployment policy.
#[utoipa::path(
    put,
    path = "/v1/policy",
    operation_id = "putPolicy",
    tag = "servers",
    summary = "Replace the deployment policy. Admin.",
    request_body = Policy,
    responses(
        (status = 200, description = "The policy.", body = Policy),
    ),
)]
pub async fn put_policy(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(policy): ApiJson<Policy>,
) -> Result<Json<Policy>, ApiError> {
    app.node
        .propose(&caller.actor, Command::SetPolicy { policy })
        .await?;
    get_policy(State(app)).await
}
