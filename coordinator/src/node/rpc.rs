//! Incoming Raft RPC and the internal endpoints other coordinators call (forwarded writes,
//! read index, membership). None of these is for CI; with mutual TLS they accept only
//! coordinator certificates.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use serde::{Deserialize, Serialize};
use sluice_common::problem::{ErrorCode, Problem};

use super::{Empty, Node, Proposal};
use crate::raft::network::unframe_snapshot;
use crate::raft::{NodeId, TypeConfig};
use sluice_common::edge::{ApiError, ApiJson};

/// Snapshot chunks and large append batches need more than axum's 2 MiB default.
const RAFT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The `/raft/*` and `/internal/v1/*` routes.
pub fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/internal/v1/propose", post(propose))
        .route("/internal/v1/read-index", post(read_index))
        .route("/internal/v1/members", post(add_member))
        .route("/internal/v1/members/{id}/remove", post(remove_member))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT))
        .with_state(node)
}

/// A Raft-level error goes out as a 503 problem carrying openraft's error for the peer.
fn reply<T: Serialize, E: Serialize + std::fmt::Display>(
    r: Result<T, RaftError<NodeId, E>>,
) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => ApiError::from(
            Problem::new(ErrorCode::Unavailable, e.to_string()).with_extension("raft_error", &e),
        )
        .into_response(),
    }
}

async fn append(
    State(node): State<Arc<Node>>,
    ApiJson(req): ApiJson<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    let r = node.raft.append_entries(req).await;
    if matches!(
        r,
        Ok(AppendEntriesResponse::Success
            | AppendEntriesResponse::PartialSuccess(_)
            | AppendEntriesResponse::Conflict)
    ) {
        // The sender leads a term this node accepts: readiness counts it as contact.
        node.note_leader_contact();
    }
    reply(r)
}

async fn vote(
    State(node): State<Arc<Node>>,
    ApiJson(req): ApiJson<VoteRequest<NodeId>>,
) -> Response {
    reply(node.raft.vote(req).await)
}

async fn snapshot(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match unframe_snapshot(&body) {
        Ok(req) => reply(node.raft.install_snapshot(req).await),
        Err(e) => ApiError::new(ErrorCode::InvalidRequest, e).into_response(),
    }
}

async fn propose(
    State(node): State<Arc<Node>>,
    ApiJson(p): ApiJson<Proposal>,
) -> Result<Response, ApiError> {
    Ok(Json(node.propose_local(p).await?).into_response())
}

async fn read_index(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    Ok(Json(node.read_index().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    id: NodeId,
    addr: String,
    voter: bool,
}

async fn add_member(
    State(node): State<Arc<Node>>,
    ApiJson(m): ApiJson<AddMember>,
) -> Result<Json<Empty>, ApiError> {
    node.add_member(m.id, m.addr, m.voter).await?;
    Ok(Json(Empty {}))
}

async fn remove_member(
    State(node): State<Arc<Node>>,
    Path(id): Path<NodeId>,
) -> Result<Json<Empty>, ApiError> {
    node.remove_member(id).await?;
    Ok(Json(Empty {}))
}
