//! Crash loop: for seeded iterations, start a deployment, `kill -9` a coordinator (the
//! leader or a follower) or an agent at a random moment, start it again, and check the
//! invariants every time:
//! - every accepted deployment reaches a final state within its deadline, and none is lost;
//! - no lock outlives its deployment, and no deployment is refused for a lock that only a
//!   finished deployment could hold;
//! - no server runs two versions of the service, and the servers never stay split;
//! - no port is allocated twice on a server;
//! - fencing tokens only grow, deployment after deployment;
//! - the audit chain verifies;
//! - and afterwards, with nothing killed, a deployment succeeds everywhere.
//!
//! `SLUICE_CRASH_SEED` picks the seed (printed on every run, so a failure can be replayed)
//! and `SLUICE_CRASH_ITERATIONS` the count (default 6, so CI stays quick; the documented
//! long run is `SLUICE_CRASH_ITERATIONS=200`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sluice_common::api::LockView;
use sluice_common::audit::verify;
use sluice_common::client::ClientError;
use sluice_common::deployment::DeploymentState;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::agent_support::docker;
use sluice_tests::cluster::{deployment_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, image};

const SERVICE: &str = "crash-api";
const SERVERS: [&str; 2] = ["crash-1", "crash-2"];

/// xorshift64*: enough randomness to pick victims, and replayable from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Posts a deployment to some running node, retrying while the cluster cannot serve.
async fn deploy(c: &Cluster, tag: &str) -> String {
    let body = deployment_request(&json!({
        "service": SERVICE, "image": image(tag), "servers": SERVERS,
        "container_port": 8080, "progress_deadline": "60s",
        "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 5, "timeout": "1s"},
    }));
    eventually(
        "a deployment to be accepted",
        Duration::from_secs(30),
        || async {
            for i in (0..c.nodes.len()).filter(|&i| c.nodes[i].is_running()) {
                match c.api(i).create_deployment(&body, None).await {
                    Ok(created) => {
                        assert!(!created.replayed, "{:?}", created.deployment);
                        return Ok(created.deployment.id.to_string());
                    }
                    Err(ClientError::Transport { .. }) => continue,
                    Err(ClientError::Problem {
                        status, problem, ..
                    }) => assert!(status.as_u16() >= 500, "refused: {status} {problem:?}"),
                    Err(e) => panic!("{e}"),
                }
            }
            Err("no node accepted it".to_string())
        },
    )
    .await
}

/// Images of the service's running containers, per server.
fn running() -> BTreeMap<String, Vec<String>> {
    let out = docker(&[
        "ps",
        "--filter",
        &format!("label=sluice.service={SERVICE}"),
        "--format",
        "{{.Label \"sluice.server\"}} {{.Image}}",
    ]);
    let mut by_server: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        if let Some((server, img)) = line.split_once(' ') {
            by_server
                .entry(server.to_string())
                .or_default()
                .push(img.to_string());
        }
    }
    by_server
}

