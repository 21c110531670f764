//! Switches under load and the drain of what was on the old target.

mod support;

use std::time::{Duration, Instant};

use sluice_common::proxy::ProxyMode;
use sluice_tests::eventually::eventually;
use sluice_tests::load::{Load, LoadOptions};
use support::*;

/// 20 consecutive switches between two backends under ≥ 200 requests/s (half keep-alive,
/// half fresh connections): no failure at all, and every request sent after a switch was
/// answered comes from the new backend. Each switch's drain completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_switches_under_load_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
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
    let load = Load::start(
        format!("http://127.0.0.1:{port}/version"),
        LoadOptions::default(),
    );
    let before = load.snapshot().ok;
    eventually("load flowing", Duration::from_secs(10), || {
        let n = load.snapshot().ok;
        async move {
            if n > before + 50 {
                Ok(())
            } else {
                Err(format!("{n} answers"))
            }
        }
    })
    .await;
    // (asked, answered, version): a request sent between one switch's answer and the next
    // switch's request must come from that switch's version.
    let mut switches: Vec<(Instant, Instant, &str)> = Vec::new();
    for i in 0..20 {
        let (next, old) = if i % 2 == 0 { (&v2, &v1) } else { (&v1, &v2) };
        let asked = Instant::now();
        let view = proxy.client.switch(&web, &[next.target()]).await.unwrap();
        let at = Instant::now();
        assert_eq!(view.generation, i + 2);
        switches.push((asked, at, if i % 2 == 0 { "v2" } else { "v1" }));
        // Traffic after the switch, then the old target's drain finishes.
        eventually("answers after the switch", Duration::from_secs(10), || {
            let n = load.snapshot().seen_after(at).count();
            async move {
                if n >= 40 {
                    Ok(())
                } else {
                    Err(format!("{n} answers"))
                }
            }
        })
        .await;
        let c = proxy.client.clone();
        let w = web.clone();
        let old_name = old.name.clone();
        eventually("the old target drained", Duration::from_secs(10), || {
            let c = c.clone();
            let w = w.clone();
            let old_name = old_name.clone();
            async move {
                let v = c.route(&w).await.map_err(|e| e.to_string())?.unwrap();
                if v.draining.iter().any(|d| d.target == old_name) {
                    Err(format!("{:?}", v.draining))
                } else {
                    Ok(())
                }
            }
        })
        .await;
    }
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{} failures: {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)]
    );
    for (i, (_, at, version)) in switches.iter().enumerate() {
        let until = switches
            .get(i + 1)
            .map_or(Instant::now() + Duration::from_secs(3600), |s| s.0);
        let wrong: Vec<_> = report
            .seen_between(*at, until)
            .filter(|s| s.first_line != *version)
            .collect();
        assert!(
            wrong.is_empty(),
            "switch {i} to {version}: {} answers from the other: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
    let mut took: Vec<Duration> = switches.iter().map(|(asked, at, _)| *at - *asked).collect();
    took.sort();
    eprintln!(
        "switch answered in: median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    let rate = report.rate();
    eprintln!(
        "load: {} answers in {:?} ({rate:.0}/s), {} failures",
        report.ok,
        report.elapsed,
        report.failures.len()
    );
    assert!(rate >= 190.0, "load ran at {rate:.0}/s");
    assert!(report.seen.iter().any(|s| s.keep_alive) && report.seen.iter().any(|s| !s.keep_alive));
}

/// At the switch: a 5 s request in flight on the old target completes 200 from it; an
/// upgraded (WebSocket-style) connection keeps echoing until drain_timeout (2 s), then is
/// closed; `draining` shows both meanwhile and empties after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_drain_finishes_requests_and_cuts_upgrades_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let v1 = Backend::http("v1").await;
    let v2 = Backend::http("v2").await;
    let port = free_port();
    let web = svc("web");
    let drain = Duration::from_secs(2);
    proxy
        .client
        .put_route(&web, &spec(port, ProxyMode::Http, vec![v1.target()], drain))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let slow = tokio::spawn(get_owned(format!("{url}/slow?ms=5000")));
    let mut ws = open_upgrade(([127, 0, 0, 1], port).into()).await;
    assert_eq!(echo(&mut ws, "hello").await.as_deref(), Some("hello"));
    let in_flight = v1.slow_in_flight.clone();
    eventually(
        "the slow request reached v1",
        Duration::from_secs(5),
        || {
            let n = in_flight.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 1 {
                    Ok(())
                } else {
                    Err(format!("{n}"))
                }
            }
        },
    )
    .await;

    let view = proxy.client.switch(&web, &[v2.target()]).await.unwrap();
    let switched = Instant::now();
    assert_eq!(view.draining.len(), 1, "{view:?}");
    let d = &view.draining[0];
    assert_eq!(
        (d.target.as_str(), d.requests, d.connections),
        ("v1", 1, 1),
        "{view:?}"
    );
    assert!(d.closes_in_ms > 1000 && d.closes_in_ms <= 2000, "{d:?}");
    let drains = |text: &str| {
        text.lines()
            .any(|l| l == "sluice_proxy_drains_in_progress{service=\"web\"} 1")
    };
    let (_, m) = raw_control(&proxy.socket, "GET", "/metrics", "").await;
    assert!(drains(&m), "{m}");
    assert_eq!(
        get(&format!("{url}/version")).await,
        (200, "v2\n".to_string())
    );

    // The upgraded connection keeps working until the deadline …
    assert_eq!(echo(&mut ws, "still").await.as_deref(), Some("still"));
    tokio::time::sleep_until((switched + Duration::from_millis(1500)).into()).await;
    assert_eq!(
        echo(&mut ws, "late").await.as_deref(),
        Some("late"),
        "cut before drain_timeout"
    );
    // … then is closed.
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut ws, &mut b),
    )
    .await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "the upgraded connection was not closed: {r:?}"
    );
    let closed = Instant::now();
    assert!(
        closed >= switched + drain,
        "closed {:?} after the switch",
        closed - switched
    );

    // The request in flight was not cut: it finishes on v1.
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "v1\n"));
    assert!(switched.elapsed() > drain);
    let c = proxy.client.clone();
    eventually("draining empties", Duration::from_secs(5), || {
        let c = c.clone();
        let w = web.clone();
        async move {
            let v = c.route(&w).await.map_err(|e| e.to_string())?.unwrap();
            if v.draining.is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", v.draining))
            }
        }
    })
    .await;
    let socket = proxy.socket.clone();
    eventually("the drains gauge back to 0", Duration::from_secs(2), || {
        let socket = socket.clone();
        async move {
            let (_, m) = raw_control(&socket, "GET", "/metrics", "").await;
            if m.lines()
                .any(|l| l == "sluice_proxy_drains_in_progress{service=\"web\"} 0")
            {
                Ok(())
            } else {
                Err(m)
            }
        }
    })
    .await;
}

