//! What the `http` path does to headers (hop-by-hop headers out, `X-Forwarded-*` in), and
//! the answers the proxy makes itself (problem+json).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};

use crate::body::RespBody;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A problem+json answer made by the proxy.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response<RespBody> {
    let body = serde_json::json!({
        "type": format!("urn:sluice:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/problem+json")
        .body(RespBody::full(Bytes::from(body.to_string())))
        .expect("valid response")
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// Whether a request asks for an HTTP/1.1 upgrade (`Connection: upgrade` + `Upgrade:`).
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Adds the `X-Forwarded-*` headers: the peer's IP `ip` (appended to an existing
/// `X-Forwarded-For`), `http`, and the host the client asked for.
pub fn add_forwarded(h: &mut HeaderMap, ip: &HeaderValue, host: Option<HeaderValue>) {
    let prev = h
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.trim().is_empty());
    let xff = match prev {
        Some(prev) => {
            let mut b = BytesMut::with_capacity(prev.len() + 2 + ip.len());
            b.put_slice(prev.as_bytes());
            b.put_slice(b", ");
            b.put_slice(ip.as_bytes());
            HeaderValue::from_maybe_shared(b.freeze()).ok()
        }
        None => Some(ip.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert!(h.get("transfer-encoding").is_none() && h.get("keep-alive").is_none());
        assert!(h.get("x-kept").is_some());
        let ip = HeaderValue::from_static("192.0.2.7");
        add_forwarded(&mut h, &ip, Some(HeaderValue::from_static("example.com")));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        let mut fresh = HeaderMap::new();
        fresh.insert("x-forwarded-for", HeaderValue::from_static(" "));
        add_forwarded(&mut fresh, &ip, None);
        assert_eq!(fresh["x-forwarded-for"], "192.0.2.7");
        assert!(fresh.get("x-forwarded-host").is_none());
    }

    #[test]
    fn upgrade_detection() {
        let r = Request::builder()
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(wants_upgrade(&r));
        let r = Request::builder()
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(!wants_upgrade(&r));
    }
}
