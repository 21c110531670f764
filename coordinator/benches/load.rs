//! `cargo build --release -p sluice-agent && cargo bench -p sluice-coordinator --bench load`
//!
//! Load: many concurrent CI clients deploying across several services, with contention on
//! each service's lock (clients queue behind it with `lock_wait`), through a 3-node
//! cluster to two agents on the real Docker daemon. Prints API latency percentiles (the
//! deploy call, the status reads while waiting, end to end) and throughput, then checks
//! every invariant: every accepted deployment succeeded, no server runs two versions of a
//! service, no port is allocated twice, fencing tokens grow per service in acceptance
//! order, and the audit chain verifies. `LOAD_CLIENTS`, `LOAD_SERVICES` and `LOAD_PER_CLIENT`
//! change the shape (defaults 12, 4, 3).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::audit::verify;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::agent_support::docker;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::testapp_image::{ensure_test_images, image};
use tokio::sync::Mutex;

#[path = "support/stats.rs"]
mod stats;

use stats::{ms, pct};

const SERVERS: [&str; 2] = ["load-1", "load-2"];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Samples {
    post: Vec<Duration>,
    read: Vec<Duration>,
    end_to_end: Vec<Duration>,
    /// (service, accepted order, deployment id)
    accepted: Vec<(String, usize, String)>,
    /// Deployments that found their image already running.
    noops: usize,
}

fn row(name: &str, mut v: Vec<Duration>) {
    v.sort();
    if v.is_empty() {
        return;
    }
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        v.len(),
        ms(pct(&v, 0.5)),
        ms(pct(&v, 0.99)),
        ms(*v.last().unwrap())
    );
}

