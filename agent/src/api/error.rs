//! How every lower layer's error becomes an [`ApiError`] (the error type both daemons
//! share, from `sluice_common::edge`).

use sluice_common::problem::{ErrorCode, Problem};

use crate::ops::AdmitError;
use crate::runtime::{DockerError, ErrorKind};

pub use sluice_common::edge::ApiError;

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
    ApiError::invalid(field, message)
}
