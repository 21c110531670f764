//! Forwarding one HTTP request: pick a target, take an idle pooled connection to it (or
//! connect), send, relay the answer. A failed connect is retried once on another target; a
//! pooled connection that turns out closed before it took the request is replaced by
//! another to the same target, as hyper-util's pool did.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::body::RespBody;
use crate::conn::{ClientConn, InFlight};
use crate::headers::{add_forwarded, problem, strip_hop_by_hop, wants_upgrade};
use crate::pool::Upstream;
use crate::reqbody::{is_too_large, ReqBody};
use crate::target::{RequestGuard, TargetRt};
use crate::upgrade;

fn too_large() -> Response<RespBody> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body larger than the limit",
    )
}

/// The request target as sent to a target: origin form (`/path?query`). `None` when there
/// is no path to send (`OPTIONS *`).
fn origin_form(uri: Uri) -> Option<Uri> {
    if uri.scheme().is_none() && uri.authority().is_none() {
        // HTTP/1.1's usual form already: kept as it is.
        return uri.path().starts_with('/').then_some(uri);
    }
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    pq.as_str().starts_with('/').then(|| Uri::from(pq))
}

/// Forwards `req`, which came on `c`.
pub async fn forward(c: &Arc<ClientConn>, mut req: Request<Incoming>) -> Response<RespBody> {
    let inflight = c.begin();
    let (rt, route) = (&c.rt, &c.route);
    let limits = route.limits;
    if req.body().size_hint().lower() > limits.max_body_bytes {
        rt.error(route, None);
        return too_large();
    }
    let upgrade = wants_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    let host = headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let upgrade_proto = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    add_forwarded(&mut headers, &c.peer_ip, host.clone());
    let has_host = host.is_some();
    if let Some(h) = host {
        headers.insert(header::HOST, h);
    }
    if let Some(p) = upgrade_proto {
        headers.insert(header::UPGRADE, p);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // Built once; a retry sends the same request (its body untouched).
    let mut out = origin_form(parts.uri).map(|uri| {
        let mut r = Request::new(ReqBody::new(body, limits.max_body_bytes));
        *r.method_mut() = parts.method;
        *r.uri_mut() = uri;
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = headers;
        r
    });

    let mut last_target: Option<Arc<TargetRt>> = None;
    // One retry after a failed connect.
    let mut attempt = 0u32;
    while attempt < 2 {
        let Some(guard) = route.begin_request(last_target.as_ref()) else {
            rt.error(route, last_target.as_ref());
            return problem(
                StatusCode::BAD_GATEWAY,
                "no_target",
                "the route has no live target",
            );
        };
        let target = &guard.target;
        let Some(mut req) = out.take() else {
            rt.error(route, Some(target));
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "bad request target",
            );
        };
        if !has_host {
            req.headers_mut()
                .insert(header::HOST, target.authority.clone());
        }
        req.body_mut().count_into(&target.metrics.rx);
        let sent = tokio::time::timeout(
            limits.response_header_timeout,
            exchange(target, req, upgrade, limits.connect_timeout),
        )
        .await;
        match sent {
            Ok(Ok((resp, up))) => return answer(c, resp, up, guard, inflight, client_upgrade),
            Ok(Err(Failed::Connect(e, req))) => {
                if attempt == 0 {
                    attempt += 1;
                    tracing::debug!(error = %e, target = %target.target.name, "connect failed; retrying once");
                    out = Some(*req);
                    last_target = Some(target.clone());
                    continue;
                }
                rt.error(route, Some(target));
                let detail = format!(
                    "cannot connect to target {} at {}",
                    target.target.name, target.target.addr
                );
                return problem(StatusCode::BAD_GATEWAY, "target_unreachable", &detail);
            }
            Ok(Err(Failed::Http(e))) => {
                rt.error(route, Some(target));
                if is_too_large(&e) {
                    return too_large();
                }
                let detail = format!("target {} failed: {e}", target.target.name);
                return problem(StatusCode::BAD_GATEWAY, "bad_gateway", &detail);
            }
            Err(_) => {
                rt.error(route, Some(target));
                return problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "target_timeout",
                    "the target did not answer in time",
                );
            }
        }
    }
    rt.error(route, last_target.as_ref());
    problem(
        StatusCode::BAD_GATEWAY,
        "target_unreachable",
        "no target could be reached",
    )
}

/// Why an exchange with a target failed.
enum Failed {
    /// No connection: the request was not sent and comes back (boxed: a rare path).
    Connect(std::io::Error, Box<Request<ReqBody>>),
    /// The connection failed the request.
    Http(hyper::Error),
}

/// Sends `req` to `target` on a pooled connection (a fresh one for an upgrade, or when
/// none is idle) and waits for the answer's head.
async fn exchange(
    target: &TargetRt,
    mut req: Request<ReqBody>,
    upgrade: bool,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Upstream), Failed> {
    loop {
        let pooled = if upgrade {
            None
        } else {
            target.pool.checkout().await
        };
        let mut up = match pooled {
            Some(up) => up,
            None => match Upstream::connect(target.target.addr, connect_timeout, upgrade).await {
                Ok(up) => up,
                Err(e) => return Err(Failed::Connect(e, Box::new(req))),
            },
        };
        match up.send(req).await {
            Ok(resp) => return Ok((resp, up)),
            Err(mut e) => match e.take_message() {
                // A pooled connection that closed before it took the request: another one.
                Some(back) if up.reused => req = back,
                _ => return Err(Failed::Http(e.into_error())),
            },
        }
    }
}

/// The answer's head came: relays it (or hands an upgrade to its relay).
fn answer(
    c: &ClientConn,
    mut resp: Response<Incoming>,
    up: Upstream,
    guard: RequestGuard,
    inflight: InFlight,
    client_upgrade: Option<OnUpgrade>,
) -> Response<RespBody> {
    let target = &guard.target;
    target.metrics.answered(resp.status().as_u16());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(cu) = client_upgrade {
            let tu = hyper::upgrade::on(&mut resp);
            // The connection is counted before the request stops being.
            upgrade::spawn(&c.rt, target.begin_connection(), cu, tu);
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
        drop(inflight);
        return Response::from_parts(p, RespBody::empty());
    }
    let (mut p, body) = resp.into_parts();
    strip_hop_by_hop(&mut p.headers);
    let drain_timeout = if target.is_cut() {
        *c.route.drain_timeout.read().expect("drain lock")
    } else {
        Duration::ZERO
    };
    Response::from_parts(
        p,
        RespBody::relayed(body, guard, Some(up), inflight, drain_timeout),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets_go_out_in_origin_form() {
        let f = |s: &str| origin_form(s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(f("/a?b=1").as_deref(), Some("/a?b=1"));
        assert_eq!(f("http://example.com/a?b").as_deref(), Some("/a?b"));
        assert_eq!(f("http://example.com").as_deref(), Some("/"));
        assert_eq!(f("*"), None);
    }
}
