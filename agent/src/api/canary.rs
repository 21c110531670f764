//! A canary's hand and eyes on the host: `PUT /agent/v1/operations/{id}/weight` gives the
//! running canary its next weight (fenced); `GET /agent/v1/operations/{id}/traffic` reads
//! what the host's `sluice-proxy` counted for the operation's new and previous containers,
//! for the coordinator's analysis.

use axum::extract::{Path, State};
use axum::Json;
use sluice_common::agent_api::{OperationTraffic, OperationView, WeightRequest};
use sluice_common::analysis::exposition::service_traffic;
use sluice_common::problem::{ErrorCode, Problem};

use super::{invalid, op_id, ApiError, JsonBody, Shared};
use crate::runtime::short;

fn no_operation(id: uuid::Uuid) -> ApiError {
    ApiError::from(Problem::new(
        ErrorCode::NotFound,
        format!("no operation {id}"),
    ))
}

pub(super) async fn weight(
    State(a): Shared,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<WeightRequest>,
) -> Result<Json<OperationView>, ApiError> {
    let id = op_id(&id)?;
    if req.weight > 100 {
        return Err(invalid("weight", "must be 0 to 100"));
    }
    match a.ops.set_weight(id, &req.fence, req.weight)? {
        Some(view) => {
            tracing::info!(op = %id, weight = req.weight, "canary weight asked by the coordinator");
            Ok(Json(view))
        }
        None => Err(no_operation(id)),
    }
}

pub(super) async fn traffic(
    State(a): Shared,
    Path(id): Path<String>,
) -> Result<Json<OperationTraffic>, ApiError> {
    let id = op_id(&id)?;
    let rec = a
        .ops
        .record(id)
        .map_err(crate::ops::AdmitError::Store)?
        .ok_or_else(|| no_operation(id))?;
    let text = a.proxy.metrics().await.map_err(|e| {
        ApiError::from(Problem::new(
            ErrorCode::Unavailable,
            format!("sluice-proxy: {e}"),
        ))
    })?;
    let mut targets = service_traffic(&text, rec.view.service.as_str());
    let mut take = |c: &Option<String>| c.as_deref().and_then(|c| targets.remove(short(c)));
    let new = take(&rec.view.container);
    let previous = take(&rec.view.previous_container);
    Ok(Json(OperationTraffic { new, previous }))
}
