//! A minimal keep-alive HTTP/1.1 backend for measuring the proxy (`wrk` straight to it and
//! through `sluice-proxy`): every request is answered `ok`.
//!
//! `cargo run --release -p sluice-proxy --example bench_backend -- 127.0.0.1:18080`

use std::convert::Infallible;

use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sluice_proxy::body::RespBody;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(RespBody::full("ok\n")))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
