//! The coordinator's side of the HTTP edge: how its own typed errors become problem+json.
//!
//! The error type, the JSON extractor and the fallbacks are the ones both daemons share
//! ([`sluice_common::edge`]); only the mapping of the node layer's [`ProposeError`] lives
//! here, so statuses and codes are decided in one readable place.

use sluice_common::problem::{ErrorCode, Problem};

pub use sluice_common::edge::{method_not_allowed, not_found, optional_json, ApiError, ApiJson};

use crate::node::ProposeError;

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
