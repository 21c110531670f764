//! `blue_green` end to end (issue 15): a real coordinator, real agents each with its own
//! real `sluice-proxy`, the real Docker daemon, and a load generator sending requests all
//! the time (≥ 200/s, half on keep-alive connections, half on new ones) to the service's
//! public port, which the proxy owns. "0 failed requests" is asserted on every path.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_common::deployment::DeploymentState;
use sluice_tests::eventually::eventually;

use support::proxied::*;

/// Twenty v1 ↔ v2 deploys under load: no failed request, no reset, and after each
/// deployment's success every response comes from the version it deployed.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_blue_green_deploys_lose_no_request() {
    let env = Env::start(&["bg1"], "bg-twenty").await;
    let first = env.deploy("v1", json!({})).await;
    assert_eq!(state(&first), DeploymentState::Success, "{first:?}");
    let port = Env::port(&first, "bg1");
    let load = Env::load(port);
    // (end of a deploy, start of the next one, what it deployed)
    let mut switches: Vec<(Instant, Option<Instant>, &str)> = Vec::new();
    for round in 0..20 {
        let tag = if round % 2 == 0 { "v2" } else { "v1" };
        if let Some(last) = switches.last_mut() {
            last.1 = Some(Instant::now());
        }
        let d = env.deploy(tag, json!({})).await;
        assert_eq!(state(&d), DeploymentState::Success, "round {round}: {d:?}");
        switches.push((Instant::now(), None, tag));
    }
    // Let the last version serve a moment under load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await;
    assert_lossless("twenty deploys", &report);
    // Between one deploy's end and the next one's start, only its version answers.
    for (i, (t, until, tag)) in switches.iter().enumerate() {
        let wrong = report
            .seen_after(*t)
            .filter(|s| until.is_none_or(|u| s.sent < u))
            .find(|s| s.first_line != *tag);
        assert!(wrong.is_none(), "after switch {i} to {tag}: {wrong:?}");
    }
    eprintln!(
        "20 blue_green deploys: {} requests, 0 failed, {:.0}/s",
        report.ok,
        report.rate()
    );
}

/// A v2 that never turns healthy never gets a request: every response under load is v1's,
/// the deployment ends rolled_back, nothing failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_never_turns_healthy_gets_no_traffic() {
    let env = Env::start(&["bg2"], "bg-broken").await;
    let first = env.deploy("v1", json!({})).await;
    let port = Env::port(&first, "bg2");
    let load = Env::load(port);
    let t = Instant::now();
    let d = env
        .deploy(
            "broken",
            json!({"health": {"kind": "http", "path": "/health", "interval": "100ms", "retries": 5}}),
        )
        .await;
    assert_eq!(state(&d), DeploymentState::RolledBack, "{d:?}");
    let report = load.stop().await;
    assert_lossless("a broken v2", &report);
    let served = all_from(&report, t, "v1").unwrap();
    assert!(served > 100, "{served} responses during the deploy");
    // The proxy's own count: every request of the service went to v1's container, none
    // to the broken one (which never became a target).
    let v1 = first.servers[0].operation.map(|o| o.to_string()).unwrap();
    let v1_container = container_of(&v1, "bg2");
    let metrics = proxy_metrics(&env.agents[0]);
    let targets: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("sluice_proxy_requests_total{") && l.contains("service=\"bg-broken\"")
        })
        .collect();
    assert!(!targets.is_empty(), "{metrics}");
    for line in targets {
        assert!(
            line.contains(&format!("target=\"{}\"", &v1_container[..12])),
            "a request went elsewhere than v1: {line}"
        );
    }
}

