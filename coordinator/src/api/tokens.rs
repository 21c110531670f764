//! `/v1/tokens`: CI bearer tokens (admin only; see [`super::auth`]).
//!
//! The secret is 32 random bytes from the TLS stack's CSPRNG, hex-encoded behind a
//! `sluice_` prefix (so secret scanners can spot a leaked one). Only its SHA-256 is
//! proposed to Raft; the secret is in the create response and nowhere else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use sluice_common::problem::{ErrorCode, Problem};

use super::auth::hash_secret;
use super::auth::Caller;
use super::error::{unexpected, ApiError, ApiJson};
use super::openapi::{Conflict, NotFound};
use super::App;
use sluice_common::api::{CreateTokenRequest, CreatedToken};

use crate::state::tokens::{TokenCommand, TokenError, TokenName, TokenRole, TokenView};
use crate::state::{Command, Response};

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let detail = e.to_string();
        match e {
            TokenError::Exists { .. } => ApiError::new(ErrorCode::Conflict, detail),
            TokenError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, detail),
        }
    }
}

/// A fresh secret: `sluice_` and 64 hex digits.
pub(crate) fn new_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    sluice_common::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "no randomness available"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sluice_{hex}"))
}

async fn token_cmd(app: &App, caller: &Caller, cmd: TokenCommand) -> Result<TokenView, ApiError> {
    match app
        .node
        .propose(&caller.actor, Command::Token { cmd })
        .await?
    {
        Response::Token { outcome } => {
            // Later requests to this node must see the change (a revocation above all).
            app.node.linearizable().await?;
            Ok(outcome?)
        }
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/tokens`: 201 with the secret.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    summary = "Create a bearer token. Admin. The secret is in this response only.",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created.", body = CreatedToken),
        (status = 409, response = Conflict),
    ),
)]
pub async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if req.role != TokenRole::Deployer && !req.services.is_empty() {
        return Err(ApiError::from(
            Problem::new(
                ErrorCode::InvalidRequest,
                "services scope only deployer tokens",
            )
            .with_field("services", "only for role deployer"),
        ));
    }
    let secret = new_secret()?;
    let token = token_cmd(
        &app,
        &caller,
        TokenCommand::Create {
            name: req.name,
            role: req.role,
            services: req.services,
            hash: hash_secret(&secret),
        },
    )
    .await?;
    tracing::info!(token = %token.name, role = %token.role, "token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

/// `GET /v1/tokens`: every token, revoked ones included, without secrets or hashes.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "listTokens",
    tag = "tokens",
    summary = "Every token, revoked ones included, without secrets. Admin.",
    responses(
        (status = 200, description = "Tokens.", body = Vec<TokenView>),
    ),
)]
pub async fn list(State(app): State<App>) -> Result<Json<Vec<TokenView>>, ApiError> {
    app.node.linearizable().await?;
    Ok(Json(app.node.read(|a| {
        a.state.tokens.by_name.values().map(|t| t.view()).collect()
    })))
}

/// `DELETE /v1/tokens/{name}`: revoke (idempotent); answers once this node has applied it.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{name}",
    operation_id = "revokeToken",
    tag = "tokens",
    summary = "Revoke (idempotent); answers once this node has applied it. Admin.",
    params(
        ("name" = TokenName, Path, description = "The token."),
    ),
    responses(
        (status = 200, description = "The revoked token.", body = TokenView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn revoke(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let name = TokenName::parse(&name).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
    let token = token_cmd(&app, &caller, TokenCommand::Revoke { name }).await?;
    tracing::info!(token = %token.name, "token revoked");
    Ok(Json(token))
}
