//! The `http` data path: one hyper-util auto connection (HTTP/1.1 or HTTP/2 cleartext) per
//! client; each request picks the route's current target when it arrives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::body::RespBody;
use crate::reqbody::ReqBody;
use crate::route::RouteShared;
use crate::runtime::Runtime;
use crate::target::TargetRt;
use crate::upgrade;

/// How long an idle HTTP/1.1 connection stays open once its route or the process drains.
/// Closing an idle keep-alive connection always races a client that sends on it at that
/// instant; a client that keeps sending gets `Connection: close` on its next answer instead
/// and never sees that race. One that stays idle this long is closed.
const DRAIN_IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Per client connection: requests in flight and the last activity (for the idle timeout),
/// and whether answers should close it.
#[derive(Debug)]
struct ConnState {
    inflight: AtomicU64,
    last: Mutex<Instant>,
    draining: AtomicBool,
    h2: AtomicBool,
}

impl ConnState {
    fn touch(&self) {
        *self.last.lock().expect("last lock") = Instant::now();
    }
}

/// Serves one client connection until it closes, is idle too long, or the process drains.
pub async fn serve(rt: Arc<Runtime>, route: Arc<RouteShared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let limits = route.limits;
    let state = Arc::new(ConnState {
        inflight: AtomicU64::new(0),
        last: Mutex::new(Instant::now()),
        draining: AtomicBool::new(false),
        h2: AtomicBool::new(false),
    });
    let svc_state = state.clone();
    let svc_route = route.clone();
    let svc_rt = rt.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let route = svc_route.clone();
        let state = svc_state.clone();
        let rt = svc_rt.clone();
        async move {
            let h1 = req.version() != Version::HTTP_2;
            if !h1 {
                state.h2.store(true, Ordering::SeqCst);
            }
            state.inflight.fetch_add(1, Ordering::SeqCst);
            state.touch();
            let on_end_state = state.clone();
            let on_end: Box<dyn FnOnce() + Send + Sync> = Box::new(move || {
                on_end_state.inflight.fetch_sub(1, Ordering::SeqCst);
                on_end_state.touch();
            });
            let mut resp = forward(&rt, &route, req, peer, on_end).await;
            if h1
                && state.draining.load(Ordering::SeqCst)
                && resp.status() != StatusCode::SWITCHING_PROTOCOLS
            {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let (mut draining, mut shut) = (false, false);
    loop {
        let drain_signal = async {
            tokio::select! {
                _ = rt.graceful.cancelled() => {}
                _ = route.stop.cancelled() => {}
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "client connection ended with an error");
                }
                return;
            }
            _ = drain_signal, if !draining => {
                draining = true;
                state.draining.store(true, Ordering::SeqCst);
                tick = tokio::time::interval(std::time::Duration::from_millis(100));
                // HTTP/2 says goodbye without a race (GOAWAY names the last stream served).
                if state.h2.load(Ordering::SeqCst) {
                    shut = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tick.tick(), if !shut => {
                let idle = state.last.lock().expect("last lock").elapsed();
                let limit = if draining { DRAIN_IDLE_GRACE } else { limits.idle_timeout };
                if state.inflight.load(Ordering::SeqCst) == 0 && idle >= limit {
                    shut = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

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

/// 413: a body over the route's limit, whether its length said so up front or the relay
/// counted past it.
fn payload_too_large() -> Response<RespBody> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body larger than the limit",
    )
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
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
    for n in HOP_BY_HOP {
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

/// Adds the `X-Forwarded-*` headers (appending the peer to an existing `X-Forwarded-For`).
pub fn add_forwarded(h: &mut HeaderMap, peer: SocketAddr, host: Option<HeaderValue>) {
    let ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = host {
        h.insert("x-forwarded-host", host);
    }
}

async fn forward(
    rt: &Runtime,
    route: &Arc<RouteShared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    on_end: Box<dyn FnOnce() + Send + Sync>,
) -> Response<RespBody> {
    let limits = route.limits;
    let end = |resp: Response<RespBody>, on_end: Box<dyn FnOnce() + Send + Sync>| {
        on_end();
        resp
    };
    if req.body().size_hint().lower() > limits.max_body_bytes {
        rt.error(route, None);
        return end(payload_too_large(), on_end);
    }
    let upgrade = wants_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    add_forwarded(&mut headers, peer, host.clone());
    if let Some(h) = host {
        headers.insert(header::HOST, h);
    }
    if let Some(p) = upgrade_proto {
        headers.insert(header::UPGRADE, p);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let hint = body.size_hint();
    let end_stream = body.is_end_stream();
    let slot = Arc::new(Mutex::new(Some(body)));
    let too_large = Arc::new(AtomicBool::new(false));

    let mut last_target: Option<Arc<TargetRt>> = None;
    // One retry after a failed connect; a pick that lost a race with a switch is not an
    // attempt (bounded anyway).
    let (mut attempt, mut races) = (0u32, 0u32);
    while attempt < 2 && races < 8 {
        let Some(target) = route.pick_avoiding(last_target.as_ref()) else {
            rt.error(route, last_target.as_ref());
            return end(
                problem(
                    StatusCode::BAD_GATEWAY,
                    "no_target",
                    "the route has no live target",
                ),
                on_end,
            );
        };
        let Some(client) = target.client() else {
            // Lost a race with a switch: pick from the new set.
            races += 1;
            continue;
        };
        let guard = target.begin_request();
        if !route.is_live(&target) {
            // Switched away between the pick and the count: the drain may already have
            // forgotten it, so pick again.
            drop(guard);
            races += 1;
            continue;
        }
        let uri: Uri = match format!("http://{}{}", target.target.addr, path).parse() {
            Ok(u) => u,
            Err(_) => {
                rt.error(route, Some(&target));
                return end(
                    problem(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "bad request target",
                    ),
                    on_end,
                );
            }
        };
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .version(Version::HTTP_11)
            .body(ReqBody::new(
                slot.clone(),
                hint,
                end_stream,
                limits.max_body_bytes,
                too_large.clone(),
                target.metrics.rx.clone(),
            ))
            .expect("valid request");
        *out.headers_mut() = headers.clone();
        let sent = tokio::time::timeout(limits.response_header_timeout, client.request(out)).await;
        drop(client);
        match sent {
            Ok(Ok(mut resp)) => {
                target
                    .metrics
                    .request(crate::metrics::class(resp.status().as_u16()));
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(cu) = client_upgrade {
                        let tu = hyper::upgrade::on(&mut resp);
                        // The connection is counted before the request stops being.
                        upgrade::spawn(rt, target.begin_connection(), cu, tu);
                    }
                    let (mut p, _) = resp.into_parts();
                    let proto = p.headers.get(header::UPGRADE).cloned();
                    strip_hop_by_hop(&mut p.headers);
                    if let Some(proto) = proto {
                        p.headers.insert(header::UPGRADE, proto);
                        p.headers
                            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    }
                    drop(guard);
                    return end(Response::from_parts(p, RespBody::empty()), on_end);
                }
                let (mut p, body) = resp.into_parts();
                strip_hop_by_hop(&mut p.headers);
                return Response::from_parts(
                    p,
                    RespBody::relayed(
                        body,
                        guard,
                        *route.drain_timeout.read().expect("drain lock"),
                        on_end,
                    ),
                );
            }
            Ok(Err(e)) => {
                let untouched = slot.lock().expect("body slot").is_some();
                if e.is_connect() && untouched && attempt == 0 {
                    attempt += 1;
                    tracing::debug!(error = %e, target = %target.target.name, "connect failed; retrying once");
                    last_target = Some(target);
                    continue;
                }
                rt.error(route, Some(&target));
                if too_large.load(Ordering::SeqCst) {
                    return end(payload_too_large(), on_end);
                }
                let (code, detail) = if e.is_connect() {
                    (
                        "target_unreachable",
                        format!(
                            "cannot connect to target {} at {}",
                            target.target.name, target.target.addr
                        ),
                    )
                } else {
                    (
                        "bad_gateway",
                        format!("target {} failed: {e}", target.target.name),
                    )
                };
                return end(problem(StatusCode::BAD_GATEWAY, code, &detail), on_end);
            }
            Err(_) => {
                rt.error(route, Some(&target));
                return end(
                    problem(
                        StatusCode::GATEWAY_TIMEOUT,
                        "target_timeout",
                        "the target did not answer in time",
                    ),
                    on_end,
                );
            }
        }
    }
    rt.error(route, last_target.as_ref());
    end(
        problem(
            StatusCode::BAD_GATEWAY,
            "target_unreachable",
            "no target could be reached",
        ),
        on_end,
    )
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
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get("connection").is_none());
        assert!(h.get("transfer-encoding").is_none());
        assert!(h.get("x-kept").is_some());
        add_forwarded(
            &mut h,
            "192.0.2.7:5555".parse().unwrap(),
            Some(HeaderValue::from_static("example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
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
