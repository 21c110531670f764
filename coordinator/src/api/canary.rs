//! `/v1/deployments/{id}/promote|pause|resume`: a human's hand on a running canary. Each
//! is one Raft entry the sequencer acts on at once. Aborting a canary is `cancel` (every
//! server back to the old version as one unit); `sluice abort` calls it.

use axum::extract::{Path, State};
use axum::response::Response as HttpResponse;
use axum::Extension;
use sluice_common::api::{CanaryControl, CreateDeploymentRequest, DeploymentView, Strategy};
use sluice_common::problem::{ErrorCode, Problem};

use super::auth::Caller;
use super::deployments::request;
use super::error::ApiError;
use super::openapi::{Conflict, DeploymentPath, NotFound};
use super::App;
use crate::state::deployments::DeploymentCommand;

/// Refuses a `canary` object without strategy `canary`, and a spec its schema cannot
/// fully state (every problem named by field).
pub(super) fn check_request(req: &CreateDeploymentRequest) -> Result<(), ApiError> {
    let Some(spec) = &req.canary else {
        return Ok(());
    };
    if req.strategy != Strategy::Canary {
        return Err(ApiError::from(
            Problem::new(
                ErrorCode::InvalidRequest,
                "a canary object needs strategy canary",
            )
            .with_field("canary", "given without strategy canary"),
        ));
    }
    let bad = sluice_common::api::spec_problems(spec);
    if bad.is_empty() {
        return Ok(());
    }
    let mut p = Problem::new(
        ErrorCode::InvalidRequest,
        "the canary spec has invalid fields",
    );
    for (f, m) in bad {
        p = p.with_field(f, m);
    }
    Err(ApiError::from(p))
}

async fn control(
    app: &App,
    caller: &Caller,
    id: &str,
    control: CanaryControl,
) -> Result<HttpResponse, ApiError> {
    let reason = match control {
        CanaryControl::Pause => format!("paused by {}", caller.actor),
        CanaryControl::Promote => format!("promoted by {}", caller.actor),
        CanaryControl::Resume => format!("resumed by {}", caller.actor),
    };
    request(app, caller, id, |id| DeploymentCommand::CanaryControl {
        id,
        control,
        reason,
    })
    .await
}

/// `POST /v1/deployments/{id}/promote`: skip a canary's remaining pauses and analyses.
#[utoipa::path(
    post,
    path = "/v1/deployments/{id}/promote",
    operation_id = "promoteDeployment",
    tag = "deployments",
    summary = "Promote a canary: skip its remaining pauses and analyses, switch all traffic to the new version.",
    params(DeploymentPath),
    responses(
        (status = 202, description = "Recorded: the deployment.", body = DeploymentView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub async fn promote(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&app, &caller, &id, CanaryControl::Promote).await
}

/// `POST /v1/deployments/{id}/pause`: hold a canary at its step.
#[utoipa::path(
    post,
    path = "/v1/deployments/{id}/pause",
    operation_id = "pauseDeployment",
    tag = "deployments",
    summary = "Pause a canary at its current step (its analysis stops) until resumed or promoted.",
    params(DeploymentPath),
    responses(
        (status = 202, description = "Recorded: the deployment.", body = DeploymentView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub async fn pause(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&app, &caller, &id, CanaryControl::Pause).await
}

/// `POST /v1/deployments/{id}/resume`: go on after a pause.
#[utoipa::path(
    post,
    path = "/v1/deployments/{id}/resume",
    operation_id = "resumeDeployment",
    tag = "deployments",
    summary = "Resume a paused canary: its step's pause and analysis start afresh.",
    params(DeploymentPath),
    responses(
        (status = 202, description = "Recorded: the deployment.", body = DeploymentView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub async fn resume(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<HttpResponse, ApiError> {
    control(&app, &caller, &id, CanaryControl::Resume).await
}
