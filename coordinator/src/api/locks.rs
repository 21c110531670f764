//! `/v1/locks`: leases fenced by Raft log indices.
//!
//! Keys contain slashes (`service/api`), so they are the tail of the path. Acquire is
//! `POST`, renew `PATCH` (with the token), release `DELETE ?token=N`.

use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_common::api::{AcquireLockRequest, LockList, LockView, RenewLockRequest};
use sluice_common::locks::{Acquire, FencingToken, LockError};
use sluice_common::names::LockKey;
use sluice_common::problem::ErrorCode;
use sluice_common::time::Timestamp;

use super::auth::Caller;
use super::error::{unexpected, ApiError, ApiJson};
use super::openapi::{LockConflict, LockKeyPath, NotFound};
use super::App;
use crate::state::{Command, Response};

fn lock_outcome(r: Response) -> Result<LockView, ApiError> {
    match r {
        Response::Lock { outcome } => Ok(outcome?.into()),
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/locks/{key}`: take the lock, waiting up to `wait` if it is held.
#[utoipa::path(
    post,
    path = "/v1/locks/{*key}",
    operation_id = "acquireLock",
    tag = "locks",
    summary = "Acquire, waiting up to `wait` while it is held. Deployers may lock `service/<name>` only within their scope.",
    params(LockKeyPath),
    request_body = AcquireLockRequest,
    responses(
        (status = 201, description = "Granted.", body = LockView),
        (status = 409, response = LockConflict),
    ),
)]
pub async fn acquire(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<AcquireLockRequest>,
) -> Result<(StatusCode, Json<LockView>), ApiError> {
    let key = LockKey::parse(&key)?;
    let wait = req.wait.map_or(Duration::ZERO, |w| w.get());
    let deadline = Instant::now() + wait;
    let mut applied = app.node.applied_watch();
    let mut waiting = None;
    loop {
        // While this node sees a live holder and there is time left, wait instead of
        // proposing entries that would be refused. This node may lag the leader, so it never
        // answers 409 from its own view: the final word is always a proposal.
        let now = Timestamp::from_system(SystemTime::now());
        let seen = app.node.read(|a| {
            a.state
                .locks
                .get(&key, a.state.clock.now().max(now))
                .cloned()
        });
        let outcome = match seen {
            Some(lease) if Instant::now() < deadline => Err(LockError::Held {
                lease: Box::new(lease),
            }),
            _ => {
                let r = app
                    .node
                    .propose(
                        &caller.actor,
                        Command::AcquireLock {
                            acquire: Acquire {
                                key: key.clone(),
                                holder: req.holder.clone(),
                                reason: req.reason.clone(),
                                ttl: req.ttl.get(),
                            },
                        },
                    )
                    .await?;
                match r {
                    Response::Lock { outcome } => outcome,
                    other => return Err(unexpected(other)),
                }
            }
        };
        match outcome {
            Ok(lease) => return Ok((StatusCode::CREATED, Json(lease.into()))),
            Err(LockError::Held { lease }) if Instant::now() < deadline => {
                waiting.get_or_insert_with(|| app.counters.lock_wait());
                // Wake when anything is applied (a release), when the lease would lapse, or
                // at the deadline, whichever comes first.
                let lapse = lease.expires_at.since(now) + Duration::from_millis(5);
                let until = deadline.min(Instant::now() + lapse);
                tokio::select! {
                    _ = applied.changed() => {}
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `PATCH /v1/locks/{key}`: renew (compare-and-set on the token).
#[utoipa::path(
    patch,
    path = "/v1/locks/{*key}",
    operation_id = "renewLock",
    tag = "locks",
    summary = "Renew (compare-and-set on the token).",
    params(LockKeyPath),
    request_body = RenewLockRequest,
    responses(
        (status = 200, description = "Renewed.", body = LockView),
        (status = 409, response = LockConflict),
    ),
)]
pub async fn renew(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<RenewLockRequest>,
) -> Result<Json<LockView>, ApiError> {
    let key = LockKey::parse(&key)?;
    let r = app
        .node
        .propose(
            &caller.actor,
            Command::RenewLock {
                key,
                token: req.token,
                ttl: req.ttl.get(),
            },
        )
        .await?;
    Ok(Json(lock_outcome(r)?))
}

/// The release query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseQuery {
    token: String,
}

/// `DELETE /v1/locks/{key}?token=N`: release (compare-and-set on the token).
#[utoipa::path(
    delete,
    path = "/v1/locks/{*key}",
    operation_id = "releaseLock",
    tag = "locks",
    summary = "Release (compare-and-set on the token).",
    params(
        LockKeyPath,
        ("token" = FencingToken, Query, description = "The fencing token of the grant being released."),
    ),
    responses(
        (status = 200, description = "The released lease.", body = LockView),
        (status = 409, response = LockConflict),
    ),
)]
pub async fn release(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    query: Result<Query<ReleaseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LockView>, ApiError> {
    let key = LockKey::parse(&key)?;
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{}; pass ?token=N", e.body_text()),
        )
    })?;
    let token = q.token.parse::<u64>().map(FencingToken).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("token {:?} is not a number", q.token),
        )
    })?;
    let r = app
        .node
        .propose(&caller.actor, Command::ReleaseLock { key, token })
        .await?;
    Ok(Json(lock_outcome(r)?))
}

/// `GET /v1/locks/{key}`: the live lease (linearizable).
#[utoipa::path(
    get,
    path = "/v1/locks/{*key}",
    operation_id = "getLock",
    tag = "locks",
    summary = "The live lease on a key (linearizable).",
    params(LockKeyPath),
    responses(
        (status = 200, description = "The lease.", body = LockView),
        (status = 404, response = NotFound),
    ),
)]
pub async fn get(
    State(app): State<App>,
    Path(key): Path<String>,
) -> Result<Json<LockView>, ApiError> {
    let key = LockKey::parse(&key)?;
    app.node.linearizable().await?;
    let now = Timestamp::from_system(SystemTime::now());
    app.node
        .read(|a| {
            a.state
                .locks
                .get(&key, a.state.clock.now().max(now))
                .cloned()
        })
        .map(|l| Json(l.into()))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("lock {key} is not held")))
}

/// `GET /v1/locks`: every live lease (linearizable).
#[utoipa::path(
    get,
    path = "/v1/locks",
    operation_id = "listLocks",
    tag = "locks",
    summary = "Every live lease (linearizable).",
    responses(
        (status = 200, description = "Live leases.", body = LockList),
    ),
)]
pub async fn list(State(app): State<App>) -> Result<Json<LockList>, ApiError> {
    app.node.linearizable().await?;
    let now = Timestamp::from_system(SystemTime::now());
    let locks = app.node.read(|a| {
        a.state
            .locks
            .live(a.state.clock.now().max(now))
            .cloned()
            .map(LockView::from)
            .collect()
    });
    Ok(Json(LockList { locks }))
}
