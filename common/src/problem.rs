//! RFC 9457 problem details, shared by every Sluice API.
//!
//! Every error response is `application/problem+json` with a stable machine-readable
//! `code` (snake_case, never renamed once released) beside the standard members. Clients
//! branch on `code`; humans read `title` and `detail`. The `type` member is a URN built from
//! the code, so it is stable and needs no web page to exist.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::InvalidValue;

/// The media type of a problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Stable error codes. Adding one is fine; renaming one breaks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body or query could not be parsed, or a field is invalid.
    InvalidRequest,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The request needs a JSON body.
    UnsupportedMediaType,
    /// No bearer token or client certificate.
    Unauthenticated,
    /// Authenticated, but the role or scope does not allow this.
    Forbidden,
    /// The thing named in the path does not exist.
    NotFound,
    /// The HTTP method is not supported on this path.
    MethodNotAllowed,
    /// A lock is held by someone else.
    LockHeld,
    /// The lock is not held (or the token does not match the current grant).
    LockNotHeld,
    /// The lease lapsed; acquire again.
    LockExpired,
    /// An agent refused a command carrying an older fencing token than one it has seen.
    StaleFencingToken,
    /// No port left in the server's range.
    PortsExhausted,
    /// The explicit port asked for is taken.
    PortTaken,
    /// An Idempotency-Key was reused with a different request body.
    IdempotencyKeyReused,
    /// The request conflicts with the current state (e.g. an illegal transition).
    Conflict,
    /// Pre-flight validation failed (the body lists every failed check).
    ValidationFailed,
    /// The cluster cannot serve this now (no leader, no quorum); retry later.
    Unavailable,
    /// The operation did not finish in time.
    Timeout,
    /// Docker on the agent is unreachable or failed.
    DockerUnavailable,
    /// A cluster membership change is still being committed; retry once it is.
    MembershipChangeInProgress,
    /// This node is no longer a voting member, so it cannot change the membership.
    NotAVoter,
    /// A bug or an unexpected fault; the log has details.
    Internal,
}

impl ErrorCode {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::LockHeld => "lock_held",
            Self::LockNotHeld => "lock_not_held",
            Self::LockExpired => "lock_expired",
            Self::StaleFencingToken => "stale_fencing_token",
            Self::PortsExhausted => "ports_exhausted",
            Self::PortTaken => "port_taken",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Conflict => "conflict",
            Self::ValidationFailed => "validation_failed",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::DockerUnavailable => "docker_unavailable",
            Self::MembershipChangeInProgress => "membership_change_in_progress",
            Self::NotAVoter => "not_a_voter",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status this code is normally sent with.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::LockHeld
            | Self::LockNotHeld
            | Self::LockExpired
            | Self::StaleFencingToken
            | Self::PortsExhausted
            | Self::PortTaken
            | Self::MembershipChangeInProgress
            | Self::NotAVoter
            | Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::IdempotencyKeyReused | Self::ValidationFailed => 422,
            Self::Internal => 500,
            Self::DockerUnavailable | Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// A short title, the same for every occurrence of the code (RFC 9457 §3.1.3).
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => "The request is invalid",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnsupportedMediaType => "The request body must be JSON",
            Self::Unauthenticated => "Authentication is required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::LockHeld => "The lock is held by someone else",
            Self::LockNotHeld => "The lock is not held with this token",
            Self::LockExpired => "The lock's lease has expired",
            Self::StaleFencingToken => "Stale fencing token",
            Self::PortsExhausted => "No free port left",
            Self::PortTaken => "The port is taken",
            Self::IdempotencyKeyReused => "Idempotency key reused with a different request",
            Self::Conflict => "Conflict with the current state",
            Self::ValidationFailed => "Pre-flight validation failed",
            Self::Unavailable => "Temporarily unavailable",
            Self::Timeout => "Timed out",
            Self::DockerUnavailable => "Docker is unavailable",
            Self::MembershipChangeInProgress => "A membership change is in progress",
            Self::NotAVoter => "This node is not a voting member",
            Self::Internal => "Internal error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// A JSON pointer or dotted path to the field (`/image`, `env.DATABASE_URL`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:sluice:problem:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short, constant per code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time, for a human.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The request path, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// Invalid fields, when the problem is bad input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extension members (e.g. the current lock holder), flattened into the object.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl Problem {
    /// A problem with the code's default status and title.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("urn:sluice:problem:{}", code.as_str()),
            title: code.title().to_string(),
            status: code.status(),
            detail: detail.into(),
            instance: None,
            code,
            errors: Vec::new(),
            extensions: BTreeMap::new(),
        }
    }

    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds an invalid field.
    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Adds an extension member.
    pub fn with_extension(mut self, key: &str, value: impl Serialize) -> Self {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.extensions.insert(key.to_string(), v);
        self
    }

    /// Sets the instance (request path).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.code, self.detail)?;
        for e in &self.errors {
            write!(f, "; {}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl From<InvalidValue> for Problem {
    fn from(e: InvalidValue) -> Self {
        Problem::new(ErrorCode::InvalidRequest, e.to_string()).with_field(e.what, e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9457_shape() {
        let p = Problem::new(ErrorCode::LockHeld, "service/api is held by ci-7")
            .with_instance("/v1/locks/service/api")
            .with_extension("holder", "ci-7");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:sluice:problem:lock_held");
        assert_eq!(v["title"], "The lock is held by someone else");
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], "lock_held");
        assert_eq!(v["holder"], "ci-7");
        assert_eq!(v["instance"], "/v1/locks/service/api");
        assert!(v.get("errors").is_none());
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn every_code_is_a_client_or_server_error_with_a_stable_name() {
        let codes = [
            ErrorCode::InvalidRequest,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::LockHeld,
            ErrorCode::LockNotHeld,
            ErrorCode::LockExpired,
            ErrorCode::StaleFencingToken,
            ErrorCode::PortsExhausted,
            ErrorCode::PortTaken,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::Conflict,
            ErrorCode::ValidationFailed,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::DockerUnavailable,
            ErrorCode::Internal,
        ];
        for c in codes {
            assert!((400..600).contains(&c.status()));
            // serde and as_str agree, so the wire name is defined in one visible place.
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(ErrorCode::StaleFencingToken.as_str(), "stale_fencing_token");
        assert_eq!(ErrorCode::PortsExhausted.as_str(), "ports_exhausted");
    }

    #[test]
    fn invalid_value_becomes_a_field_error() {
        let e = crate::names::ServiceName::parse("API").unwrap_err();
        let p = Problem::from(e);
        assert_eq!(p.status, 400);
        assert_eq!(p.errors[0].field, "service name");
        assert!(p.detail.contains("\"API\""));
    }
}
