//! `/v1/deployments` and `/v1/services`: what CI calls.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_common::api::{CreateDeploymentRequest, DeploymentList, DeploymentView, ServiceView};
use sluice_common::deployment::DeploymentState;
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::problem::{ErrorCode, Problem};
use uuid::Uuid;

use super::auth::Caller;
use super::error::{unexpected, ApiError, ApiJson};
use super::openapi::{Conflict, DeploymentPath, NotFound, Unprocessable};
use super::App;
use crate::state::deployments::{DeploymentCommand, DeploymentError};
use crate::state::{Command, Response};

impl From<DeploymentError> for ApiError {
    fn from(e: DeploymentError) -> Self {
        let detail = e.to_string();
        match e {
            DeploymentError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, detail),
            DeploymentError::IdempotencyConflict { id, .. } => ApiError::from(
                Problem::new(ErrorCode::IdempotencyKeyReused, detail)
                    .with_extension("deployment", id),
            ),
            DeploymentError::Lock(l) => l.into(),
            DeploymentError::ServiceChanged {
                expected, current, ..
            } => ApiError::from(
                Problem::new(ErrorCode::ServiceChanged, detail)
                    .with_extension("expected", expected)
                    .with_extension("current", current),
            ),
            DeploymentError::Transition { .. } | DeploymentError::Conflict { .. } => {
                ApiError::new(ErrorCode::Conflict, detail)
            }
        }
    }
}

async fn deployment_cmd(
    app: &App,
    caller: &Caller,
    cmd: DeploymentCommand,
) -> Result<Uuid, ApiError> {
    match app
        .node
        .propose(&caller.actor, Command::Deployment { cmd })
        .await?
    {
        Response::Deployment { outcome } => Ok(outcome?.id),
        other => Err(unexpected(other)),
    }
}

async fn view_after_write(app: &App, id: Uuid) -> Result<DeploymentView, ApiError> {
    app.node.linearizable().await?;
    app.node
        .read(|a| a.state.deployments.all.get(&id).map(|d| d.view()))
        .ok_or_else(|| ApiError::not_found(format!("deployment {id}")))
}

/// Refuses a caller whose scope does not cover deployment `id`'s service.
async fn check_scope(app: &App, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    if caller.services.is_empty() && caller.role != crate::state::tokens::TokenRole::Viewer {
        return Ok(());
    }
    app.node.linearizable().await?;
    let service = app
        .node
        .read(|a| {
            a.state
                .deployments
                .all
                .get(&id)
                .map(|d| d.request.service.clone())
        })
        .ok_or_else(|| ApiError::not_found(format!("deployment {id}")))?;
    caller.may_deploy(&service)
}

fn location(id: Uuid) -> HeaderValue {
    HeaderValue::from_str(&format!("/v1/deployments/{id}")).expect("ascii")
}

