//! `/v1/cluster`: membership and Raft status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use sluice_common::api::{AddMemberRequest, ClusterStatus};
use sluice_common::problem::ErrorCode;

use super::error::{ApiError, ApiJson};
use super::openapi::{MembershipConflict, NotFound};
use super::App;

/// `GET /v1/cluster`: this node's view.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    operation_id = "getCluster",
    tag = "cluster",
    summary = "This node's Raft view.",
    responses(
        (status = 200, description = "Status.", body = ClusterStatus),
    ),
)]
pub async fn status(State(app): State<App>) -> Json<ClusterStatus> {
    Json(app.node.status())
}

/// `POST /v1/cluster/members`: add a node as a learner, wait for it to catch up, then make
/// it a voter (unless `voter` is false).
#[utoipa::path(
    post,
    path = "/v1/cluster/members",
    operation_id = "addMember",
    tag = "cluster",
    summary = "Add a node as a learner, wait for it to catch up, then make it a voter (unless `voter` is false). Admin.",
    request_body = AddMemberRequest,
    responses(
        (status = 200, description = "The cluster status after the change.", body = ClusterStatus),
        (status = 409, response = MembershipConflict),
    ),
)]
pub async fn add(
    State(app): State<App>,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> Result<(StatusCode, Json<ClusterStatus>), ApiError> {
    if req.id == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "node id 0 is reserved",
        ));
    }
    if req.addr.parse::<std::net::SocketAddr>().is_err() && !req.addr.contains(':') {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("addr {:?} must be host:port", req.addr),
        ));
    }
    app.node.add_member(req.id, req.addr, req.voter).await?;
    // The change may have been made by the leader on our behalf: show it applied here.
    app.node.linearizable().await?;
    Ok((StatusCode::OK, Json(app.node.status())))
}

/// `DELETE /v1/cluster/members/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/cluster/members/{id}",
    operation_id = "removeMember",
    tag = "cluster",
    summary = "Remove a node. Admin.",
    params(
        ("id" = u64, Path, minimum = 1, description = "Raft node id."),
    ),
    responses(
        (status = 200, description = "The cluster status after the change.", body = ClusterStatus),
        (status = 404, response = NotFound),
        (status = 409, response = MembershipConflict),
    ),
)]
pub async fn remove(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<ClusterStatus>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("node id {id:?} is not a number"),
        )
    })?;
    app.node.remove_member(id).await?;
    app.node.linearizable().await?;
    Ok(Json(app.node.status()))
}