/// Checks every invariant; returns the last deployment's final state.
async fn check_invariants(c: &Cluster, accepted: &[String], round: usize) -> String {
    // Every accepted deployment exists and has ended.
    let mut settled = Vec::new();
    for id in accepted {
        settled.push(c.final_deployment(id, Duration::from_secs(120)).await);
    }
    let last = settled.last().unwrap().clone();

    // Every deployment has ended, so none may hold a lock (a linearizable list, so the
    // node asked has applied every finishing entry).
    let locks = eventually("the lock list", Duration::from_secs(30), || {
        c.on_any("the lock list", |api| async move { api.locks().await })
    })
    .await;
    let held: Vec<&LockView> = locks
        .locks
        .iter()
        .filter(|l| l.holder.as_str().starts_with("deployment "))
        .collect();
    assert!(
        held.is_empty(),
        "round {round}: a lock outlives its deployment: {held:?}"
    );
    // Each round's deployment was posted after every earlier one had ended: a refusal
    // naming a held service lock cannot be true then.
    let why = last.failure.as_deref().unwrap_or("");
    assert!(
        !why.contains("service lock is held"),
        "round {round}: refused for a lock nobody should hold: {last:?}"
    );

    // No server runs two versions; the servers agree.
    let images = eventually(
        &format!("round {round}: one version per server, the same everywhere"),
        Duration::from_secs(30),
        || async {
            let r = running();
            let all: Vec<&String> = r.values().flatten().collect();
            if r.values().any(|v| v.len() > 1) {
                return Err(format!("two versions on one server: {r:?}"));
            }
            if all.windows(2).any(|w| w[0] != w[1]) {
                return Err(format!("servers split: {r:?}"));
            }
            Ok(r)
        },
    )
    .await;
    if last.state == DeploymentState::Success {
        for s in SERVERS {
            assert_eq!(
                images.get(s),
                Some(&vec![last.image.to_string()]),
                "round {round}: {s} after {last:?}"
            );
        }
    }

    // No port twice on a server.
    let ports = eventually("the port ledger", Duration::from_secs(30), || {
        c.on_any("the port ledger", |api| async move { api.ports().await })
    })
    .await;
    for s in &ports.servers {
        let mut seen: Vec<u16> = s.assignments.values().copied().collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "round {round}: a port twice: {s:?}");
    }

    // Tokens only grow, in the order deployments were accepted.
    let tokens: Vec<u64> = settled
        .iter()
        .filter_map(|d| d.token.map(|t| t.0))
        .collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "round {round}: tokens {tokens:?}"
    );

    // The audit chain verifies.
    // From whichever node answers: one restarted a moment ago may not serve yet.
    let recs = eventually(
        &format!("round {round}: an audit export"),
        Duration::from_secs(30),
        || async {
            let mut last = String::from("no running node");
            for i in (0..c.nodes.len()).filter(|&i| c.nodes[i].is_running()) {
                match c.audit(i).await {
                    Ok(r) => return Ok(r),
                    Err(e) => last = e,
                }
            }
            Err(last)
        },
    )
    .await;
    assert_eq!(verify(&recs), Ok(recs.len() as u64), "round {round}");
    match last.failure.as_deref() {
        Some(why) => format!("{} ({why})", last.state),
        None => last.state.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invariants_hold_while_processes_are_killed_mid_deployment() {
    let seed: u64 = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let rounds: usize = std::env::var("SLUICE_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("crash loop: SLUICE_CRASH_SEED={seed} SLUICE_CRASH_ITERATIONS={rounds}");
    let mut rng = Rng(seed);

    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    let mut c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        3,
        NodeOpts::default(),
    )
    .await;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    // Below 32768, out of the kernel's ephemeral range (see security.rs).
    let base = 16000 + (std::process::id() % 50) as u16 * 40;
    let mut agents: Vec<AgentProc> = SERVERS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let lo = base + i as u16 * 20;
            AgentProc::start(s, &addrs, &format!("{lo}-{}", lo + 19), "")
        })
        .collect();
    eventually("agents registered", Duration::from_secs(20), || async {
        let v = c
            .on_any("the servers", |api| async move { api.servers().await })
            .await?;
        let up = v.iter().filter(|s| s.up).count();
        (up == SERVERS.len()).then_some(()).ok_or(format!("{v:?}"))
    })
    .await;

    let mut accepted = Vec::new();
    let first = deploy(&c, "v1").await;
    accepted.push(first);
    check_invariants(&c, &accepted, 0).await;

    for round in 1..=rounds {
        let tag = match rng.below(5) {
            0 => "broken",
            n if n % 2 == 0 => "v1",
            _ => "v2",
        };
        let id = deploy(&c, tag).await;
        accepted.push(id.clone());
        // Fault injection, not synchronisation: the kill lands at a random point.
        let delay = rng.below(2500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let victim = rng.below(3);
        let what = match victim {
            0 => {
                let l = c.leader().await;
                c.nodes[l].kill();
                c.nodes[l].start().await;
                format!("leader node {}", c.nodes[l].id)
            }
            1 => {
                let l = c.leader().await;
                let f = c.others(l)[rng.below(2) as usize];
                c.nodes[f].kill();
                c.nodes[f].start().await;
                format!("follower node {}", c.nodes[f].id)
            }
            _ => {
                let a = rng.below(agents.len() as u64) as usize;
                agents[a].kill();
                agents[a].spawn();
                format!("agent {}", agents[a].name)
            }
        };
        let outcome = check_invariants(&c, &accepted, round).await;
        eprintln!("round {round}: {tag} ({id}), killed the {what} after {delay} ms: {outcome}");
    }
    // After all that, with nothing killed, a deployment simply succeeds everywhere.
    let calm = deploy(&c, "v2").await;
    accepted.push(calm);
    let outcome = check_invariants(&c, &accepted, rounds + 1).await;
    assert_eq!(outcome, "success", "the cluster did not recover");
    drop(agents);
    remove_containers(SERVICE);
}
