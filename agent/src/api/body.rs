//! [`JsonBody`]: the strict JSON extractor every request body goes through.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use sluice_common::problem::{ErrorCode, Problem};

use super::error::{invalid, ApiError};
use super::BODY_LIMIT;

/// A JSON body: `application/json` (415 otherwise), at most [`BODY_LIMIT`] (413), parsed
/// strictly (400 naming the offending field).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
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
            return Err(ApiError::from(Problem::new(
                ErrorCode::UnsupportedMediaType,
                format!("content-type must be application/json, not {ct:?}"),
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from(Problem::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the body exceeds {BODY_LIMIT} bytes"),
                ))
            } else {
                invalid("body", r.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path = e.path().to_string();
        let msg = e.into_inner().to_string();
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
        let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        // serde quotes offending values; environment values may be secrets.
        if path.starts_with("env.") && !msg.starts_with("invalid environment variable name") {
            msg = "must be a string (the value is not shown: environment values may be secret)"
                .into();
        }
        invalid(&path, msg)
    })?;
    de.end().map_err(|e| invalid("body", e.to_string()))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use sluice_common::agent_api::{DeployRequest, RemoveServiceRequest};

    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<DeployRequest>(
            br#"{"fence":{"key":"service/a","token":1},"service":"A"}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "service");
        assert_eq!(e.0.code, ErrorCode::InvalidRequest);
        let e = parse_json::<RemoveServiceRequest>(
            br#"{"fence":{"key":"service/a","token":1},"force":true}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "force");
        let e = parse_json::<RemoveServiceRequest>(br#"{"fence":{"key":"service/a","token":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.0.errors[0].field, "fence.token");
        let e = parse_json::<DeployRequest>(
            br#"{"fence":{"key":"service/a","token":1},"service":"a","image":"a:1","container_port":1,"host_port":2,"health":{"kind":"none"},"env":{"TOKEN":918273645}}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "env.TOKEN");
        assert!(!e.0.to_string().contains("918273645"), "{}", e.0);
        let e =
            parse_json::<RemoveServiceRequest>(br#"{"fence":{"key":"service/a"}}"#).unwrap_err();
        assert_eq!(e.0.errors[0].field, "fence.token");
        let e = parse_json::<RemoveServiceRequest>(b"{").unwrap_err();
        assert_eq!(e.0.errors[0].field, "body");
    }
}