/// `POST /v1/deployments` (honours `Idempotency-Key`): 202 with the deployment.
#[utoipa::path(
    post,
    path = "/v1/deployments",
    operation_id = "createDeployment",
    tag = "deployments",
    summary = "Deploy an image of a service. Deployers within their scope, admins.",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$", description = "1-255 visible ASCII characters (inner spaces allowed; HTTP trims the ends). Replays of the same key and body answer the first deployment (200); a different body is 422 idempotency_key_reused."),
    ),
    request_body = CreateDeploymentRequest,
    responses(
        (status = 200, description = "An earlier request with the same Idempotency-Key and body: that deployment.", body = DeploymentView, headers(("Location" = String, description = "`/v1/deployments/{id}`"), ("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 202, description = "Accepted: the new deployment; follow it with GET or the events stream.", body = DeploymentView, headers(("Location" = String, description = "`/v1/deployments/{id}`"))),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ),
)]
pub async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateDeploymentRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.may_deploy(&req.service)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::from(
                        Problem::new(
                            ErrorCode::InvalidRequest,
                            "Idempotency-Key must be 1-255 visible ASCII characters",
                        )
                        .with_field("Idempotency-Key", "invalid"),
                    )
                })?;
            Some(k.to_string())
        }
    };
    check_body(&req)?;
    let targets = resolve_targets(&app, &req)?;
    let body = serde_json::to_vec(&req).expect("serializable");
    let hash = format!("{:x}", Sha256::digest(&body));
    // Secret values are sealed before they are proposed (the hash above is of the request
    // as sent, so a replay still matches).
    let mut req = req;
    crate::secrets::env::seal(&app.secrets, &req.service, &mut req.env)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let fresh = Uuid::new_v4();
    let cmd = DeploymentCommand::Create {
        id: fresh,
        request: Box::new(req),
        targets,
        idempotency: key.map(|k| (k, hash)),
        actor: caller.actor.clone(),
    };
    let id = deployment_cmd(&app, &caller, cmd).await?;
    let view = view_after_write(&app, id).await?;
    let status = if id == fresh {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(view)).into_response();
    resp.headers_mut().insert("location", location(id));
    if id != fresh {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The checks of a request's body beyond its types (shared with the plan): a target, a
/// sane `max_parallel` and health path, a health check where the strategy needs one, the
/// canary and container spec rules.
pub(super) fn check_body(req: &CreateDeploymentRequest) -> Result<(), ApiError> {
    if req.servers.is_empty() && req.selector.is_empty() {
        return Err(ApiError::from(
            Problem::new(
                ErrorCode::InvalidRequest,
                "name target servers or a label selector",
            )
            .with_field("servers", "empty, and no selector given"),
        ));
    }
    if req.max_parallel == Some(0) {
        return Err(ApiError::from(
            Problem::new(ErrorCode::InvalidRequest, "max_parallel must be at least 1")
                .with_field("max_parallel", "must be at least 1"),
        ));
    }
    if let sluice_common::api::HealthCheck::Http { path, .. } = &req.health {
        if !path.starts_with('/') || path.chars().any(char::is_control) {
            return Err(ApiError::from(
                Problem::new(
                    ErrorCode::InvalidRequest,
                    "the health check path must start with '/'",
                )
                .with_field("health.path", "must start with '/'"),
            ));
        }
    }
    if req.strategy.proxied() && matches!(req.health, sluice_common::api::HealthCheck::None {}) {
        return Err(ApiError::from(
            Problem::new(
                ErrorCode::HealthCheckRequired,
                "blue_green and canary send traffic only to a version its health check passed: give a health check (http, tcp or docker), or use strategy recreate",
            )
            .with_field("health", "must not be none with strategy blue_green or canary"),
        ));
    }
    super::canary::check_request(req)?;
    super::spec::check_request(req)?;
    Ok(())
}

/// Named servers, plus every server carrying all the selector's labels; sorted, unique.
pub(super) fn resolve_targets(
    app: &App,
    req: &CreateDeploymentRequest,
) -> Result<Vec<ServerName>, ApiError> {
    let mut targets: Vec<ServerName> = req.servers.clone();
    if !req.selector.is_empty() {
        let matched: Vec<ServerName> = app.node.read(|a| {
            a.state
                .servers
                .iter()
                .filter(|(_, r)| req.selector.iter().all(|l| r.labels.contains(l)))
                .map(|(n, _)| n.clone())
                .collect()
        });
        if matched.is_empty() {
            return Err(ApiError::from(
                Problem::new(
                    ErrorCode::InvalidRequest,
                    "the label selector matches no server",
                )
                .with_field("selector", "matches no server"),
            ));
        }
        targets.extend(matched);
    }
    targets.sort();
    targets.dedup();
    Ok(targets)
}

/// List filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this service.
    #[param(value_type = Option<ServiceName>)]
    service: Option<String>,
    /// Only this state.
    state: Option<DeploymentState>,
    /// Page size (default 50), clamped to 1-500.
    #[param(value_type = Option<u64>, default = 50)]
    limit: Option<usize>,
    /// The `next` of the previous page.
    before: Option<u64>,
    /// Accepted at or after this time (RFC 3339).
    #[param(value_type = Option<sluice_common::time::Timestamp>)]
    since: Option<String>,
    /// Accepted before this time (RFC 3339).
    #[param(value_type = Option<sluice_common::time::Timestamp>)]
    until: Option<String>,
}

/// `GET /v1/deployments?service=&state=&since=&until=&limit=&before=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/deployments",
    operation_id = "listDeployments",
    tag = "deployments",
    summary = "Deployments, newest first.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page.", body = DeploymentList),
    ),
)]
pub async fn list(
    State(app): State<App>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeploymentList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    let service = q.service.as_deref().map(ServiceName::parse).transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let since = super::audit::time("since", q.since.as_ref())?;
    let until = super::audit::time("until", q.until.as_ref())?;
    app.node.linearizable().await?;
    let (deployments, next) = app.node.read(|a| {
        // Filtered on each record's searchable fields; only the page is decoded.
        let records = &a.state.deployments.all;
        let mut all: Vec<_> = a
            .state
            .deployments
            .metas_of(service.as_ref())
            .filter(|(_, m)| q.state.is_none_or(|st| m.state == st))
            .filter(|(_, m)| q.before.is_none_or(|b| m.seq < b))
            .filter(|(_, m)| since.is_none_or(|t| m.created_at >= t))
            .filter(|(_, m)| until.is_none_or(|t| m.created_at < t))
            .map(|(id, m)| (m.seq, id))
            .collect();
        all.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let more = all.len() > limit;
        all.truncate(limit);
        let next = if more {
            all.last().map(|(seq, _)| seq.to_string())
        } else {
            None
        };
        let views = all
            .iter()
            .filter_map(|(_, id)| records.get(id).map(|d| d.view()))
            .collect();
        (views, next)
    });
    Ok(Json(DeploymentList { deployments, next }))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{id:?} is not a deployment id (a UUID)"),
        )
    })
}

