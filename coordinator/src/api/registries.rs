//! `/v1/registries`: private registry logins, per registry host (admin only, reads
//! included; see [`super::auth`]).
//!
//! The password goes in with `PUT` and never comes out: every answer is a
//! [`RegistryView`] (host, username, time), the audit record names the host and username,
//! and nothing here logs the request body.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use sluice_common::api::{PutRegistryRequest, RegistryHost, RegistryView};
use sluice_common::problem::{ErrorCode, Problem};

use super::auth::Caller;
use super::error::{unexpected, ApiError, ApiJson};
use super::openapi::NotFound;
use super::App;
use crate::state::registries::{seal_context, RegistryCommand};
use crate::state::{Command, Response};

fn host(raw: &str) -> Result<RegistryHost, ApiError> {
    RegistryHost::parse(raw).map_err(|e| {
        ApiError::from(Problem::new(ErrorCode::InvalidRequest, e.clone()).with_field("host", e))
    })
}

/// Proposes `cmd`; whether it changed anything. Answers once this node has applied it.
async fn registry_cmd(app: &App, caller: &Caller, cmd: RegistryCommand) -> Result<bool, ApiError> {
    match app
        .node
        .propose(&caller.actor, Command::Registry { cmd })
        .await?
    {
        r @ (Response::Done | Response::Unchanged) => {
            app.node.linearizable().await?;
            Ok(r == Response::Done)
        }
        other => Err(unexpected(other)),
    }
}

fn view_of(app: &App, host: &RegistryHost) -> Option<RegistryView> {
    app.node
        .read(|a| a.state.registries.by_host.get(host).map(|r| r.view(host)))
}

/// `PUT /v1/registries/{host}`: store or replace the login; the password is never shown.
#[utoipa::path(
    put,
    path = "/v1/registries/{host}",
    operation_id = "putRegistry",
    tag = "registries",
    summary = "Store or replace the login for a registry host. Admin. The password is never shown again.",
    params(("host" = RegistryHost, Path, description = "The registry host (`name[:port]`, as image references name it).")),
    request_body = PutRegistryRequest,
    responses(
        (status = 200, description = "Stored (without the password).", body = RegistryView),
    ),
)]
pub async fn put(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<PutRegistryRequest>,
) -> Result<Json<RegistryView>, ApiError> {
    let host = host(&raw)?;
    // Sealed before it is proposed: the Raft log never holds the plaintext.
    let password = app
        .secrets
        .seal(&seal_context(&host), req.password.expose())
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    registry_cmd(
        &app,
        &caller,
        RegistryCommand::Put {
            host: host.clone(),
            username: req.username,
            password,
        },
    )
    .await?;
    tracing::info!(registry = %host, "registry login stored");
    view_of(&app, &host)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the login vanished"))
}

/// `GET /v1/registries`: every stored login: host and username, never the password.
#[utoipa::path(
    get,
    path = "/v1/registries",
    operation_id = "listRegistries",
    tag = "registries",
    summary = "Every stored registry login: host and username only. Admin.",
    responses((status = 200, description = "Logins.", body = Vec<RegistryView>)),
)]
pub async fn list(State(app): State<App>) -> Result<Json<Vec<RegistryView>>, ApiError> {
    app.node.linearizable().await?;
    Ok(Json(app.node.read(|a| a.state.registries.views())))
}

/// `GET /v1/registries/{host}`: one stored login, without the password.
#[utoipa::path(
    get,
    path = "/v1/registries/{host}",
    operation_id = "getRegistry",
    tag = "registries",
    summary = "One stored registry login, without the password. Admin.",
    params(("host" = RegistryHost, Path, description = "The registry host.")),
    responses(
        (status = 200, description = "The login.", body = RegistryView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn get(
    State(app): State<App>,
    Path(raw): Path<String>,
) -> Result<Json<RegistryView>, ApiError> {
    let host = host(&raw)?;
    app.node.linearizable().await?;
    view_of(&app, &host).map(Json).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no login stored for registry {host}"),
        )
    })
}

/// `DELETE /v1/registries/{host}`: forget the login.
#[utoipa::path(
    delete,
    path = "/v1/registries/{host}",
    operation_id = "removeRegistry",
    tag = "registries",
    summary = "Forget the login for a registry host. Admin.",
    params(("host" = RegistryHost, Path, description = "The registry host.")),
    responses(
        (status = 200, description = "The login removed (without the password).", body = RegistryView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn remove(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> Result<Json<RegistryView>, ApiError> {
    let host = host(&raw)?;
    let Some(view) = view_of(&app, &host) else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no login stored for registry {host}"),
        ));
    };
    if !registry_cmd(
        &app,
        &caller,
        RegistryCommand::Remove { host: host.clone() },
    )
    .await?
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no login stored for registry {host}"),
        ));
    }
    tracing::info!(registry = %host, "registry login removed");
    Ok(Json(view))
}
