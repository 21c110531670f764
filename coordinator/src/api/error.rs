//! The HTTP edge of errors: every failure leaves here as RFC 9457 problem+json.
//!
//! Lower layers return their own typed errors (`LockError`, `PortError`, `ProposeError`);
//! only this module decides statuses and codes, so the mapping is in one readable place.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sluice_common::locks::LockError;
use sluice_common::names::InvalidValue;
use sluice_common::ports::PortError;
use sluice_common::problem::{ErrorCode, Problem};

use crate::node::ProposeError;

/// An error on its way out as problem+json.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl ApiError {
    /// A problem with `code`'s default status.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self(Box::new(Problem::new(code, detail)))
    }

    /// 404 for a named thing.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} does not exist"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        sluice_common::http_problem::response(&self.0).into_response()
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(Box::new(p))
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        Self::from(Problem::from(e))
    }
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        let detail = e.to_string();
        Self::from(match e {
            LockError::Held { lease } => Problem::new(ErrorCode::LockHeld, detail)
                .with_extension("holder", &lease.holder)
                .with_extension("reason", &lease.reason)
                .with_extension("expires_at", lease.expires_at)
                .with_extension("token", lease.token),
            LockError::NotHeld { .. } => Problem::new(ErrorCode::LockNotHeld, detail),
            LockError::TokenMismatch { current, .. } => {
                Problem::new(ErrorCode::LockNotHeld, detail)
                    .with_extension("current_token", current)
            }
            LockError::Expired { .. } => Problem::new(ErrorCode::LockExpired, detail),
            LockError::ZeroTtl => Problem::new(ErrorCode::InvalidRequest, detail)
                .with_field("ttl", "must be positive"),
            LockError::TokenNotIncreasing { .. } => Problem::new(ErrorCode::Internal, detail),
        })
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        let detail = e.to_string();
        Self::from(match e {
            PortError::Exhausted { server, range } => {
                Problem::new(ErrorCode::PortsExhausted, detail)
                    .with_extension("server", server)
                    .with_extension("range", range)
            }
            PortError::UnknownServer { .. } => Problem::new(ErrorCode::NotFound, detail),
            PortError::Taken { .. } => Problem::new(ErrorCode::PortTaken, detail),
        })
    }
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

/// Like `axum::Json`, but a bad body becomes problem+json naming what is wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // serde's derived structs also accept a JSON array of their fields in order; a
        // request body is an object, nothing else (`[]` must not clear a policy).
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|r| {
                    let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ErrorCode::PayloadTooLarge
                    } else {
                        ErrorCode::InvalidRequest
                    };
                    ApiError::new(code, r.body_text())
                })?;
        require_object(&bytes)?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// Refuses a body that is valid JSON but not an object (an array, a number...).
fn require_object(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body must be a JSON object",
        )),
    }
}

/// Maps axum's JSON rejections onto stable codes.
pub fn json_rejection(r: JsonRejection) -> ApiError {
    let code = match &r {
        JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::InvalidRequest,
    };
    ApiError::new(code, redact_values(&r.body_text()))
}

/// serde's "invalid type: string \"…\", expected …" quotes the offending value, which
/// may be a secret sent in the wrong shape: keep what was expected, drop what was sent.
pub fn redact_values(msg: &str) -> String {
    let mut out = msg.to_string();
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = out.find(marker) {
            if let Some(end) = out[start..].find(", expected") {
                let label = marker.trim_end_matches(": ");
                out.replace_range(start..start + end, label);
            }
        }
    }
    out
}

/// Parses an optional JSON body: empty means `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    require_object(body)?;
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid JSON body: {}", redact_values(&e.to_string())),
        )
    })
}

/// The fallback for unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::from(
        Problem::new(ErrorCode::NotFound, format!("no route for {}", uri.path()))
            .with_instance(uri.path()),
    )
}

/// The fallback for a known path with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::from(
        Problem::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not supported on {}", uri.path()),
        )
        .with_instance(uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::redact_values;

    #[test]
    fn wrongly_typed_values_are_not_echoed() {
        let m = "env.TOKEN.value: invalid type: integer `314159`, expected a string at line 1 column 40";
        let r = redact_values(m);
        assert!(!r.contains("314159"), "{r}");
        assert!(r.contains("invalid type, expected a string"), "{r}");
        let m = "invalid value: string \"hunter2\", expected a duration";
        assert!(!redact_values(m).contains("hunter2"));
        assert_eq!(
            redact_values("missing field `holder`"),
            "missing field `holder`"
        );
    }
}