/// `GET /v1/deployments/{id}`.
#[utoipa::path(
    get,
    path = "/v1/deployments/{id}",
    operation_id = "getDeployment",
    tag = "deployments",
    summary = "One deployment.",
    params(DeploymentPath),
    responses(
        (status = 200, description = "The deployment.", body = DeploymentView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(view_after_write(&app, id).await?))
}

/// Records a request on a deployment (rollback, cancel, a canary's promote, pause or
/// resume) and answers 202 with its view.
pub(super) async fn request(
    app: &App,
    caller: &Caller,
    id: &str,
    cmd: impl FnOnce(Uuid) -> DeploymentCommand,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    check_scope(app, caller, id).await?;
    deployment_cmd(app, caller, cmd(id)).await?;
    let view = view_after_write(app, id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// `POST /v1/deployments/{id}/rollback`: roll a successful deployment back.
#[utoipa::path(
    post,
    path = "/v1/deployments/{id}/rollback",
    operation_id = "rollbackDeployment",
    tag = "deployments",
    summary = "Roll a deployment back.",
    params(DeploymentPath),
    responses(
        (status = 202, description = "Recorded: the deployment.", body = DeploymentView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub async fn rollback(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<HttpResponse, ApiError> {
    request(&app, &caller, &id, |id| {
        DeploymentCommand::RequestRollback { id }
    })
    .await
}

/// `POST /v1/deployments/{id}/cancel`: stop an active deployment (rolling back what it moved).
#[utoipa::path(
    post,
    path = "/v1/deployments/{id}/cancel",
    operation_id = "cancelDeployment",
    tag = "deployments",
    summary = "Stop an active deployment (rolling back what it moved).",
    params(DeploymentPath),
    responses(
        (status = 202, description = "Recorded: the deployment.", body = DeploymentView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
pub async fn cancel(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<HttpResponse, ApiError> {
    request(&app, &caller, &id, |id| DeploymentCommand::RequestCancel {
        id,
    })
    .await
}

/// `GET /v1/deployments/{id}/events`: server-sent events, one `deployment` event with the
/// whole view each time it changes, ending after a settled state.
#[utoipa::path(
    get,
    path = "/v1/deployments/{id}/events",
    operation_id = "deploymentEvents",
    tag = "deployments",
    summary = "Server-sent events: a `deployment` event carrying the whole DeploymentView (JSON in `data`, `id` = its updated_at) on every change, ending after a settled state.",
    params(DeploymentPath),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`); each event's `data` is a DeploymentView.", body = String, content_type = "text/event-stream"),
        (status = 404, response = NotFound),
    ),
)]
pub async fn events(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = parse_id(&id)?;
    app.node.linearizable().await?;
    if app
        .node
        .read(|a| !a.state.deployments.all.contains_key(&id))
    {
        return Err(ApiError::not_found(format!("deployment {id}")));
    }
    let node = app.node.clone();
    let stream = futures_util::stream::unfold(
        (node.applied_watch(), None::<DeploymentView>, None, false),
        move |(mut applied, mut last, mut seen, done)| {
            let node = node.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let (version, fresh) =
                        node.read(|a| a.state.deployments.view_since(&id, seen))?;
                    seen = Some(version);
                    match fresh {
                        Some((view, driving)) if last.as_ref() != Some(&view) => {
                            let ev = Event::default()
                                .event("deployment")
                                .id(view.updated_at.to_string())
                                .json_data(&view)
                                .expect("serializable");
                            last = Some(view);
                            return Some((Ok(ev), (applied, last, seen, !driving)));
                        }
                        _ => {}
                    }
                    tokio::select! {
                        r = applied.changed() => if r.is_err() { return None },
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /v1/services`.
#[utoipa::path(
    get,
    path = "/v1/services",
    operation_id = "listServices",
    tag = "deployments",
    summary = "What runs where, per service.",
    responses(
        (status = 200, description = "Services.", body = Vec<ServiceView>),
    ),
)]
pub async fn services(State(app): State<App>) -> Result<Json<Vec<ServiceView>>, ApiError> {
    app.node.linearizable().await?;
    Ok(Json(app.node.read(|a| {
        a.state
            .deployments
            .service_views(|s| a.state.servers.get(s).is_some_and(|r| r.up))
    })))
}
