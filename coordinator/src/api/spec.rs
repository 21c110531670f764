//! The container spec's cross-field rules at the edge: a spec its schema cannot fully
//! state is a 400 naming every broken field (`spec.<field>`), before anything is recorded.

use sluice_common::api::CreateDeploymentRequest;
use sluice_common::problem::{ErrorCode, Problem};

use super::error::ApiError;

/// Refuses a request whose container spec breaks a rule, naming every field.
pub(super) fn check_request(req: &CreateDeploymentRequest) -> Result<(), ApiError> {
    let problems = req.spec.problems();
    if problems.is_empty() {
        return Ok(());
    }
    let mut p = Problem::new(
        ErrorCode::InvalidRequest,
        "the container spec has invalid fields",
    );
    for (field, why) in problems {
        p = p.with_field(field, why);
    }
    Err(ApiError::from(p))
}
