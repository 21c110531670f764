//! Why the node could not serve a write or a read, and how that answers over HTTP.

use std::time::Duration;

use sluice_common::edge::ApiError;
use sluice_common::problem::{ErrorCode, Problem};

/// Why a write or linearizable read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader, or no quorum.
    #[error("the cluster cannot serve this now: {0}")]
    Unavailable(String),
    /// The deadline passed first; the outcome of a write is unknown.
    #[error("no answer from the cluster within {0:?}")]
    Timeout(Duration),
    /// The leader could not be reached after the request was sent; outcome unknown.
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    /// The leader refused (e.g. an invalid membership change).
    #[error("{0}")]
    Rejected(Box<Problem>),
    /// Raft stopped on this node.
    #[error("raft stopped: {0}")]
    Fatal(String),
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        let detail = e.to_string();
        Self::from(match e {
            ProposeError::Unavailable(_) => Problem::new(ErrorCode::Unavailable, detail),
            // A write that timed out may still commit (e.g. on a minority leader after the
            // partition heals): say so, so neither clients nor forwarding nodes blindly retry.
            ProposeError::Timeout(_) | ProposeError::Forward(_) => {
                Problem::new(ErrorCode::Unavailable, detail).with_extension("outcome_unknown", true)
            }
            ProposeError::Rejected(p) => return Self(p),
            ProposeError::Fatal(_) => Problem::new(ErrorCode::Internal, detail),
        })
    }
}
