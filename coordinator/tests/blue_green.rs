//! `blue_green` end to end (issue 15): a real coordinator, real agents each with its own
//! real `sluice-proxy`, the real Docker daemon, and a load generator sending requests all
//! the time (≥ 200/s, half on keep-alive connections, half on new ones) to the service's
//! public port, which the proxy owns. "0 failed requests" is asserted on every path.

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_common::api::{CreateDeploymentRequest, DeploymentView};
use sluice_common::client::Client;
use sluice_common::deployment::{DeploymentState, SubState};
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::load::{Load, LoadOptions, LoadReport};
use sluice_tests::testapp_image::{ensure_test_images, image};

/// Each environment gets its own slice of host ports: tests run in parallel on one host.
fn port_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    let base = 24000 + (std::process::id() % 20) as u16 * 200 + slot * 20;
    format!("{base}-{}", base + 19)
}

struct Env {
    cluster: Cluster,
    agents: Vec<AgentProc>,
    service: String,
}

impl Env {
    async fn start(agents: &[&str], service: &str) -> Self {
        ensure_test_images().expect("test images");
        remove_containers(service);
        let cluster = Cluster::start(
            Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
            1,
            NodeOpts::default(),
        )
        .await;
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
        let agents: Vec<AgentProc> = agents
            .iter()
            .map(|name| AgentProc::start(name, &addrs, &port_range(), ""))
            .collect();
        let env = Self {
            cluster,
            agents,
            service: service.to_string(),
        };
        let names: Vec<String> = env.agents.iter().map(|a| a.name.clone()).collect();
        eventually(
            "every agent registered",
            Duration::from_secs(20),
            || async {
                let got: Vec<String> = env
                    .api()
                    .servers()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|s| s.name.to_string())
                    .collect();
                if names.iter().all(|n| got.contains(n)) {
                    Ok(())
                } else {
                    Err(format!("registered: {got:?}"))
                }
            },
        )
        .await;
        env
    }

    fn api(&self) -> Client {
        self.cluster.api(0)
    }

    /// A deployment request of `tag` to every agent, with `extra` fields.
    fn request(&self, tag: &str, extra: serde_json::Value) -> CreateDeploymentRequest {
        let servers: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
        let mut body = json!({
            "service": self.service,
            "image": image(tag),
            "servers": servers,
            "container_port": 8080,
            "strategy": "blue_green",
            "min_healthy": "0s",
            "drain_timeout": "2s",
            "health": {"kind": "http", "path": "/health", "interval": "100ms", "retries": 20},
        });
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        serde_json::from_value(body).expect("a valid request")
    }

    async fn deploy(&self, tag: &str, extra: serde_json::Value) -> DeploymentView {
        let created = self
            .api()
            .create_deployment(&self.request(tag, extra), None)
            .await
            .expect("accepted");
        self.settled(&created.deployment.id.to_string()).await
    }

    /// Polls until nothing is left to do for the deployment.
    async fn settled(&self, id: &str) -> DeploymentView {
        eventually(
            &format!("deployment {id} to settle"),
            Duration::from_secs(120),
            || async {
                let d = self.api().deployment(id).await.map_err(|e| e.to_string())?;
                match d.sub_state {
                    SubState::Done | SubState::Noop | SubState::GaveUp => Ok(d),
                    s => Err(format!("{:?}/{s:?}: {}", d.state, d.phase.as_str())),
                }
            },
        )
        .await
    }

    /// The service's public port on agent `i`, as the ledger allocated it.
    fn port(d: &DeploymentView, server: &str) -> u16 {
        d.servers
            .iter()
            .find(|s| s.server.as_str() == server)
            .and_then(|s| s.port)
            .expect("a port")
    }

    fn load(port: u16) -> Load {
        Load::start(
            format!("http://127.0.0.1:{port}/version"),
            LoadOptions::default(),
        )
    }
}

/// The container deployment `id` created on `agent`, once `agent`'s proxy routes to it
/// (its route table on disk is written before the proxy answers a switch).
fn routed_to(agent: &AgentProc, id: &str) -> Result<String, String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=sluice.deployment={id}"),
            "--filter",
            &format!("label=sluice.server={}", agent.name),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if container.is_empty() {
        return Err("no running container of the deployment yet".into());
    }
    let routes = std::fs::read_to_string(agent.proxy.routes_file()).unwrap_or_default();
    if routes.contains(&container[..12]) {
        Ok(container)
    } else {
        Err(format!("the route does not name {} yet", &container[..12]))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        remove_containers(&self.service);
    }
}

/// What a load report must show: no failure at all, and enough traffic to mean it.
fn assert_lossless(what: &str, r: &LoadReport) {
    if !r.failures.is_empty() {
        // Every kind of failure with its count and when it first and last happened, so a
        // failure in CI says what it was.
        let t0 = r.seen.first().map(|s| s.sent);
        let mut kinds: std::collections::BTreeMap<&str, (usize, u128, u128)> = Default::default();
        for f in &r.failures {
            let at = t0.map_or(0, |t| f.sent.saturating_duration_since(t).as_millis());
            let e = kinds.entry(f.error.as_str()).or_insert((0, at, at));
            e.0 += 1;
            e.2 = at;
        }
        panic!(
            "{what}: {} of {} requests failed (ms since the first answer): {kinds:#?}",
            r.failures.len(),
            r.ok + r.failures.len() as u64,
        );
    }
    assert!(
        r.rate() >= 150.0,
        "{what}: the load ran at {:.0} requests/s only",
        r.rate()
    );
}

/// Every response to a request sent after `t` came from `version`.
fn all_from(r: &LoadReport, t: Instant, version: &str) -> Result<usize, String> {
    let after: Vec<_> = r.seen_after(t).collect();
    match after.iter().find(|s| s.first_line != version) {
        Some(s) => Err(format!(
            "a request sent {} ms after the switch answered {:?}",
            s.sent.duration_since(t).as_millis(),
            s.first_line
        )),
        None => Ok(after.len()),
    }
}

fn state(d: &DeploymentView) -> DeploymentState {
    d.state
}

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

/// The id of the container deployment `id` created on server `server`, running or not.
fn container_of(id: &str, server: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=sluice.deployment={id}"),
            "--filter",
            &format!("label=sluice.server={server}"),
        ])
        .output()
        .unwrap();
    let c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(c.len() >= 12, "no container of {id} on {server}");
    c
}

/// The proxy's Prometheus text, from its control socket.
fn proxy_metrics(agent: &AgentProc) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(agent.proxy.socket())
        .arg("http://proxy/metrics")
        .output()
        .unwrap();
    assert!(out.status.success(), "GET /metrics on the control socket");
    String::from_utf8_lossy(&out.stdout).into_owned()
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
