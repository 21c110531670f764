//! A [`Problem`] as an HTTP response: the one place both daemons turn an error into a
//! status, a `content-type: application/problem+json` header and a body.

use crate::problem::{Problem, PROBLEM_JSON};

/// The response for `p`, with its status (500 if the status is not a valid code). Every
/// refusal is logged here, once, with its stable `code` as a field (`grep code=lock_held`),
/// inside the request's span; 5xx answers at warn level.
pub fn response(p: &Problem) -> http::Response<String> {
    if p.status >= 500 {
        tracing::warn!(code = %p.code, status = p.status, detail = %p.detail, "answered with a problem");
    } else {
        tracing::info!(code = %p.code, status = p.status, detail = %p.detail, "refused");
    }
    let status =
        http::StatusCode::from_u16(p.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = http::Response::new(serde_json::to_string(p).unwrap_or_default());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(PROBLEM_JSON),
    );
    r
}