/// A v2 that passes its first check and fails 5 s later, inside `min_healthy`: traffic
/// goes back to v1 (still running), the deployment ends rolled_back, nothing failed. The
/// same image under `recreate` is rolled back too (before the watch it stayed).
#[tokio::test(flavor = "multi_thread")]
async fn a_version_failing_inside_min_healthy_is_switched_back() {
    let env = Env::start(&["bg3"], "bg-late").await;
    let first = env.deploy("v1", json!({})).await;
    let port = Env::port(&first, "bg3");
    let load = Env::load(port);
    let d = env
        .deploy(
            "late",
            json!({"min_healthy": "10s", "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 3}}),
        )
        .await;
    assert_eq!(state(&d), DeploymentState::RolledBack, "{d:?}");
    let after = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await;
    assert_lossless("a v2 failing in its watch", &report);
    all_from(&report, after, "v1").unwrap();
    assert!(
        report.seen.iter().any(|s| s.first_line == "late"),
        "the late version served during its watch"
    );

    // recreate: the watch applies too.
    let d = env
        .deploy(
            "late",
            json!({"strategy": "recreate", "min_healthy": "10s", "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 3}}),
        )
        .await;
    assert_eq!(state(&d), DeploymentState::RolledBack, "{d:?}");
}

/// A 5 s request in flight at the switch completes with 200 from the old version; an
/// upgraded (WebSocket-like) connection open at the switch keeps echoing until
/// `drain_timeout`, then is closed.
#[tokio::test(flavor = "multi_thread")]
async fn in_flight_requests_finish_and_upgraded_connections_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start(&["bg4"], "bg-drain").await;
    let first = env.deploy("v1", json!({})).await;
    let port = Env::port(&first, "bg4");

    let long = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/sleep/5000"))
            .send()
            .await
            .expect("the long request is answered");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    let mut ws = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    ws.write_all(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Give the long request time to reach v1 before the switch.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let created = env
        .api()
        .create_deployment(&env.request("v2", json!({"drain_timeout": "3s"})), None)
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    // Echo keeps working after the switch (the route names v2 while v1 drains).
    eventually(
        "the route switched to v2",
        Duration::from_secs(30),
        || async {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/version"))
                .await
                .map_err(|e| e.to_string())?;
            let v = r.text().await.map_err(|e| e.to_string())?;
            if v.trim() == "v2" {
                Ok(())
            } else {
                Err(v)
            }
        },
    )
    .await;
    let switched = Instant::now();
    ws.write_all(b"still there?").await.unwrap();
    let n = ws.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"still there?", "echo after the switch");
    // Then the drain timeout closes it.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the upgraded connection is closed at the drain timeout");
    let open_for = closed.duration_since(switched);
    assert!(
        open_for >= Duration::from_millis(1500),
        "closed {open_for:?} after the switch"
    );
    let (status, body) = long.await.unwrap();
    assert_eq!(
        (status, body.trim()),
        (200, "v1"),
        "the long request finished on v1"
    );
    let d = env.settled(&id).await;
    assert_eq!(state(&d), DeploymentState::Success, "{d:?}");
}

/// kill -9 of the agent while idle and during a deploy, under load: no failed request;
/// the deploy resumes and ends right. Then the proxy itself is restarted (a successor
/// takes its sockets) under load: no failed request either.
#[tokio::test(flavor = "multi_thread")]
async fn agent_kills_and_proxy_restarts_lose_no_request() {
    let mut env = Env::start(&["bg5"], "bg-kill").await;
    let first = env.deploy("v1", json!({})).await;
    let port = Env::port(&first, "bg5");
    let load = Env::load(port);

    // Idle: the proxy keeps serving without its agent.
    env.agents[0].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.agents[0].spawn();

    // During a deploy: kill it once the operation is under way, start it again.
    let created = env
        .api()
        .create_deployment(&env.request("v2", json!({"min_healthy": "3s"})), None)
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    // Switched and watching (min_healthy 3 s): kill it there.
    eventually(
        "the proxy routes to v2",
        Duration::from_secs(30),
        || async { routed_to(&env.agents[0], &id) },
    )
    .await;
    env.agents[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.agents[0].spawn();
    let d = env.settled(&id).await;
    assert_eq!(state(&d), DeploymentState::Success, "{d:?}");

    // The proxy restarted: a second process takes over the first one's sockets.
    let before = env.agents[0].proxy.pid();
    env.agents[0].proxy.spawn();
    assert_ne!(env.agents[0].proxy.pid(), before);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let report = load.stop().await;
    assert_lossless("agent kills and a proxy restart", &report);
    all_from(&report, Instant::now() - Duration::from_millis(200), "v2").unwrap();
}

/// Two servers: the new version fails on the second inside its watch (its health check
/// turns bad); both servers go back to v1, and neither loses a request.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_on_the_second_server_switches_both_back() {
    let env = Env::start(&["bg6a", "bg6b"], "bg-two").await;
    let first = env.deploy("v1", json!({})).await;
    assert_eq!(state(&first), DeploymentState::Success, "{first:?}");
    let (pa, pb) = (Env::port(&first, "bg6a"), Env::port(&first, "bg6b"));
    let (la, lb) = (Env::load(pa), Env::load(pb));
    let created = env
        .api()
        .create_deployment(&env.request("v2", json!({"min_healthy": "5s"})), None)
        .await
        .unwrap();
    let id = created.deployment.id.to_string();
    // The second server switched to its new container and watches it: kill it.
    let victim = eventually("bg6b routes to v2", Duration::from_secs(60), || async {
        routed_to(&env.agents[1], &id)
    })
    .await;
    // Its health turns bad while it keeps serving (users still get answers from it).
    let out = std::process::Command::new("docker")
        .args(["port", &victim, "8080/tcp"])
        .output()
        .unwrap();
    let direct = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let r = reqwest::get(format!("http://{direct}/fail-health"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = env.settled(&id).await;
    assert_eq!(state(&d), DeploymentState::RolledBack, "{d:?}");
    let after = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ra, rb) = (la.stop().await, lb.stop().await);
    assert_lossless("server a", &ra);
    assert_lossless("server b", &rb);
    all_from(&ra, after, "v1").unwrap();
    all_from(&rb, after, "v1").unwrap();
}

/// `blue_green` with health `none` is refused with a stable code; nothing is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn blue_green_needs_a_health_check() {
    let env = Env::start(&["bg7"], "bg-none").await;
    let err = env
        .api()
        .create_deployment(
            &env.request("v1", json!({"health": {"kind": "none"}})),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(sluice_common::problem::ErrorCode::HealthCheckRequired),
        "{err}"
    );
    let all = env.api().deployments(&Default::default()).await.unwrap();
    assert!(all.deployments.is_empty(), "{all:?}");
}

/// A proxy that is down fails validation ("proxy_reachable") and nothing is touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_is_down_fails_validation() {
    let mut env = Env::start(&["bg8"], "bg-noproxy").await;
    env.agents[0].proxy.kill();
    let d = env.deploy("v1", json!({})).await;
    assert_eq!(state(&d), DeploymentState::Failed, "{d:?}");
    let check = d
        .validation
        .iter()
        .find(|c| c.check == "proxy_reachable")
        .expect("a proxy_reachable check");
    assert!(!check.ok, "{check:?}");
    assert!(d.servers.iter().all(|s| s.operation.is_none()), "{d:?}");
}
