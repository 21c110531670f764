//! Operations: deploys, rollbacks, aborts, long-polls, and the removal of a service (an
//! operation too, answered once it has ended).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sluice_common::agent_api::{
    AbortRequest, DeployRequest, OperationState, OperationView, RemoveServiceRequest,
    RemovedService, RollbackRequest,
};
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::time::DurationSpec;

use super::error::docker_problem;
use super::{ensure_docker, invalid, op_id, service_name, ApiError, JsonBody, Shared, MAX_WAIT};
use crate::record::{OpRecord, OpRequest, RemoveRequest};
use crate::runtime::ErrorKind;
use crate::Agent;
use uuid::Uuid;

/// How long `DELETE /agent/v1/services/{service}` waits for its removal to end before
/// answering that it is still under way (a retry joins the same operation and waits again).
const REMOVE_WAIT: Duration = Duration::from_secs(60);

fn accepted(view: OperationView) -> Response {
    let status = if view.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(view)).into_response()
}

pub(super) async fn deploy(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<DeployRequest>,
) -> Result<Response, ApiError> {
    let id = op_id(&id)?;
    if !a.config.port_range.contains(req.host_port.get()) {
        return Err(invalid(
            "host_port",
            format!(
                "{} is outside this server's port range {}",
                req.host_port, a.config.port_range
            ),
        ));
    }
    let bad = crate::policy::malformed(&req);
    if !bad.is_empty() {
        let mut p = Problem::new(ErrorCode::InvalidRequest, "the request has invalid fields");
        for (f, m) in bad {
            p = p.with_field(f, m);
        }
        return Err(ApiError::from(p));
    }
    let denied = crate::policy::violations(&a.config.policy, &req);
    if !denied.is_empty() {
        let rules: Vec<&str> = denied.iter().map(|(f, _)| f.as_str()).collect();
        let mut p = Problem::new(
            ErrorCode::Forbidden,
            format!("the container policy forbids: {}", rules.join(", ")),
        );
        for (f, m) in denied {
            p = p.with_field(f, m);
        }
        return Err(ApiError::from(p));
    }
    // The login stays in memory: the persisted request never holds it.
    let mut req = req;
    let auth = req.registry_auth.take();
    start(&a, id, OpRequest::Deploy(Box::new(req)), auth).await
}

/// Admits an operation (once: a retry gets the existing one) and starts its runner, with
/// `auth` (a deploy's registry login) in memory only.
async fn start(
    a: &Arc<Agent>,
    id: Uuid,
    request: OpRequest,
    auth: Option<sluice_common::api::RegistryCredentials>,
) -> Result<Response, ApiError> {
    ensure_docker(a).await?;
    let (view, cell) = a.ops.admit(id, request)?;
    if let Some(cell) = cell {
        cell.set_registry_auth(auth);
        let image = view.image.as_ref().map(|i| i.to_string());
        tracing::info!(op = %id, kind = ?view.kind, service = %view.service, ?image, "operation accepted");
        crate::runner::spawn(a.clone(), cell);
    }
    Ok(accepted(view))
}

pub(super) async fn rollback(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> Result<Response, ApiError> {
    let id = op_id(&id)?;
    start(&a, id, OpRequest::Rollback(req), None).await
}

pub(super) async fn abort(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AbortRequest>,
) -> Result<Json<OperationView>, ApiError> {
    let id = op_id(&id)?;
    match a.ops.abort(id, &req.fence, &req.reason)? {
        Some(view) => {
            tracing::warn!(op = %id, reason = %req.reason, state = ?view.state, "abort asked by the coordinator");
            Ok(Json(view))
        }
        None => Err(ApiError::from(Problem::new(
            ErrorCode::NotFound,
            format!("no operation {id}"),
        ))),
    }
}

fn wait_param(query: Option<String>) -> Result<Option<Duration>, ApiError> {
    let mut wait = None;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "wait" => {
                let d = DurationSpec::parse(v).map_err(|e| invalid("wait", e.reason))?;
                wait = Some(d.get().min(MAX_WAIT));
            }
            other => return Err(invalid(other, "unknown query parameter")),
        }
    }
    Ok(wait)
}

