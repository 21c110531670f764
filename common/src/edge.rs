//! The HTTP edge both daemons (and the Raft RPC) share: one error type that leaves as
//! RFC 9457 problem+json, and one strict JSON body extractor with one rule for secrets.
//!
//! Lower layers return their own typed errors; each daemon maps them onto [`ApiError`] with
//! `From` impls in one module of its own, so statuses and codes are decided in one place
//! per daemon, and the wire shape in one place for both.
//!
//! Bodies ([`ApiJson`], [`optional_json`]): `application/json` or `*+json` (415 otherwise),
//! within the router's body limit (413), a JSON object (never an array or a scalar: serde's
//! derived structs would take an array of their fields in order), parsed strictly (400
//! naming the offending field as `a.b.c`). The one redaction rule: an error never echoes a
//! value that was sent — serde quotes offending values, and a value may be a secret sent in
//! the wrong shape — only what was expected.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::locks::LockError;
use crate::names::InvalidValue;
use crate::ports::PortError;
use crate::problem::{ErrorCode, Problem};

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

    /// 400 naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::from(
            Problem::new(ErrorCode::InvalidRequest, format!("{field}: {message}"))
                .with_field(field, message),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::http_problem::response(&self.0).into_response()
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

/// A JSON object body, parsed strictly (see the module's rules).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(mime == "application/json" || mime.ends_with("+json")) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("content-type must be application/json, not {ct:?}"),
            ));
        }
        let bytes = body(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// The raw body, within the router's limit.
pub async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the body exceeds this server's limit",
            )
        } else {
            ApiError::invalid("body", r.body_text())
        }
    })
}

/// Parses an optional JSON object body: empty (or whitespace) means `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(bytes)
}

/// Parses a JSON object strictly: the error names the field, never the value sent.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(ApiError::invalid("body", "must be a JSON object")),
        None => {
            return Err(ApiError::invalid(
                "body",
                "must be a JSON object, not empty",
            ))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let (path, msg) = field_error(e.path().to_string(), &e.into_inner().to_string());
        ApiError::invalid(&path, msg)
    })?;
    de.end()
        .map_err(|e| ApiError::invalid("body", redact_values(&e.to_string())))?;
    Ok(v)
}

/// Where a parse error points, and what it says without the value sent.
fn field_error(mut path: String, msg: &str) -> (String, String) {
    // serde names a missing field in the message, with the path of its parent.
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        path = match path.as_str() {
            "." | "?" => name.to_string(),
            parent => format!("{parent}.{name}"),
        };
    }
    if path == "." || path == "?" {
        path = "body".into();
    }
    // Drop serde's "at line 1 column 9": the field says where.
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    (path, redact_values(msg))
}

/// serde's "invalid type: string \"…\", expected …" quotes the offending value: keep what
/// was expected, drop what was sent.
pub fn redact_values(msg: &str) -> String {
    let mut out = msg.to_string();
    for marker in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(start) = out.find(marker) {
            if let Some(end) = out[start..].find(", expected") {
                let label = marker.trim_end_matches([':', ' ']);
                out.replace_range(start..start + end, label);
            }
        }
    }
    out
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
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        #[serde(default)]
        env: BTreeMap<String, Inner>,
    }

    #[derive(Debug, serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        value: String,
    }

    fn field_of(e: &ApiError) -> (String, String) {
        let f = &e.0.errors[0];
        (f.field.clone(), f.message.clone())
    }

    #[test]
    fn a_wrongly_typed_secret_is_not_echoed() {
        let e = parse::<Body>(br#"{"name":"a","env":{"TOKEN":{"value":314159}}}"#).unwrap_err();
        let (field, msg) = field_of(&e);
        assert_eq!(field, "env.TOKEN.value");
        assert!(
            !msg.contains("314159") && !e.0.detail.contains("314159"),
            "{msg}"
        );
        assert!(msg.contains("invalid type, expected a string"), "{msg}");
        let e = parse::<Body>(br#"{"name":["hunter2"]}"#).unwrap_err();
        assert!(!format!("{:?}", e.0).contains("hunter2"));
    }

    #[test]
    fn fields_are_named() {
        let e = parse::<Body>(br#"{"env":{}}"#).unwrap_err();
        assert_eq!(field_of(&e).0, "name");
        let e = parse::<Body>(br#"{"name":"a","nmae":"b"}"#).unwrap_err();
        assert!(field_of(&e).1.contains("unknown field `nmae`"), "{e:?}");
        let e = parse::<Body>(br#"{"name":"a","env":{"X":{}}}"#).unwrap_err();
        assert_eq!(field_of(&e).0, "env.X.value");
    }

    #[test]
    fn only_objects() {
        for body in [&b"[\"a\"]"[..], b"3", b"\"x\"", b"null", b""] {
            let e = parse::<Body>(body).unwrap_err();
            assert_eq!(field_of(&e).0, "body", "{body:?}");
        }
        assert!(parse::<Body>(br#"{"name":"a"} trailing"#).is_err());
        let b = parse::<Body>(br#" {"name":"a","env":{"X":{"value":"v"}}}"#).unwrap();
        assert_eq!((b.name.as_str(), b.env["X"].value.as_str()), ("a", "v"));
        assert_eq!(optional_json::<Body>(b"  ").unwrap().name, "");
        assert!(optional_json::<Body>(b"[]").is_err());
    }

    #[test]
    fn redaction() {
        let m = "invalid value: string \"hunter2\", expected a duration";
        assert_eq!(redact_values(m), "invalid value, expected a duration");
        assert_eq!(
            redact_values("missing field `holder`"),
            "missing field `holder`"
        );
    }
}
