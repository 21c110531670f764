//! Deployments end to end: real coordinators, real agents, the real Docker daemon, through
//! the HTTP API.

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
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
    http: reqwest::Client,
    services: Vec<String>,
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
            http: cluster.http.clone(),
            cluster,
            agents,
            services: services.iter().map(|s| s.to_string()).collect(),
        };
        let names: Vec<String> = env.agents.iter().map(|a| a.name.clone()).collect();
        eventually(
            "every agent registered",
            Duration::from_secs(20),
            || async {
                let (_, v) = env.get("/v1/servers").await;
                let got: Vec<String> = v
                    .as_array()
                    .ok_or(format!("{v}"))?
                    .iter()
                    .map(|s| s["name"].as_str().unwrap_or("").to_string())
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

    fn url(&self, path: &str) -> String {
        // Any node accepts any request; spread them.
        let i = path.len() % self.cluster.nodes.len();
        let i = if self.cluster.nodes[i].is_running() {
            i
        } else {
            (0..self.cluster.nodes.len())
                .find(|&j| self.cluster.nodes[j].is_running())
                .unwrap()
        };
        self.cluster.nodes[i].url(path)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn deploy(&self, body: &Value) -> String {
        let (s, v) = self.post("/v1/deployments", body, None).await;
        assert_eq!(s, 202, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Polls until the deployment has settled (nothing left for the sequencer to do).
    async fn settled(&self, id: &str) -> Value {
        self.cluster
            .final_deployment(id, Duration::from_secs(90))
            .await
    }

    fn port_of(v: &Value, server: &str) -> u16 {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["server"] == server)
            .and_then(|s| s["port"].as_u64())
            .unwrap_or_else(|| panic!("no port for {server}: {v}")) as u16
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for s in &self.services {
            remove_containers(s);
        }
    }
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

fn states(v: &Value) -> Vec<String> {
    let mut out = vec!["pending".to_string()];
    for t in v["transitions"].as_array().unwrap() {
        out.push(t["to"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_v2_is_rolled_back_and_v1_keeps_serving_on_the_same_port() {
    let env = Env::start(3, &["web-1"], &["seed-api"]).await;
    let v1 = env.deploy(&body("seed-api", "v1", &["web-1"])).await;
    let d1 = env.settled(&v1).await;
    assert_eq!(d1["state"], "success", "{d1}");
    assert_eq!(
        states(&d1),
        ["pending", "validating", "in_progress", "success"]
    );
    let port = Env::port_of(&d1, "web-1");
    assert_serving(port, "v1").await;
    assert_eq!(d1["validation"].as_array().unwrap().len(), 4, "{d1}");

    // Follow the broken deployment live over SSE while it runs.
    let broken = env.deploy(&body("seed-api", "broken", &["web-1"])).await;
    let mut events = env
        .http
        .get(env.url(&format!("/v1/deployments/{broken}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    while let Ok(Some(chunk)) = events.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"state\":\"rolled_back\""), "{seen}");
    assert!(seen.contains("event: deployment"));

    let d2 = env.settled(&broken).await;
    assert_eq!(d2["state"], "rolled_back", "{d2}");
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
    let step = &d2["servers"][0];
    assert!(
        step["log_tail"].as_str().is_some_and(|t| !t.is_empty()),
        "no log tail: {d2}"
    );
    assert!(d2["failure"].as_str().is_some());
    // The service view agrees, and the secret never shows.
    let (_, services) = env.get("/v1/services").await;
    let svc = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "seed-api")
        .unwrap();
    assert_eq!(svc["servers"][0]["image"], image("v1"));
    for text in [d1.to_string(), d2.to_string(), seen, services.to_string()] {
        assert!(!text.contains("sup3r-s3cret-value"));
    }

    // Metrics reflect it (every node exports the replicated figures).
    let metrics = env
        .http
        .get(env.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
        (d3["state"].as_str(), d3["noop"].as_bool()),
        (Some("success"), Some(true)),
        "{d3}"
    );
    assert_serving(port, "v1").await;

    // Manual rollback of v1 (the first deployment): nothing ran before it.
    let (s, v) = env
        .post(&format!("/v1/deployments/{v1}/rollback"), &json!({}), None)
        .await;
    assert_eq!(s, 202, "{v}");
    let d1 = env.settled(&v1).await;
    assert_eq!(d1["state"], "rolled_back", "{d1}");
    assert!(
        version_on(port).await.is_err(),
        "nothing should serve after rolling back the first version"
    );

    // Deployed again, then the same image with a changed environment: not a no-op.
    let fresh = env.deploy(&body("seed-api", "v1", &["web-1"])).await;
    assert_eq!(env.settled(&fresh).await["state"], "success");
    // The same image with a changed environment is not a no-op: it is deployed.
    let mut changed = body("seed-api", "v1", &["web-1"]);
    changed["env"]["GREETING"] = json!({"value": "bonjour"});
    let again = env.deploy(&changed).await;
    let d4 = env.settled(&again).await;
    assert_eq!(
        (d4["state"].as_str(), d4["noop"].as_bool()),
        (Some("success"), Some(false)),
        "{d4}"
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
    let b = body("idem-api", "v1", &["web-1"]);
    let (s1, first) = env.post("/v1/deployments", &b, Some("ci-run-7")).await;
    assert_eq!(s1, 202, "{first}");
    let (s2, replay) = env.post("/v1/deployments", &b, Some("ci-run-7")).await;
    assert_eq!(s2, 200, "{replay}");
    assert_eq!(first["id"], replay["id"]);
    let other = body("idem-api", "v2", &["web-1"]);
    let (s3, p) = env.post("/v1/deployments", &other, Some("ci-run-7")).await;
    assert_eq!(
        (s3, p["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{p}"
    );
    let d = env.settled(first["id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "success");

    // web-2 forbidden, an image that does not exist, and a server that does not exist:
    // every failure is reported at once and nothing is touched.
    let (s, v) = env.post("/v1/servers/web-2/forbid", &json!({}), None).await;
    assert_eq!((s, v["forbidden"].as_bool()), (200, Some(true)), "{v}");
    let (_, servers) = env.get("/v1/servers").await;
    let web1 = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web-1")
        .unwrap();
    assert_eq!(web1["up"], true, "{web1}");
    assert!(web1["ports_used"].as_u64() >= Some(1), "{web1}");
    assert_eq!(
        web1["ports_used"].as_u64().unwrap() + web1["ports_free"].as_u64().unwrap(),
        20
    );
    let bad = json!({
        "service": "idem-api", "image": "sluice-testapp:does-not-exist",
        "servers": ["web-1", "web-2", "ghost"], "container_port": 8080,
        "health": {"kind": "tcp"}
    });
    let id = env.deploy(&bad).await;
    let d = env.settled(&id).await;
    assert_eq!(d["state"], "failed", "{d}");
    assert_eq!(states(&d), ["pending", "validating", "failed"]);
    let failed: Vec<(String, String)> = d["validation"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["check"].as_str().unwrap().into(),
                c["server"].as_str().unwrap().into(),
            )
        })
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
    let (s, v) = env.post("/v1/servers/web-2/allow", &json!({}), None).await;
    assert_eq!((s, v["forbidden"].as_bool()), (200, Some(false)), "{v}");
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
        let (_, v) = env.get(&format!("/v1/deployments/{a}")).await;
        if v["token"].is_u64() {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
    let c = env.deploy(&impatient).await;
    let da = env.settled(&a).await;
    let db = env.settled(&b).await;
    let dc = env.settled(&c).await;
    assert_eq!(da["state"], "success", "{da}");
    assert_eq!(db["state"], "success", "{db}");
    assert!(db["token"].as_u64() > da["token"].as_u64());
    assert_eq!(dc["state"], "failed", "{dc}");
    let why = dc["failure"].as_str().unwrap_or("");
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
            let (_, v) = env.get(&format!("/v1/deployments/{id}")).await;
            if v["state"] == "in_progress" {
                Ok(Env::port_of(&v, "web-2"))
            } else {
                Err(format!("{}", v["state"]))
            }
        },
    )
    .await;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port2)).expect("grab web-2's port");
    let d = env.settled(&id).await;
    drop(squatter);
    assert_eq!(d["state"], "rolled_back", "{d}");
    let steps: Vec<(String, String)> = d["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap().into(),
                s["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("web-1".into(), "rolled_back".into())),
        "{steps:?}"
    );
    assert!(!steps.iter().any(|(_, s)| s == "succeeded"), "{steps:?}");
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
        let (_, v) = env.get(&format!("/v1/deployments/{v2}")).await;
        if v["state"] == "in_progress" {
            Ok(())
        } else {
            Err(format!("{}", v["state"]))
        }
    })
    .await;
    let leader = env.cluster.leader().await;
    env.cluster.nodes[leader].kill();
    let d2 = env.settled(&v2).await;
    assert_eq!(d2["state"], "success", "{d2}");
    // The new leader re-fenced: the final token is larger than the one v2 started with.
    let started_with = d2["transitions"][0]["reason"].clone();
    let _ = started_with;
    assert!(d2["token"].as_u64() > d1["token"].as_u64());
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
        let (_, v) = env.get(&format!("/v1/deployments/{v2}")).await;
        if v["servers"][0]["state"] == "deploying" {
            Ok(())
        } else {
            Err(format!("{}", v["servers"][0]))
        }
    })
    .await;
    env.agents[0].kill();
    env.agents[0].spawn();
    let d2 = env.settled(&v2).await;
    assert_eq!(d2["state"], "success", "{d2}");
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
        let (_, v) = env.get(&format!("/v1/deployments/{v2}")).await;
        if v["state"] == "in_progress" {
            Ok(())
        } else {
            Err(format!("{}", v["state"]))
        }
    })
    .await;
    let (s, v) = env
        .post(&format!("/v1/deployments/{v2}/cancel"), &json!({}), None)
        .await;
    assert_eq!(
        (s, v["cancel_requested"].as_bool()),
        (202, Some(true)),
        "{v}"
    );
    let d = env.settled(&v2).await;
    assert_eq!(d["state"], "rolled_back", "{d}");
    assert_eq!(d["failure"], "cancelled");
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
    let (s, v) = env
        .post(&format!("/v1/deployments/{v2}/cancel"), &json!({}), None)
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
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
        let (s, v) = env.get("/v1/servers/prod-1").await;
        if s == 200 {
            Ok(())
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await;
    let r = env
        .http
        .put(env.url("/v1/policy"))
        .json(&json!({"protected_labels": ["env=prod"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let refused = env.deploy(&body("policy-api", "v1", &["prod-1"])).await;
    let d = env.settled(&refused).await;
    assert_eq!(d["state"], "failed", "{d}");
    assert!(
        d["failure"].as_str().unwrap().contains("protected label"),
        "{d}"
    );
    let mut allowed = body("policy-api", "v1", &["prod-1"]);
    allowed["allow_labels"] = json!(["env=prod"]);
    let ok = env.deploy(&allowed).await;
    let d = env.settled(&ok).await;
    assert_eq!(d["state"], "success", "{d}");
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
    assert_eq!(d["state"], "rolled_back", "{d}");
    assert!(
        d["failure"]
            .as_str()
            .unwrap_or("")
            .contains("progress deadline"),
        "{d}"
    );
    assert_serving(port, "v1").await;
}

/// Milliseconds from the deployment's acceptance to its transition into `to`.
fn ms_to(d: &Value, to: &str) -> u64 {
    let at = |s: &Value| {
        sluice_common::time::Timestamp::parse(s.as_str().unwrap())
            .unwrap()
            .as_millis()
    };
    let t = d["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["to"] == to)
        .unwrap_or_else(|| panic!("no transition to {to}: {d}"));
    at(&t["at"]) - at(&d["created_at"])
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
    assert_eq!(d["state"], "rolled_back", "{d}");
    let took = ms_to(&d, "rolled_back");
    assert!(
        took < 15_000,
        "rolled back {took} ms after acceptance with a 3 s deadline (the agent's health budget is 30 s): {d}"
    );
    assert_serving(port, "v1").await;

    // The coordinator dies once the agent has the deploy: the agent stops by itself at
    // the deadline and v1 serves again while no coordinator is up.
    let v3 = env.deploy(&slow("4s")).await;
    eventually(
        "the agent to take the deploy",
        Duration::from_secs(20),
        || async {
            let (_, d) = env.get(&format!("/v1/deployments/{v3}")).await;
            let deploying = d["servers"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["state"] == "deploying"));
            deploying.then_some(()).ok_or(format!("{}", d["phase"]))
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
    assert_eq!(d["state"], "rolled_back", "{d}");
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
    assert_eq!(d1["state"], "success", "{d1}");
    let mut v2 = body("own-health", "v2", &["web-1", "web-2"]);
    v2["health"] = json!({"kind": "http", "path": "/ready", "interval": "200ms",
                          "retries": 3, "timeout": "1s"});
    let id = env.deploy(&v2).await;
    let d = env.settled(&id).await;
    assert_eq!(d["state"], "rolled_back", "{d}");
    assert!(
        !d["phase"]
            .as_str()
            .unwrap_or("")
            .contains("needs an operator"),
        "{d}"
    );
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
        match env.get("/v1/servers/bound-1").await {
            (200, _) => Ok(()),
            (s, v) => Err(format!("{s} {v}")),
        }
    })
    .await;
    let (s, v) = env
        .post("/v1/ports/bound-1/first-service", &json!({}), None)
        .await;
    assert!((200..300).contains(&s), "{s} {v}");
    assert_ne!(v["port"], lo, "a port bound on the host was allocated: {v}");
    assert_eq!(v["port"], lo + 1, "{v}");
}
