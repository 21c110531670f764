//! [`ApiError`]: a problem+json response, and how every lower layer's error becomes one.

use axum::response::{IntoResponse, Response};
use sluice_common::problem::{ErrorCode, Problem};

use crate::ops::AdmitError;
use crate::runtime::{DockerError, ErrorKind};

/// A problem, as a response.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(Box::new(p))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        sluice_common::http_problem::response(&self.0).into_response()
    }
}

impl From<DockerError> for ApiError {
    fn from(e: DockerError) -> Self {
        docker_problem(e.kind(), e.to_string())
    }
}

/// The problem of a Docker failure of class `kind` (also of one an operation recorded).
pub fn docker_problem(kind: ErrorKind, detail: String) -> ApiError {
    ApiError::from(match kind {
        ErrorKind::Unavailable => Problem::new(ErrorCode::DockerUnavailable, detail),
        ErrorKind::NotFound => Problem::new(ErrorCode::NotFound, detail),
        ErrorKind::Refused => Problem::new(ErrorCode::DockerUnavailable, detail).with_status(502),
    })
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> Self {
        let p = match &e {
            AdmitError::Stale(s) => Problem::new(ErrorCode::StaleFencingToken, e.to_string())
                .with_extension("key", &s.key)
                .with_extension("offered", s.offered)
                .with_extension("highest", s.highest),
            AdmitError::Reused(_) => Problem::new(ErrorCode::IdempotencyKeyReused, e.to_string()),
            AdmitError::Busy { running, .. } => Problem::new(ErrorCode::Conflict, e.to_string())
                .with_extension("running_operation", running),
            AdmitError::Store(_) => {
                tracing::error!(error = %e, "storage failure");
                Problem::new(
                    ErrorCode::Internal,
                    "the agent could not persist the request",
                )
            }
        };
        Self::from(p)
    }
}

/// A 400 naming the offending field.
pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::from(
        Problem::new(ErrorCode::InvalidRequest, format!("{field}: {message}"))
            .with_field(field, message),
    )
}
