//! The HTTP data path: forwarded headers, HTTP/2 prior knowledge, limits and the proxy's
//! own failures (problem+json), the retry of a failed connect, and the pool of target
//! connections.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_common::proxy::{ProxyMode, Target};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_limits_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "1024",
            "--max-header-bytes",
            "8192",
            "--response-header-timeout",
            "1s",
        ],
    )
    .await;
    let v1 = Backend::http("v1").await;
    let port = free_port();
    let web = svc("web");
    proxy
        .client
        .put_route(
            &web,
            &spec(
                port,
                ProxyMode::Http,
                vec![v1.target()],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");

    // X-Forwarded-*, hop-by-hop stripped.
    let c = reqwest::Client::builder().http1_only().build().unwrap();
    let r = c
        .get(format!("{url}/headers"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-host: 127.0.0.1:{port}\n")),
        "{body}"
    );
    assert!(!body.contains("x-hop"), "{body}");

    // HTTP/2 with prior knowledge, forwarded as HTTP/1.1.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(format!("{url}/version")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "v1\n");

    // Body over the limit: 413, declared or streamed.
    let r = c
        .post(format!("{url}/version"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = c
        .post(format!("{url}/version"))
        .body(vec![b'x'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Head over the limit: 431.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let big = "a".repeat(16 * 1024);
    s.write_all(format!("GET /version HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = vec![0u8; 64];
    let n = s.read(&mut out).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out[..n]).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out[..n])
    );

    // A target slower than the response header timeout: 504.
    let r = c.get(format!("{url}/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 504);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("\"code\":\"target_timeout\""));

    // A target that died: 502 target_unreachable.
    let gone = v1.addr;
    drop(v1);
    sluice_tests::eventually::eventually("v1 gone", Duration::from_secs(5), || async move {
        match tokio::net::TcpStream::connect(gone).await {
            Err(_) => Ok(()),
            Ok(_) => Err("still accepting".to_string()),
        }
    })
    .await;
    let r = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(format!("{url}/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("\"code\":\"target_unreachable\""));
}

/// With two targets of which one stops accepting, every request still succeeds: a failed
/// connect is retried on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_retried_on_another_target() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let a = Backend::http("a").await;
    let b = Backend::http("b").await;
    let port = free_port();
    let targets: Vec<Target> = vec![a.target(), b.target()];
    proxy
        .client
        .put_route(
            &svc("web"),
            &spec(port, ProxyMode::Http, targets, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    drop(b);
    let c = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..50 {
        let r = c
            .get(format!("http://127.0.0.1:{port}/version"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), r.text().await.unwrap()),
            (200, "a\n".to_string())
        );
    }
}

/// Weights split new requests: 80/20 over 500 requests lands within a few percent, and a
/// target at weight 0 gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_requests() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let (a, b, c) = (
        Backend::http("a").await,
        Backend::http("b").await,
        Backend::http("c").await,
    );
    let port = free_port();
    let mut targets = vec![a.target(), b.target(), c.target()];
    targets[0].weight = 80;
    targets[1].weight = 20;
    targets[2].weight = 0;
    proxy
        .client
        .put_route(
            &svc("web"),
            &spec(port, ProxyMode::Http, targets, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let mut from_a = 0;
    for _ in 0..500 {
        let body = client
            .get(format!("http://127.0.0.1:{port}/version"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        match body.as_str() {
            "a\n" => from_a += 1,
            "b\n" => {}
            other => panic!("answer from {other:?}"),
        }
    }
    assert!(
        (360..=440).contains(&from_a),
        "{from_a} of 500 from the 80% target"
    );
    assert_eq!(c.served.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A keep-alive backend written by hand: answers `200 ok` to every request head, counts
/// the connections it accepted and those it closed, and closes a connection that stays
/// idle for `idle` (as a backend with a keep-alive timeout shorter than the proxy's does).
async fn counting_backend(
    idle: Duration,
) -> (std::net::SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let (count, gone) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let gone = gone.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match tokio::time::timeout(idle, s.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        // Idle too long, closed, or failed: close.
                        _ => {
                            gone.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            gone.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted, closed)
}

/// Requests reuse the pooled connection to their target; one the target closed while it
/// sat idle in the pool is noticed and replaced, at no request's expense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_are_reused_and_closed_ones_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let (addr, accepted, closed) = counting_backend(Duration::from_millis(300)).await;
    let port = free_port();
    proxy
        .client
        .put_route(
            &svc("web"),
            &spec(
                port,
                ProxyMode::Http,
                vec![target("t1", addr)],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap();
    // The route's check connected once; count from there.
    let n = accepted.clone();
    sluice_tests::eventually::eventually("the check's connection", Duration::from_secs(5), || {
        let n = n.load(Ordering::SeqCst);
        async move {
            if n >= 1 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        }
    })
    .await;
    let before = accepted.load(Ordering::SeqCst);
    let c = reqwest::Client::builder().http1_only().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    for _ in 0..30 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.text().await.unwrap()),
            (200, "ok\n".into())
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst) - before,
        1,
        "one pooled connection"
    );
    // The backend closes its idle connections: every request made once the backend has
    // closed every connection it accepted finds the pooled one closed and goes out on a
    // new one.
    for i in 0..4 {
        let (accepted, closed) = (accepted.clone(), closed.clone());
        sluice_tests::eventually::eventually(
            "the backend closed its idle connections",
            Duration::from_secs(10),
            || {
                let (a, c) = (
                    accepted.load(Ordering::SeqCst),
                    closed.load(Ordering::SeqCst),
                );
                async move {
                    if c >= a {
                        Ok(())
                    } else {
                        Err(format!("{c} of {a} closed"))
                    }
                }
            },
        )
        .await;
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "after pause {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst) - before, 5);
}
