//! Deployments end to end: real coordinators, real agents, the real Docker daemon, through
//! the HTTP API.

use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::api::{AllocatePortRequest, DeploymentView, Policy, ServerStepState};
use sluice_common::client::Client;
use sluice_common::deployment::DeploymentState;
use sluice_common::names::{Label, ServerName, ServiceName};
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{deployment_request, refusal, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, image};

/// Each environment gets its own slice of host ports: tests run in parallel on one host.
fn port_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    let base = 21000 + (std::process::id() % 40) as u16 * 200 + slot * 20;
    format!("{base}-{}", base + 19)
}

struct Env {
    cluster: Cluster,
    agents: Vec<AgentProc>,
    services: Vec<String>,
    /// Spreads requests over the nodes (any node accepts any request).
    next: AtomicUsize,
}

impl Env {
    async fn start(coordinators: usize, agents: &[&str], services: &[&str]) -> Self {
        ensure_test_images().expect("test images");
        for s in services {
            remove_containers(s);
        }
        let cluster = Cluster::start(
            Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
            coordinators,
            NodeOpts::default(),
        )
        .await;
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
        // Every agent shares this host, so each gets its own range (as separate hosts
        // would each have their own ports).
        let agents: Vec<AgentProc> = agents
            .iter()
            .map(|name| AgentProc::start(name, &addrs, &port_range(), ""))
            .collect();
        let env = Self {
            cluster,
            agents,
            services: services.iter().map(|s| s.to_string()).collect(),
            next: AtomicUsize::new(0),
        };
        let names: Vec<String> = env.agents.iter().map(|a| a.name.clone()).collect();
        eventually(
            "every agent registered",
            Duration::from_secs(20),
            || async {
                let v = env.api().servers().await.map_err(|e| e.to_string())?;
                let got: Vec<String> = v.iter().map(|s| s.name.to_string()).collect();
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

    /// The typed client of a running node, a different one each call when several run.
    fn api(&self) -> Client {
        let n = self.cluster.nodes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let i = (first..first + n)
            .map(|i| i % n)
            .find(|&i| self.cluster.nodes[i].is_running())
            .unwrap();
        self.cluster.api(i)
    }

    /// `path` on a running node, for the checks that are about the bytes on the wire.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api().base())
    }

    async fn deploy(&self, body: &Value) -> String {
        let created = self
            .api()
            .create_deployment(&deployment_request(body), None)
            .await
            .unwrap();
        assert!(!created.replayed, "{:?}", created.deployment);
        created.deployment.id.to_string()
    }

    async fn deployment(&self, id: &str) -> Result<DeploymentView, String> {
        self.api().deployment(id).await.map_err(|e| e.to_string())
    }

    /// Polls until the deployment has settled (nothing left for the sequencer to do).
    async fn settled(&self, id: &str) -> DeploymentView {
        self.cluster
            .final_deployment(id, Duration::from_secs(90))
            .await
    }

    fn port_of(v: &DeploymentView, server: &str) -> u16 {
        v.servers
            .iter()
            .find(|s| s.server.as_str() == server)
            .and_then(|s| s.port)
            .unwrap_or_else(|| panic!("no port for {server}: {v:?}"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for s in &self.services {
            remove_containers(s);
        }
    }
}

fn name(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

fn body(service: &str, tag: &str, servers: &[&str]) -> Value {
    json!({
        "service": service,
        "image": image(tag),
        "servers": servers,
        "container_port": 8080,
        "env": {"GREETING": {"value": "hello"}, "API_TOKEN": {"value": "sup3r-s3cret-value", "secret": true}},
        "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 5, "timeout": "1s"},
    })
}

async fn version_on(port: u16) -> Result<String, String> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/version"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    r.text()
        .await
        .map(|t| t.trim().to_string())
        .map_err(|e| e.to_string())
}

async fn assert_serving(port: u16, version: &str) {
    eventually(
        &format!("{version} on port {port}"),
        Duration::from_secs(10),
        || async {
            match version_on(port).await {
                Ok(v) if v == version => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

fn states(v: &DeploymentView) -> Vec<&'static str> {
    let mut out = vec!["pending"];
    for t in &v.transitions {
        out.push(t.to.as_str());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_v2_is_rolled_back_and_v1_keeps_serving_on_the_same_port() {
    let env = Env::start(3, &["web-1"], &["seed-api"]).await;
    let v1 = env.deploy(&body("seed-api", "v1", &["web-1"])).await;
    let d1 = env.settled(&v1).await;
    assert_eq!(d1.state, DeploymentState::Success, "{d1:?}");
    assert_eq!(
        states(&d1),
        ["pending", "validating", "in_progress", "success"]
    );
    let port = Env::port_of(&d1, "web-1");
    assert_serving(port, "v1").await;
    // Four checks, and proxy_reachable for blue_green (the default strategy).
    assert_eq!(d1.validation.len(), 5, "{d1:?}");

    // Follow the broken deployment live over SSE while it runs (read as bytes: the point
    // is the stream's framing).
    let broken = env.deploy(&body("seed-api", "broken", &["web-1"])).await;
    let mut events = env.api().deployment_events(&broken).await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while let Ok(Some(chunk)) = events.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"state\":\"rolled_back\""), "{seen}");
    assert!(seen.contains("event: deployment"));

    let d2 = env.settled(&broken).await;
    assert_eq!(d2.state, DeploymentState::RolledBack, "{d2:?}");
    assert_eq!(
        states(&d2),
        [
            "pending",
            "validating",
            "in_progress",
            "failed",
            "rolled_back"
        ]
    );
    // Same port, v1 answering, and the failed container's log tail in the record.
    assert_eq!(Env::port_of(&d2, "web-1"), port);
    assert_serving(port, "v1").await;
    let step = &d2.servers[0];
    assert!(
        step.log_tail.as_deref().is_some_and(|t| !t.is_empty()),
        "no log tail: {d2:?}"
    );
    assert!(d2.failure.is_some());
    // The service view agrees.
    let services = env.api().services().await.unwrap();
    let svc = services
        .iter()
        .find(|s| s.service.as_str() == "seed-api")
        .unwrap();
    assert_eq!(svc.servers[0].image.to_string(), image("v1"));
    // The secret never shows. Raw: it must be absent from every byte sent, including
    // fields the wire types would skip.
    let mut texts = vec![seen];
    for path in [
        format!("/v1/deployments/{v1}"),
        format!("/v1/deployments/{broken}"),
        "/v1/services".to_string(),
    ] {
        let r = env.cluster.http.get(env.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        texts.push(r.text().await.unwrap());
    }
    for text in texts {
        assert!(!text.contains("sup3r-s3cret-value"));
    }

    // Metrics reflect it (every node exports the replicated figures).
    let metrics = env.api().metrics().await.unwrap();
    for needle in [
        "sluice_deployments_total{service=\"seed-api\",status=\"rolled_back\"} 1",
        "sluice_deployments_total{service=\"seed-api\",status=\"success\"} 1",
        "sluice_agent_up{server=\"web-1\"} 1",
        "sluice_raft_is_leader",
        "sluice_certificate_expiry_timestamp_seconds",
        "sluice_ports_used{server=\"web-1\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }

    // A redeploy of the running image is a no-op that says so.
    let again = env.deploy(&body("seed-api", "v1", &["web-1"])).await;
    let d3 = env.settled(&again).await;
    assert_eq!(
        (d3.state, d3.noop),
        (DeploymentState::Success, true),
        "{d3:?}"
    );
    assert_serving(port, "v1").await;

    // Manual rollback of v1 (the first deployment): nothing ran before it.
    env.api().rollback_deployment(&v1).await.unwrap();
    let d1 = env.settled(&v1).await;
    assert_eq!(d1.state, DeploymentState::RolledBack, "{d1:?}");
    assert!(
        version_on(port).await.is_err(),
        "nothing should serve after rolling back the first version"
    );

    // Deployed again, then the same image with a changed environment: not a no-op.
    let fresh = env.deploy(&body("seed-api", "v1", &["web-1"])).await;
    assert_eq!(env.settled(&fresh).await.state, DeploymentState::Success);
    // The same image with a changed environment is not a no-op: it is deployed.
    let mut changed = body("seed-api", "v1", &["web-1"]);
    changed["env"]["GREETING"] = json!({"value": "bonjour"});
    let again = env.deploy(&changed).await;
    let d4 = env.settled(&again).await;
    assert_eq!(
        (d4.state, d4.noop),
        (DeploymentState::Success, false),
        "{d4:?}"
    );
    let running = sluice_tests::agent_support::docker(&[
        "ps",
        "-q",
        "--filter",
        "label=sluice.service=seed-api",
    ]);
    let env_of = sluice_tests::agent_support::docker(&[
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        running.trim(),
    ]);
    assert!(env_of.contains("GREETING=bonjour"), "{env_of}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_replay_and_validation_lists_every_failure() {
    let env = Env::start(1, &["web-1", "web-2"], &["idem-api"]).await;
    let b = deployment_request(&body("idem-api", "v1", &["web-1"]));
    let first = env
        .api()
        .create_deployment(&b, Some("ci-run-7"))
        .await
        .unwrap();
    assert!(!first.replayed, "{:?}", first.deployment);
    let replay = env
        .api()
        .create_deployment(&b, Some("ci-run-7"))
        .await
        .unwrap();
    assert!(replay.replayed, "{:?}", replay.deployment);
    assert_eq!(first.deployment.id, replay.deployment.id);
    let other = deployment_request(&body("idem-api", "v2", &["web-1"]));
    let (s3, p) = refusal(env.api().create_deployment(&other, Some("ci-run-7")).await);
    assert_eq!(
        (s3, p.code.as_str()),
        (422, "idempotency_key_reused"),
        "{p:?}"
    );
    let d = env.settled(&first.deployment.id.to_string()).await;
    assert_eq!(d.state, DeploymentState::Success);

    // web-2 forbidden, an image that does not exist, and a server that does not exist:
    // every failure is reported at once and nothing is touched.
    let v = env.api().forbid_server(&name("web-2")).await.unwrap();
    assert!(v.forbidden, "{v:?}");
    let servers = env.api().servers().await.unwrap();
    let web1 = servers.iter().find(|s| s.name.as_str() == "web-1").unwrap();
    assert!(web1.up, "{web1:?}");
    assert!(web1.ports_used >= 1, "{web1:?}");
    assert_eq!(web1.ports_used + web1.ports_free, 20);
    let bad = json!({
        "service": "idem-api", "image": "sluice-testapp:does-not-exist",
        "servers": ["web-1", "web-2", "ghost"], "container_port": 8080,
        "health": {"kind": "tcp"}
    });
    let id = env.deploy(&bad).await;
    let d = env.settled(&id).await;
    assert_eq!(d.state, DeploymentState::Failed, "{d:?}");
    assert_eq!(states(&d), ["pending", "validating", "failed"]);
    let failed: Vec<(String, String)> = d
        .validation
        .iter()
        .filter(|c| !c.ok)
        .map(|c| (c.check.clone(), c.server.to_string()))
        .collect();
    for want in [
        ("image_exists", "web-1"),
        ("server_allowed", "web-2"),
        ("server_allowed", "ghost"),
    ] {
        assert!(
            failed.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing from {failed:?}"
        );
    }
    // Still v1 on web-1, untouched.
    let port = Env::port_of(&d, "web-1");
    assert_serving(port, "v1").await;
    let v = env.api().allow_server(&name("web-2")).await.unwrap();
    assert!(!v.forbidden, "{v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deploys_of_one_service_run_one_at_a_time() {
    let env = Env::start(1, &["web-1"], &["race-api"]).await;
    let a = env.deploy(&body("race-api", "v1", &["web-1"])).await;
    let mut waits = body("race-api", "v2", &["web-1"]);
    waits["lock_wait"] = json!("60s");
    let b = env.deploy(&waits).await;
    let mut impatient = body("race-api", "v2", &["web-1"]);
    impatient["lock_wait"] = json!("0s");
    // Wait until `a` holds the lock, then the impatient one fails naming the holder.
    eventually("a to hold the lock", Duration::from_secs(20), || async {
        let v = env.deployment(&a).await?;
        if v.token.is_some() {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    })
    .await;
    let c = env.deploy(&impatient).await;
    let da = env.settled(&a).await;
    let db = env.settled(&b).await;
    let dc = env.settled(&c).await;
    assert_eq!(da.state, DeploymentState::Success, "{da:?}");
    assert_eq!(db.state, DeploymentState::Success, "{db:?}");
    assert!(db.token > da.token);
    assert_eq!(dc.state, DeploymentState::Failed, "{dc:?}");
    let why = dc.failure.as_deref().unwrap_or("");
    assert!(why.contains("held by deployment"), "{why}");
    assert_serving(Env::port_of(&db, "web-1"), "v2").await;
    assert_eq!(Env::port_of(&da, "web-1"), Env::port_of(&db, "web-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_second_server_fails_the_first_is_rolled_back_too() {
    let env = Env::start(1, &["web-1", "web-2"], &["split-api"]).await;
    let id = env
        .deploy(&body("split-api", "v1", &["web-1", "web-2"]))
        .await;
    // After validation has allocated web-2's port, a foreign process grabs it: web-2's
    // container cannot start, so web-1 (already moved) must be rolled back.
    let port2 = eventually(
        "validation to allocate ports",
        Duration::from_secs(30),
        || async {
            let v = env.deployment(&id).await?;
            if v.state == DeploymentState::InProgress {
                Ok(Env::port_of(&v, "web-2"))
            } else {
                Err(format!("{}", v.state))
            }
        },
    )
    .await;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port2)).expect("grab web-2's port");
    let d = env.settled(&id).await;
    drop(squatter);
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    let steps: Vec<(String, ServerStepState)> = d
        .servers
        .iter()
        .map(|s| (s.server.to_string(), s.state))
        .collect();
    assert!(
        steps.contains(&("web-1".into(), ServerStepState::RolledBack)),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|(_, s)| *s == ServerStepState::Succeeded),
        "{steps:?}"
    );
    // Neither server serves the service: it is not split across versions.
    let port1 = Env::port_of(&d, "web-1");
    assert!(version_on(port1).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_mid_deploy_still_ends_correctly() {
    let mut env = Env::start(3, &["web-1"], &["failover-api"]).await;
    let v1 = env.deploy(&body("failover-api", "v1", &["web-1"])).await;
    let d1 = env.settled(&v1).await;
    let port = Env::port_of(&d1, "web-1");
    let mut slow = body("failover-api", "v2", &["web-1"]);
    slow["health"]["start_period"] = json!("2s");
    let v2 = env.deploy(&slow).await;
    eventually("v2 to be in progress", Duration::from_secs(30), || async {
        let v = env.deployment(&v2).await?;
        if v.state == DeploymentState::InProgress {
            Ok(())
        } else {
            Err(format!("{}", v.state))
        }
    })
    .await;
    let leader = env.cluster.leader().await;
    env.cluster.nodes[leader].kill();
    let d2 = env.settled(&v2).await;
    assert_eq!(d2.state, DeploymentState::Success, "{d2:?}");
    // The new leader re-fenced: the final token is larger than the one v2 started with.
    assert!(d2.token > d1.token);
    assert_serving(port, "v2").await;
    env.cluster.nodes[leader].start().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_mid_deploy_reports_the_truth() {
    let mut env = Env::start(1, &["web-1"], &["agentkill-api"]).await;
    let v1 = env.deploy(&body("agentkill-api", "v1", &["web-1"])).await;
    let port = Env::port_of(&env.settled(&v1).await, "web-1");
    let mut slow = body("agentkill-api", "v2", &["web-1"]);
    slow["health"]["start_period"] = json!("2s");
    let v2 = env.deploy(&slow).await;
    eventually("web-1 to be deploying", Duration::from_secs(30), || async {
        let v = env.deployment(&v2).await?;
        match v.servers.first() {
            Some(s) if s.state == ServerStepState::Deploying => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    env.agents[0].kill();
    env.agents[0].spawn();
    let d2 = env.settled(&v2).await;
    assert_eq!(d2.state, DeploymentState::Success, "{d2:?}");
    assert_serving(port, "v2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_mid_deploy_rolls_back_what_moved() {
    let env = Env::start(1, &["web-1"], &["cancel-api"]).await;
    let v1 = env.deploy(&body("cancel-api", "v1", &["web-1"])).await;
    let port = Env::port_of(&env.settled(&v1).await, "web-1");
    let mut slow = body("cancel-api", "v2", &["web-1"]);
    slow["health"]["start_period"] = json!("1s");
    let v2 = env.deploy(&slow).await;
    eventually("v2 to be in progress", Duration::from_secs(30), || async {
        let v = env.deployment(&v2).await?;
        if v.state == DeploymentState::InProgress {
            Ok(())
        } else {
            Err(format!("{}", v.state))
        }
    })
    .await;
    let v = env.api().cancel_deployment(&v2).await.unwrap();
    assert!(v.cancel_requested, "{v:?}");
    let d = env.settled(&v2).await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    assert_eq!(d.failure.as_deref(), Some("cancelled"));
    assert_serving(port, "v1").await;
    // One rule on every server: nothing of a version that was rolled back stays (a failed
    // deploy removes its container on its own server; the rollback of a server that had
    // succeeded removes it too). Its log tail is in the record instead.
    let left = sluice_tests::agent_support::docker(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=sluice.deployment={v2}"),
    ]);
    assert!(left.trim().is_empty(), "containers of {v2} left: {left}");
    // A settled deployment cannot be cancelled.
    let (s, p) = refusal(env.api().cancel_deployment(&v2).await);
    assert_eq!((s, p.code.as_str()), (409, "conflict"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_labels_need_an_explicit_allow() {
    let mut env = Env::start(1, &[], &["policy-api"]).await;
    let addrs = vec![env.cluster.nodes[0].addr.clone()];
    env.agents.push(AgentProc::start(
        "prod-1",
        &addrs,
        &port_range(),
        "labels = [\"env=prod\"]",
    ));
    eventually("prod-1 registered", Duration::from_secs(20), || async {
        env.api()
            .server(&name("prod-1"))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let policy = Policy {
        protected_labels: vec![Label::parse("env=prod").unwrap()],
    };
    env.api().put_policy(&policy).await.unwrap();
    let refused = env.deploy(&body("policy-api", "v1", &["prod-1"])).await;
    let d = env.settled(&refused).await;
    assert_eq!(d.state, DeploymentState::Failed, "{d:?}");
    assert!(
        d.failure.as_deref().unwrap().contains("protected label"),
        "{d:?}"
    );
    let mut allowed = body("policy-api", "v1", &["prod-1"]);
    allowed["allow_labels"] = json!(["env=prod"]);
    let ok = env.deploy(&allowed).await;
    let d = env.settled(&ok).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    assert_serving(Env::port_of(&d, "prod-1"), "v1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_deployment_hits_its_progress_deadline_and_rolls_back() {
    let env = Env::start(1, &["web-1"], &["stall-api"]).await;
    let v1 = env.deploy(&body("stall-api", "v1", &["web-1"])).await;
    let port = Env::port_of(&env.settled(&v1).await, "web-1");
    let mut stalls = body("stall-api", "v2", &["web-1"]);
    stalls["env"]["TESTAPP_START_DELAY_MS"] = json!({"value": "60000"});
    stalls["health"] = json!({"kind": "http", "path": "/health", "interval": "500ms", "retries": 10, "timeout": "500ms"});
    stalls["progress_deadline"] = json!("2s");
    let v2 = env.deploy(&stalls).await;
    let d = env.settled(&v2).await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    assert!(
        d.failure
            .as_deref()
            .unwrap_or("")
            .contains("progress deadline"),
        "{d:?}"
    );
    assert_serving(port, "v1").await;
}

/// Milliseconds from the deployment's acceptance to its transition into `to`.
fn ms_to(d: &DeploymentView, to: DeploymentState) -> u64 {
    let t = d
        .transitions
        .iter()
        .find(|t| t.to == to)
        .unwrap_or_else(|| panic!("no transition to {to}: {d:?}"));
    t.at.as_millis() - d.created_at.as_millis()
}

/// Issue 13 #3: the deadline bounds the agent too. Before, the agent went on checking the
/// new container for its whole retry budget (here 30 s) after the coordinator gave up; now
/// the coordinator aborts the agent's deploy, and the agent also stops at its own copy of
/// the deadline when the coordinator is gone.
#[tokio::test(flavor = "multi_thread")]
async fn the_progress_deadline_stops_the_agent_too_even_without_the_coordinator() {
    let mut env = Env::start(1, &["web-1"], &["deadline-api"]).await;
    let v1 = env.deploy(&body("deadline-api", "v1", &["web-1"])).await;
    let port = Env::port_of(&env.settled(&v1).await, "web-1");
    let slow = |deadline: &str| {
        let mut b = body("deadline-api", "v2", &["web-1"]);
        b["env"]["TESTAPP_START_DELAY_MS"] = json!({"value": "60000"});
        // A 30 s health budget: far past the deadline.
        b["health"] = json!({"kind": "http", "path": "/health", "interval": "500ms",
                             "retries": 60, "timeout": "500ms"});
        b["progress_deadline"] = json!(deadline);
        b
    };

    // The coordinator gives up at 3 s and tells the agent.
    let v2 = env.deploy(&slow("3s")).await;
    let d = env.settled(&v2).await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    let took = ms_to(&d, DeploymentState::RolledBack);
    assert!(
        took < 15_000,
        "rolled back {took} ms after acceptance with a 3 s deadline (the agent's health budget is 30 s): {d:?}"
    );
    assert_serving(port, "v1").await;

    // The coordinator dies once the agent has the deploy: the agent stops by itself at
    // the deadline and v1 serves again while no coordinator is up.
    let v3 = env.deploy(&slow("4s")).await;
    eventually(
        "the agent to take the deploy",
        Duration::from_secs(20),
        || async {
            let d = env.deployment(&v3).await?;
            let deploying = d
                .servers
                .iter()
                .any(|s| s.state == ServerStepState::Deploying);
            deploying
                .then_some(())
                .ok_or(format!("{:?}", d.phase.as_str()))
        },
    )
    .await;
    env.cluster.nodes[0].kill();
    let cut = std::time::Instant::now();
    // v2 never listens, so the port answers again only once v1 is back.
    assert_serving_within(port, "v1", Duration::from_secs(20)).await;
    assert!(
        cut.elapsed() < Duration::from_secs(20),
        "v1 came back {:?} after the coordinator died",
        cut.elapsed()
    );
    env.cluster.nodes[0].start().await;
    let d = env.settled(&v3).await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    assert_serving(port, "v1").await;
}

async fn assert_serving_within(port: u16, version: &str, within: Duration) {
    eventually(&format!("{version} on port {port}"), within, || async {
        match version_on(port).await {
            Ok(v) if v == version => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Issue 13 #2: v2's health check is one only v2 would pass (`/ready`, which the test app
/// does not serve). The restored v1 must be judged by the check it was deployed with
/// (`/health`): before, it was checked with `/ready`, failed, and the deployment ended
/// "rollback failed: needs an operator" while v1 served fine.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_judges_the_previous_version_by_its_own_health_check() {
    let env = Env::start(1, &["web-1", "web-2"], &["own-health"]).await;
    let v1 = env
        .deploy(&body("own-health", "v1", &["web-1", "web-2"]))
        .await;
    let d1 = env.settled(&v1).await;
    assert_eq!(d1.state, DeploymentState::Success, "{d1:?}");
    let mut v2 = body("own-health", "v2", &["web-1", "web-2"]);
    v2["health"] = json!({"kind": "http", "path": "/ready", "interval": "200ms",
                          "retries": 3, "timeout": "1s"});
    let id = env.deploy(&v2).await;
    let d = env.settled(&id).await;
    assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
    assert!(!d.phase.as_str().contains("needs an operator"), "{d:?}");
    for s in ["web-1", "web-2"] {
        assert_serving(Env::port_of(&d1, s), "v1").await;
    }
}

/// Issue 19: a port already bound on the host (here by a plain listener; in the report, by
/// another Sluice state's container) is never allocated, even right after the agent
/// registers and before its first heartbeat: the registration itself reports it.
#[tokio::test(flavor = "multi_thread")]
async fn a_port_bound_on_the_host_is_skipped_from_the_first_allocation() {
    let env = Env::start(1, &[], &[]).await;
    let range = port_range();
    let lo: u16 = range.split('-').next().unwrap().parse().unwrap();
    let _held = std::net::TcpListener::bind(("0.0.0.0", lo)).expect("the range's first port");
    let addrs: Vec<String> = env.cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let _agent = AgentProc::start("bound-1", &addrs, &range, "");
    eventually("the agent registered", Duration::from_secs(20), || async {
        env.api()
            .server(&name("bound-1"))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let v = env
        .api()
        .allocate_port(
            &name("bound-1"),
            &ServiceName::parse("first-service").unwrap(),
            &AllocatePortRequest::default(),
        )
        .await
        .unwrap();
    assert_ne!(v.port, lo, "a port bound on the host was allocated: {v:?}");
    assert_eq!(v.port, lo + 1, "{v:?}");
}