async fn get_owned(url: String) -> (u16, String) {
    get(&url).await
}

/// TCP mode: a connection open at the switch stays on its target and keeps echoing until
/// drain_timeout, then is closed; new connections go to the new target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_connections_drain_until_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let e1 = Backend::tcp_echo("e1").await;
    let e2 = Backend::tcp_echo("e2").await;
    let port = free_port();
    let db = svc("db");
    let drain = Duration::from_secs(2);
    proxy
        .client
        .put_route(&db, &spec(port, ProxyMode::Tcp, vec![e1.target()], drain))
        .await
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut old = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo(&mut old, "a").await.as_deref(), Some("e1:a"));
    let view = proxy.client.switch(&db, &[e2.target()]).await.unwrap();
    let switched = Instant::now();
    assert_eq!(
        (
            view.draining[0].target.as_str(),
            view.draining[0].connections
        ),
        ("e1", 1)
    );
    let mut new = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo(&mut new, "b").await.as_deref(), Some("e2:b"));
    assert_eq!(echo(&mut old, "c").await.as_deref(), Some("e1:c"));
    tokio::time::sleep_until((switched + Duration::from_millis(1500)).into()).await;
    assert_eq!(
        echo(&mut old, "d").await.as_deref(),
        Some("e1:d"),
        "cut before drain_timeout"
    );
    let mut b = [0u8; 8];
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut old, &mut b),
    )
    .await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(switched.elapsed() >= drain);
    assert_eq!(
        echo(&mut new, "e").await.as_deref(),
        Some("e2:e"),
        "the new target's connection survives"
    );
    let c = proxy.client.clone();
    eventually("draining empties", Duration::from_secs(5), || {
        let c = c.clone();
        let d = db.clone();
        async move {
            let v = c.route(&d).await.map_err(|e| e.to_string())?.unwrap();
            if v.draining.is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", v.draining))
            }
        }
    })
    .await;
}

/// The blue_green cycle the agent runs, 20 times under load: start a new backend, switch,
/// wait until the old one is gone from `draining`, stop it (its listener and every
/// connection close, as a stopped container's do). No request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_deploys_with_the_old_backend_stopped_after_its_drain() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &[]).await;
    let port = free_port();
    let web = svc("web");
    let mut live = Backend::http("v1").await;
    let mut live_label = "v1-0".to_string();
    proxy
        .client
        .put_route(
            &web,
            &spec(
                port,
                ProxyMode::Http,
                vec![target(&live_label, live.addr)],
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap();
    let load = Load::start(
        format!("http://127.0.0.1:{port}/version"),
        LoadOptions::default(),
    );
    let mut switches = Vec::new();
    for i in 1..=20 {
        let version = if i % 2 == 0 { "v1" } else { "v2" };
        let next = Backend::http(version).await;
        let label = format!("{version}-{i}");
        let asked = Instant::now();
        proxy
            .client
            .switch(&web, &[target(&label, next.addr)])
            .await
            .unwrap();
        switches.push((asked, Instant::now(), version));
        let c = proxy.client.clone();
        let w = web.clone();
        let old = live_label.clone();
        eventually("the old target drained", Duration::from_secs(10), || {
            let (c, w, old) = (c.clone(), w.clone(), old.clone());
            async move {
                let v = c.route(&w).await.map_err(|e| e.to_string())?.unwrap();
                if v.draining.iter().any(|d| d.target == old) {
                    Err(format!("{:?}", v.draining))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        drop(std::mem::replace(&mut live, next));
        live_label = label;
        let at = Instant::now();
        eventually(
            "answers from the new backend",
            Duration::from_secs(10),
            || {
                let n = load.snapshot().seen_after(at).count();
                async move {
                    if n >= 20 {
                        Ok(())
                    } else {
                        Err(format!("{n}"))
                    }
                }
            },
        )
        .await;
    }
    let report = load.stop().await;
    assert!(
        report.failures.is_empty(),
        "{} failures: {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)]
    );
    for (i, (_, at, version)) in switches.iter().enumerate() {
        let until = switches
            .get(i + 1)
            .map_or(Instant::now() + Duration::from_secs(3600), |s| s.0);
        assert!(
            report
                .seen_between(*at, until)
                .all(|s| s.first_line == *version),
            "deploy {i}"
        );
    }
    eprintln!(
        "20 deploys: {} answers at {:.0}/s, 0 failures",
        report.ok,
        report.rate()
    );
}
