//! The control API's errors as RFC 9457 problem+json, with stable codes.

use serde::{Deserialize, Serialize};

use crate::table::OpError;

/// A problem body (`{type,title,status,detail,code}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemBody {
    /// `urn:sluice:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Constant per code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened.
    #[serde(default)]
    pub detail: String,
    /// The stable code.
    pub code: String,
}

/// `(status, code, title)` of every refusal; codes are never renamed once released.
pub const CODES: &[(u16, &str, &str)] = &[
    (400, "invalid_body", "The request body is invalid"),
    (404, "unknown_service", "No route for this service"),
    (404, "not_found", "Not found"),
    (405, "method_not_allowed", "Method not allowed"),
    (409, "port_busy", "The listen address cannot be bound"),
    (
        422,
        "target_unreachable",
        "A target does not accept connections",
    ),
    (
        422,
        "target_not_loopback",
        "Targets must be on a loopback address",
    ),
    (
        500,
        "persist_failed",
        "The route table could not be written",
    ),
    (503, "retiring", "The proxy is stopping or handing over"),
];

/// The problem for `code` (which must be in [`CODES`]).
pub fn problem(code: &str, detail: impl Into<String>) -> ProblemBody {
    let (status, title) = CODES
        .iter()
        .find(|(_, c, _)| *c == code)
        .map(|(s, _, t)| (*s, *t))
        .unwrap_or((500, "Internal error"));
    ProblemBody {
        type_uri: format!("urn:sluice:problem:{code}"),
        title: title.to_string(),
        status,
        detail: detail.into(),
        code: code.to_string(),
    }
}

/// Maps a refused change to its problem.
pub fn from_op(e: &OpError) -> ProblemBody {
    let code = match e {
        OpError::UnknownService(_) => "unknown_service",
        OpError::PortBusy(_) => "port_busy",
        OpError::TargetUnreachable(_) => "target_unreachable",
        OpError::NotLoopback(_) => "target_not_loopback",
        OpError::InvalidBody(_) => "invalid_body",
        OpError::Persist(_) => "persist_failed",
        OpError::Retiring => "retiring",
    };
    problem(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_code_and_status() {
        let p = from_op(&OpError::PortBusy("x".into()));
        assert_eq!((p.status, p.code.as_str()), (409, "port_busy"));
        assert_eq!(from_op(&OpError::NotLoopback("x".into())).status, 422);
        assert_eq!(from_op(&OpError::TargetUnreachable("x".into())).status, 422);
        assert_eq!(from_op(&OpError::UnknownService("x".into())).status, 404);
        assert_eq!(from_op(&OpError::InvalidBody("x".into())).status, 400);
        assert_eq!(p.type_uri, "urn:sluice:problem:port_busy");
        let mut codes: Vec<_> = CODES.iter().map(|c| c.1).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len());
    }
}
