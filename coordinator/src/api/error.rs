//! The coordinator's side of the HTTP edge.
//!
//! The error type, the JSON extractor and the fallbacks are the ones both daemons share
//! ([`sluice_common::edge`]); each layer maps its own typed errors onto [`ApiError`] next
//! to where they are defined (the node layer's in `node::error`).

pub use sluice_common::edge::{method_not_allowed, not_found, optional_json, ApiError, ApiJson};

use crate::state::Response;

/// A state-machine answer of another kind than the command's: a bug, answered as a 500.
pub fn unexpected(r: Response) -> ApiError {
    ApiError::new(
        sluice_common::problem::ErrorCode::Internal,
        format!("unexpected state machine response {r:?}"),
    )
}
