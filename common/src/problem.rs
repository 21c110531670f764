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

/// Declares [`ErrorCode`] from one table: variant = (wire name, usual HTTP status, title).
macro_rules! error_codes {
    ($($(#[$doc:meta])* $v:ident = ($name:literal, $status:literal, $title:literal),)*) => {
        /// Stable error codes. Adding one is fine; renaming one breaks clients.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $v,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$v,)*];

            /// The snake_case wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $name,)*
                }
            }

            /// The HTTP status this code is normally sent with.
            pub fn status(self) -> u16 {
                match self {
                    $(Self::$v => $status,)*
                }
            }

            /// A short title, the same for every occurrence of the code (RFC 9457 §3.1.3).
            pub fn title(self) -> &'static str {
                match self {
                    $(Self::$v => $title,)*
                }
            }
        }
    };
}

error_codes! {
    /// The body or query could not be parsed, or a field is invalid.
    InvalidRequest = ("invalid_request", 400, "The request is invalid"),
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge = ("payload_too_large", 413, "The request body is too large"),
    /// The request needs a JSON body.
    UnsupportedMediaType = ("unsupported_media_type", 415, "The request body must be JSON"),
    /// No bearer token or client certificate.
    Unauthenticated = ("unauthenticated", 401, "Authentication is required"),
    /// Authenticated, but the role or scope does not allow this.
    Forbidden = ("forbidden", 403, "Not allowed"),
    /// The thing named in the path does not exist.
    NotFound = ("not_found", 404, "Not found"),
    /// The HTTP method is not supported on this path.
    MethodNotAllowed = ("method_not_allowed", 405, "Method not allowed"),
    /// A lock is held by someone else.
    LockHeld = ("lock_held", 409, "The lock is held by someone else"),
    /// The lock is not held (or the token does not match the current grant).
    LockNotHeld = ("lock_not_held", 409, "The lock is not held with this token"),
    /// The lease lapsed; acquire again.
    LockExpired = ("lock_expired", 409, "The lock's lease has expired"),
    /// An agent refused a command carrying an older fencing token than one it has seen.
    StaleFencingToken = ("stale_fencing_token", 409, "Stale fencing token"),
    /// No port left in the server's range.
    PortsExhausted = ("ports_exhausted", 409, "No free port left"),
    /// The explicit port asked for is taken.
    PortTaken = ("port_taken", 409, "The port is taken"),
    /// An Idempotency-Key was reused with a different request body.
    IdempotencyKeyReused = ("idempotency_key_reused", 422, "Idempotency key reused with a different request"),
    /// `check_index` no longer matches: the service was deployed since the plan.
    ServiceChanged = ("service_changed", 409, "The service changed since the plan"),
    /// The request conflicts with the current state (e.g. an illegal transition).
    Conflict = ("conflict", 409, "Conflict with the current state"),
    /// Pre-flight validation failed (the body lists every failed check).
    ValidationFailed = ("validation_failed", 422, "Pre-flight validation failed"),
    /// The cluster cannot serve this now (no leader, no quorum); retry later.
    Unavailable = ("unavailable", 503, "Temporarily unavailable"),
    /// The operation did not finish in time.
    Timeout = ("timeout", 504, "Timed out"),
    /// Docker on the agent is unreachable or failed.
    DockerUnavailable = ("docker_unavailable", 503, "Docker is unavailable"),
    /// A cluster membership change is still being committed; retry once it is.
    MembershipChangeInProgress = ("membership_change_in_progress", 409, "A membership change is in progress"),
    /// This node is no longer a voting member, so it cannot change the membership.
    NotAVoter = ("not_a_voter", 409, "This node is not a voting member"),
    /// A `blue_green` or `canary` deployment needs a health check (`none` cannot tell a
    /// version that is ready for traffic from one that is not).
    HealthCheckRequired = ("health_check_required", 400, "This strategy needs a health check"),
    /// A bug or an unexpected fault; the log has details.
    Internal = ("internal", 500, "Internal error"),
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
        let mut names = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!((400..600).contains(&c.status()));
            assert!(names.insert(c.as_str()), "{c} named twice");
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