pub(super) async fn operation(
    State(a): Shared,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<OperationView>, ApiError> {
    let id = op_id(&id)?;
    let wait = wait_param(query)?;
    if let (Some(wait), Some(cell)) = (wait, a.ops.live(id)) {
        let from = cell.view().state;
        tokio::select! {
            _ = cell.wait_state_change(from, wait) => {}
            // Shutdown ends long-polls at once instead of holding the drain.
            _ = a.cancel.cancelled() => {}
        }
        return Ok(Json(cell.view()));
    }
    match a.ops.get(id) {
        Ok(Some(v)) => Ok(Json(v)),
        Ok(None) => Err(ApiError::from(Problem::new(
            ErrorCode::NotFound,
            format!("no operation {id}"),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "reading an operation");
            Err(ApiError::from(Problem::new(
                ErrorCode::Internal,
                "the operation record is unreadable",
            )))
        }
    }
}

/// `DELETE /agent/v1/services/{service}`: removes every container of the service, as an
/// operation whose id derives from the service and the claim (a retried request joins it),
/// and answers once it has ended, as the removal inside the handler used to.
pub(super) async fn remove_service(
    State(a): Shared,
    Path(service): Path<String>,
    JsonBody(req): JsonBody<RemoveServiceRequest>,
) -> Result<Json<RemovedService>, ApiError> {
    let service = service_name(&service)?;
    ensure_docker(&a).await?;
    let request = RemoveRequest {
        fence: req.fence,
        service: service.clone(),
    };
    let id = request.operation_id();
    let (_, cell) = a.ops.admit(id, OpRequest::Remove(request))?;
    if let Some(cell) = cell {
        tracing::info!(op = %id, %service, "removal accepted");
        crate::runner::spawn(a.clone(), cell);
    }
    if let Some(cell) = a.ops.live(id) {
        tokio::select! {
            _ = cell.wait_state_change(OperationState::Running, REMOVE_WAIT) => {}
            _ = a.cancel.cancelled() => {}
        }
    }
    let rec = match a.ops.record(id) {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            return Err(ApiError::from(Problem::new(
                ErrorCode::Internal,
                "the removal's record is missing",
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a removal");
            return Err(ApiError::from(Problem::new(
                ErrorCode::Internal,
                "the removal's record is unreadable",
            )));
        }
    };
    let answer = removal_answer(rec);
    if let Ok(Json(r)) = &answer {
        tracing::info!(service = %r.service, removed = r.removed.len(), "service removed");
    }
    answer
}

/// The answer to a removal, from its record: the removed ids once it succeeded, the
/// problem Docker gave when it failed (the same as when the removal ran inside the
/// handler), or a 503 while it is still under way.
fn removal_answer(rec: OpRecord) -> Result<Json<RemovedService>, ApiError> {
    let service = rec.view.service;
    match rec.view.state {
        OperationState::Succeeded => Ok(Json(RemovedService {
            service,
            removed: rec.removal.map(|r| r.containers).unwrap_or_default(),
        })),
        OperationState::Running => Err(ApiError::from(Problem::new(
            ErrorCode::DockerUnavailable,
            format!(
                "removing service {service} is still under way (operation {}); retry to wait for it",
                rec.view.id
            ),
        ))),
        OperationState::Failed | OperationState::RolledBack => Err(docker_problem(
            rec.removal
                .and_then(|r| r.failure)
                .unwrap_or(ErrorKind::Refused),
            rec.view.error.unwrap_or_default(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_a_duration() {
        assert_eq!(wait_param(None).unwrap(), None);
        assert_eq!(
            wait_param(Some("wait=2s".into())).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(wait_param(Some("wait=1h".into())).unwrap(), Some(MAX_WAIT));
        assert_eq!(
            wait_param(Some("wait=30".into())).unwrap_err().0.errors[0].field,
            "wait"
        );
        assert_eq!(
            wait_param(Some("w=1s".into())).unwrap_err().0.errors[0].field,
            "w"
        );
    }

    #[test]
    fn a_removal_answers_as_the_handler_did() {
        use crate::record::Removal;
        let req: RemoveRequest = serde_json::from_value(serde_json::json!({
            "fence": {"key": "service/api", "token": 2}, "service": "api",
        }))
        .unwrap();
        let fresh = OpRecord::new(req.operation_id(), OpRequest::Remove(req), crate::now());
        let e = removal_answer(fresh.clone()).unwrap_err();
        assert_eq!((e.0.code, e.0.status), (ErrorCode::DockerUnavailable, 503));
        let mut done = fresh.clone();
        done.removal = Some(Removal {
            containers: vec!["c1".into(), "c2".into()],
            failure: None,
        });
        done.finish(OperationState::Succeeded, "removed 2 container(s)");
        let Json(r) = removal_answer(done).unwrap();
        assert_eq!((r.service.as_str(), r.removed.len()), ("api", 2));
        for (kind, code, status) in [
            (ErrorKind::Refused, ErrorCode::DockerUnavailable, 502),
            (ErrorKind::Unavailable, ErrorCode::DockerUnavailable, 503),
            (ErrorKind::NotFound, ErrorCode::NotFound, 404),
        ] {
            let mut failed = fresh.clone();
            failed.removal = Some(Removal {
                containers: vec![],
                failure: Some(kind),
            });
            failed.view.error = Some("docker refused: busy".into());
            failed.finish(
                OperationState::Failed,
                "failed while removing the containers",
            );
            let e = removal_answer(failed).unwrap_err();
            assert_eq!((e.0.code, e.0.status), (code, status));
            assert_eq!(e.0.detail, "docker refused: busy");
        }
    }
}