async fn client(
    c: Arc<Cluster>,
    n: usize,
    services: usize,
    per: usize,
    samples: Arc<Mutex<Samples>>,
    order: Arc<std::sync::atomic::AtomicUsize>,
) {
    for k in 0..per {
        let service = format!("load-s{}", (n + k) % services);
        // The environment names this deployment, so each one replaces the container (an
        // identical request would be a no-op).
        let tag = if (n + k).is_multiple_of(2) {
            "v1"
        } else {
            "v2"
        };
        let node = (n + k) % c.nodes.len();
        let body = json!({
            "service": service, "image": image(tag), "servers": SERVERS,
            "container_port": 8080, "lock_wait": "600s",
            "env": {"LOAD_NTH": {"value": format!("{n}-{k}")}},
            "health": {"kind": "http", "path": "/health", "interval": "100ms", "retries": 30},
        });
        let t = Instant::now();
        let r = c
            .http
            .post(c.nodes[node].url("/v1/deployments"))
            .json(&body)
            .send()
            .await
            .expect("deploy call");
        let post = t.elapsed();
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        let seq = order.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut reads = Vec::new();
        let noop = loop {
            let t2 = Instant::now();
            let d: Value = c
                .http
                .get(c.nodes[node].url(&format!("/v1/deployments/{id}")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            reads.push(t2.elapsed());
            match d["state"].as_str() {
                Some("success") => break d["noop"] == true,
                Some("failed" | "rolled_back") => panic!("{id} ended {}", d),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let mut s = samples.lock().await;
        s.noops += usize::from(noop);
        s.post.push(post);
        s.read.extend(reads);
        s.end_to_end.push(t.elapsed());
        s.accepted.push((service, seq, id));
    }
}

#[tokio::main]
async fn main() {
    let clients = env("LOAD_CLIENTS", 12);
    let services = env("LOAD_SERVICES", 4);
    let per = env("LOAD_PER_CLIENT", 3);
    ensure_test_images().expect("test images");
    for s in 0..services {
        remove_containers(&format!("load-s{s}"));
    }
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        3,
        NodeOpts::default(),
    )
    .await;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    let agents: Vec<AgentProc> = SERVERS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let lo = 34000 + i as u16 * 100;
            AgentProc::start(s, &addrs, &format!("{lo}-{}", lo + 99), "")
        })
        .collect();
    loop {
        let v: Value = c
            .http
            .get(c.nodes[0].url("/v1/servers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let up = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|s| s["up"] == true).count());
        if up == SERVERS.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let c = Arc::new(c);
    let samples = Arc::new(Mutex::new(Samples::default()));
    let order = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..clients {
        tasks.spawn(client(
            c.clone(),
            n,
            services,
            per,
            samples.clone(),
            order.clone(),
        ));
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("a client failed");
    }
    let wall = started.elapsed();
    let s = std::mem::take(&mut *samples.lock().await);
    let total = s.accepted.len();

    println!("\n## Load: {clients} CI clients × {per} deployments over {services} services, 3 coordinators, 2 servers\n");
    println!("| call | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    row("POST /v1/deployments (accept)", s.post.clone());
    row("GET /v1/deployments/{id} (while waiting)", s.read.clone());
    row(
        "deploy, call → success (incl. queueing on the lock)",
        s.end_to_end.clone(),
    );
    println!(
        "\n{total} deployments ({} no-ops: image already running) in {:.1} s: {:.1} deployments/min\n",
        s.noops,
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64() * 60.0
    );

    // Invariants.
    let get = |path: String| {
        let c = c.clone();
        async move {
            c.http
                .get(c.nodes[0].url(&path))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut by_service: BTreeMap<String, Vec<(u64, u64, String)>> = BTreeMap::new();
    for (service, _, id) in &s.accepted {
        let d = get(format!("/v1/deployments/{id}")).await;
        assert_eq!(d["state"], "success", "{d}");
        by_service.entry(service.clone()).or_default().push((
            d["seq"].as_u64().unwrap_or(0),
            d["token"].as_u64().unwrap(),
            d["image"].as_str().unwrap().to_string(),
        ));
        if std::env::var("LOAD_DEBUG").is_ok() {
            eprintln!(
                "{service} token {} {} noop={} {}",
                d["token"], d["image"], d["noop"], d["phase"]
            );
        }
    }
    for (service, mut v) in by_service {
        // In the order the lock was granted: the last one's image is what must run.
        v.sort_by_key(|(_, token, _)| *token);
        let last_image = v.last().unwrap().2.clone();
        let mut by_seq = v.clone();
        by_seq.sort();
        assert!(
            by_seq.windows(2).all(|w| w[0].1 < w[1].1),
            "{service}: tokens do not grow with acceptance order: {v:?}"
        );
        let out = docker(&[
            "ps",
            "--filter",
            &format!("label=sluice.service={service}"),
            "--format",
            "{{.Label \"sluice.server\"}} {{.Image}}",
        ]);
        let mut per_server: BTreeMap<&str, usize> = BTreeMap::new();
        for l in out.lines() {
            let (server, img) = l.split_once(' ').unwrap();
            assert_eq!(img, last_image, "{service} on {server}: {v:?}");
            *per_server.entry(server).or_default() += 1;
        }
        assert!(
            per_server.values().all(|n| *n == 1) && per_server.len() == SERVERS.len(),
            "{service}: running containers per server {per_server:?}"
        );
    }
    let ports = get("/v1/ports".into()).await;
    for sv in ports["servers"].as_array().into_iter().flatten() {
        let mut p: Vec<u64> = sv["assignments"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_u64())
            .collect();
        let n = p.len();
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), n, "a port twice: {sv}");
    }
    let recs = c.audit(1).await.unwrap();
    assert_eq!(verify(&recs), Ok(recs.len() as u64));
    let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &recs {
        *actions.entry(r.action.as_str()).or_default() += 1;
    }
    let mut actions: Vec<(&str, usize)> = actions.into_iter().collect();
    actions.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    println!("audit records by action: {actions:?}");
    println!(
        "invariants: {total} of {total} succeeded; one container per service per server; ports distinct; tokens grow per service; audit chain of {} records verifies",
        recs.len()
    );
    drop(agents);
    for s in 0..services {
        remove_containers(&format!("load-s{s}"));
    }
}
