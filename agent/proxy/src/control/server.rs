//! The control socket: peer credentials checked on every connection, then HTTP/1.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sluice_common::names::ServiceName;
use sluice_common::proxy::{ProxyStatus, RouteSpec, TargetsUpdate};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::problem::{from_op, problem, ProblemBody};
use super::wire::{collect, Full};
use crate::listener::accept_until;
use crate::runtime::Runtime;
use crate::table::{self, Routes};

/// Largest control request body.
const MAX_BODY: usize = 1024 * 1024;

/// Who may use the socket: root, the proxy's own uid, and these.
#[derive(Debug, Clone)]
pub struct Access {
    /// Extra uids (`--control-uid`).
    pub uids: Vec<u32>,
}

impl Access {
    /// Whether `uid` may use the socket.
    pub fn allows(&self, uid: u32) -> bool {
        uid == 0 || uid == rustix::process::getuid().as_raw() || self.uids.contains(&uid)
    }
}

/// Binds the control socket at `path` (mode 0660), replacing a stale file.
pub fn bind(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves the control API until `stop` is cancelled.
pub fn spawn(
    routes: Arc<Routes>,
    listener: UnixListener,
    access: Access,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let failed = |e: &std::io::Error| tracing::warn!(error = %e, "control accept failed");
        while let Some((stream, _)) = accept_until(&stop, || listener.accept(), &failed).await {
            match stream.peer_cred() {
                Ok(c) if access.allows(c.uid()) => {}
                Ok(c) => {
                    tracing::warn!(
                        uid = c.uid(),
                        "control connection from a uid that may not use it: closed"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no peer credentials on a control connection: closed");
                    continue;
                }
            }
            let routes = routes.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let routes = routes.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&routes, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(serde_json::to_vec(body).expect("serializes")))
        .expect("valid response")
}

fn refuse(p: ProblemBody) -> Response<Full> {
    Response::builder()
        .status(StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/problem+json")
        .body(Full::new(serde_json::to_vec(&p).expect("serializes")))
        .expect("valid response")
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ProblemBody> {
    serde_json::from_slice(body).map_err(|e| problem("invalid_body", e.to_string()))
}

/// The routes of the API.
async fn handle(routes: &Routes, req: Request<Incoming>) -> Response<Full> {
    let rt = &routes.rt;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body = match collect(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return refuse(problem("invalid_body", e)),
    };
    let service =
        |s: &str| ServiceName::parse(s).map_err(|e| problem("unknown_service", e.to_string()));
    let r: Result<Response<Full>, ProblemBody> = async {
        match (&method, segs.as_slice()) {
            (&Method::GET, ["v1", "status"]) => {
                let routes = routes.table.lock().await.routes.len();
                Ok(json(
                    StatusCode::OK,
                    &ProxyStatus {
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        pid: std::process::id(),
                        routes,
                        uptime_ms: rt.started.elapsed().as_millis() as u64,
                    },
                ))
            }
            (&Method::GET, ["metrics"]) => Ok(Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(rt.metrics.render()))
                .expect("valid response")),
            (&Method::GET, ["v1", "routes"]) => {
                let t = routes.table.lock().await;
                let now = Instant::now();
                let v: Vec<_> = t
                    .routes
                    .iter()
                    .map(|(s, e)| table::view(s, e, now))
                    .collect();
                Ok(json(StatusCode::OK, &v))
            }
            (&Method::GET, ["v1", "routes", s]) => {
                let s = service(s)?;
                let t = routes.table.lock().await;
                match t.routes.get(&s) {
                    Some(e) => Ok(json(StatusCode::OK, &table::view(&s, e, Instant::now()))),
                    None => Err(problem(
                        "unknown_service",
                        format!("no route for service {s}"),
                    )),
                }
            }
            (&Method::PUT, ["v1", "routes", s]) => {
                let s =
                    ServiceName::parse(s).map_err(|e| problem("invalid_body", e.to_string()))?;
                let spec: RouteSpec = parse(&body)?;
                table::put(routes, &s, spec)
                    .await
                    .map(|v| json(StatusCode::OK, &v))
                    .map_err(|e| from_op(&e))
            }
            (&Method::PUT, ["v1", "routes", s, "targets"]) => {
                let s = service(s)?;
                let u: TargetsUpdate = parse(&body)?;
                table::switch(routes, &s, u.targets)
                    .await
                    .map(|v| json(StatusCode::OK, &v))
                    .map_err(|e| from_op(&e))
            }
            (&Method::DELETE, ["v1", "routes", s]) => {
                let s = service(s)?;
                match table::remove(routes, &s).await {
                    Ok(true) => Ok(Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Full::default())
                        .expect("valid")),
                    Ok(false) => Err(problem(
                        "unknown_service",
                        format!("no route for service {s}"),
                    )),
                    Err(e) => Err(from_op(&e)),
                }
            }
            (
                _,
                ["v1", "status"]
                | ["metrics"]
                | ["v1", "routes"]
                | ["v1", "routes", _]
                | ["v1", "routes", _, "targets"],
            ) => Err(problem(
                "method_not_allowed",
                format!("{method} is not supported on {path}"),
            )),
            _ => Err(problem("not_found", format!("no such path: {path}"))),
        }
    }
    .await;
    r.unwrap_or_else(refuse)
}

/// Serves `GET /metrics` on a TCP address for Prometheus.
pub fn spawn_metrics(rt: Arc<Runtime>, listener: tokio::net::TcpListener) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let rt = rt.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let rt = rt.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(if req.uri().path() == "/metrics" {
                            Response::builder()
                                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                                .body(Full::new(rt.metrics.render()))
                                .expect("valid")
                        } else {
                            refuse(problem("not_found", "only /metrics here"))
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
