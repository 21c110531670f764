//! `cargo build --release -p sluice-agent && cargo bench -p sluice-coordinator --bench fleet`:
//! a thousand agents against a 3-node cluster of real coordinator processes.
//!
//! The agents are `sluice-agent simulate` (one process; each agent has its own certificate,
//! store, API listener, registration and heartbeats, over an in-memory container engine).
//! The bench registers them, builds a history of deployments with a fixed number in flight
//! (one service per agent, round robin, `recreate`, no watch period) while a prober times
//! the API, then measures the leader idle with every agent heartbeating (CPU share of one
//! core), each node's RSS and snapshot size, and a restart of the whole cluster to serving.
//!
//! Sizes come from the environment: `FLEET_AGENTS` (1000), `FLEET_HISTORY` (50000),
//! `FLEET_IN_FLIGHT` (100), `FLEET_IDLE_SECS` (30). Figures, not assertions: the targets
//! are in BENCHMARKS.md.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::fleet::{servers, up, SimFleet};
use tokio::sync::Semaphore;

#[path = "support/stats.rs"]
mod stats;

use stats::{ms, pct};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Servers marked up, as the node at `base` answers.
async fn servers_up(http: &reqwest::Client, base: &str) -> usize {
    servers(http, base).await.map_or(0, |l| up(&l))
}

/// A metric's value in a `/metrics` text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// 503 answers to creates (the cluster could not serve for a moment), retried.
static UNAVAILABLE: AtomicUsize = AtomicUsize::new(0);

/// Creates a deployment (retrying a 503 for up to 30 s, as a CI client would) and follows
/// it to its end: (create latency of the accepted attempt, final state).
async fn deploy(http: &reqwest::Client, base: &str, n: usize, agents: usize) -> (Duration, String) {
    let i = n % agents + 1;
    let body = json!({
        "service": format!("svc-{i:04}"),
        "image": format!("fleet/app:v{}", n / agents + 1),
        "servers": [format!("sim-{i:04}")],
        "container_port": 8080,
        "strategy": "recreate",
        "min_healthy": "0s",
        "health": {"kind": "none"},
    });
    let first = Instant::now();
    let (created, v) = loop {
        let t = Instant::now();
        let r = http
            .post(format!("{base}/v1/deployments"))
            .header("idempotency-key", format!("fleet-{n}"))
            .json(&body)
            .send()
            .await
            .expect("create");
        let created = t.elapsed();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status == 503 && first.elapsed() < Duration::from_secs(30) {
            UNAVAILABLE.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // 200: a retried create the cluster had accepted after all (the same key).
        assert!(
            status == 202 || status == 200,
            "deployment refused: {status} {v}"
        );
        break (created, v);
    };
    let id = v["id"].as_str().expect("id").to_string();
    // Followed as a CI client would: a stream that ends (or never opens) before a settled
    // state is opened again, and its first event is the deployment as it stands.
    'follow: for _ in 0..5 {
        let Ok(mut events) = http
            .get(format!("{base}/v1/deployments/{id}/events"))
            .send()
            .await
        else {
            continue;
        };
        let mut seen = String::new();
        while let Ok(Some(chunk)) = events.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"state\":\"success\"") {
                return (created, "success".into());
            }
            if ["failed", "rolled_back"]
                .iter()
                .any(|end| seen.contains(&format!("\"state\":\"{end}\"")))
            {
                break 'follow;
            }
        }
    }
    let view: Value = http
        .get(format!("{base}/v1/deployments/{id}"))
        .send()
        .await
        .expect("deployment")
        .json()
        .await
        .unwrap_or(Value::Null);
    (created, format!("{}: {}", view["state"], view["failure"]))
}

/// Reads the prober makes while deployments run: one of a deployment, a server, the
/// deployment list, round robin over the nodes. Returns their latencies.
async fn probe(
    http: reqwest::Client,
    bases: Vec<String>,
    agents: usize,
    stop: Arc<tokio::sync::Notify>,
) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut k = 0usize;
    loop {
        let base = &bases[k % bases.len()];
        let i = k % agents + 1;
        let path = match k % 3 {
            0 => format!("/v1/servers/sim-{i:04}"),
            1 => format!("/v1/deployments?service=svc-{i:04}&limit=10"),
            _ => "/v1/services".to_string(),
        };
        let t = Instant::now();
        let ok = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            out.push(t.elapsed());
        }
        k += 1;
        tokio::select! {
            _ = stop.notified() => return out,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let agents = env_or("FLEET_AGENTS", 1000);
    let history = env_or("FLEET_HISTORY", 50_000);
    let in_flight = env_or("FLEET_IN_FLIGHT", 100);
    let idle_secs = env_or("FLEET_IDLE_SECS", 30) as u64;
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"));
    let opts = NodeOpts {
        agent_timeout: "30s",
        request_timeout: "10s",
        ..NodeOpts::default()
    };
    let mut c = Cluster::start(bin, 3, opts).await;
    // The harness's client gives up after 30 s; an event stream may run longer.
    let http = {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", c.admin_token).parse().expect("ascii"),
        );
        c.pki
            .client(None)
            .default_headers(headers)
            .build()
            .expect("client")
    };
    let bases: Vec<String> = c.nodes.iter().map(|n| n.url("")).collect();

    // The fleet.
    let work = tempfile::tempdir().expect("tempdir");
    let (ca_cert, ca_key) = c.pki.write_ca(&work.path().join("ca"));
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    let t = Instant::now();
    let fleet = SimFleet::spawn(&addrs, &(ca_cert, ca_key), work.path(), agents, "sim", "2s");
    let leader = c.leader().await;
    loop {
        let up = servers_up(&http, &bases[leader]).await;
        if up >= agents {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "only {up} of {agents} agents registered in 10 minutes; see {}",
            work.path().join("fleet.log").display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let registered = t.elapsed();
    eprintln!(
        "{agents} agents registered in {:.1} s",
        registered.as_secs_f64()
    );

    // History, with `in_flight` deployments running at any moment, while a prober reads.
    let stop = Arc::new(tokio::sync::Notify::new());
    let prober = tokio::spawn(probe(http.clone(), bases.clone(), agents, stop.clone()));
    let slots = Arc::new(Semaphore::new(in_flight));
    let creates = Arc::new(Mutex::new(Vec::with_capacity(history)));
    let failed = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(history);
    // One deployment per service at a time (a second would wait for the service's lock).
    let services: Arc<Vec<tokio::sync::Mutex<()>>> =
        Arc::new((0..agents).map(|_| tokio::sync::Mutex::new(())).collect());
    for n in 0..history {
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        let (http, base) = (http.clone(), bases[n % bases.len()].clone());
        let (creates, failed, services) = (creates.clone(), failed.clone(), services.clone());
        tasks.push(tokio::spawn(async move {
            let _service = services[n % agents].lock().await;
            let (created, end) = deploy(&http, &base, n, agents).await;
            creates.lock().unwrap().push(created);
            if end != "success" && failed.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("deployment {n} ended {end}");
            }
            drop(permit);
        }));
        if (n + 1) % 5000 == 0 {
            eprintln!(
                "{} deployments started, {:.0}/s",
                n + 1,
                (n + 1) as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    for task in tasks {
        task.await.expect("deploy task");
    }
    let history_time = t.elapsed();
    stop.notify_one();
    let mut reads = prober.await.expect("prober");
    reads.sort();
    let mut creates = std::mem::take(&mut *creates.lock().unwrap());
    creates.sort();

    // Idle: every agent heartbeating, nothing else.
    let leader = c.leader().await;
    let pid = c.nodes[leader].pid().expect("leader pid");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = cpu_time(pid);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_share = (cpu_time(pid) - cpu0).as_secs_f64() / t.elapsed().as_secs_f64();
    let up = servers_up(&http, &bases[leader]).await;

    let rss: Vec<f64> = c
        .nodes
        .iter()
        .map(|n| rss_mib(n.pid().expect("pid")))
        .collect();
    let mut snapshots = Vec::new();
    for b in &bases {
        let text = http
            .get(format!("{b}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap();
        snapshots.push(metric(&text, "sluice_raft_snapshot_bytes").unwrap_or(0.0) / 1e6);
    }

    // Restart the whole cluster (kill -9): time to the first acknowledged write and a
    // consistent read of the history.
    for n in &mut c.nodes {
        n.kill();
    }
    let t = Instant::now();
    for n in &mut c.nodes {
        n.spawn();
    }
    loop {
        let r = http
            .post(format!("{}/v1/locks/fleet/restart", bases[0]))
            .json(&json!({"holder": "bench", "ttl": "30s"}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if matches!(r, Ok(ref r) if r.status() == 201) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no write after restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restart_write = t.elapsed();
    let r = http
        .get(format!("{}/v1/services", bases[0]))
        .send()
        .await
        .expect("services");
    assert!(r.status().is_success());
    let restart_read = t.elapsed();
    drop(fleet);

    println!();
    println!(
        "sluice 3-node loopback cluster, {agents} simulated agents (one process), {history} deployments, {in_flight} in flight"
    );
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| agents registered from start | {:.1} s | |",
        registered.as_secs_f64()
    );
    println!(
        "| deployments: wall time, rate, not successful | {:.0} s, {:.0}/s, {} | |",
        history_time.as_secs_f64(),
        history as f64 / history_time.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "| creates answered 503 (retried) | {} | 0 |",
        UNAVAILABLE.load(Ordering::Relaxed)
    );
    println!(
        "| API create p50 / p99 / max (under load) | {:.1} / {:.1} / {:.1} ms | p99 < 50 ms |",
        ms(pct(&creates, 0.5)),
        ms(pct(&creates, 0.99)),
        ms(*creates.last().unwrap())
    );
    println!(
        "| API reads p50 / p99 / max (under load, {} reads) | {:.1} / {:.1} / {:.1} ms | p99 < 50 ms |",
        reads.len(),
        ms(pct(&reads, 0.5)),
        ms(pct(&reads, 0.99)),
        ms(*reads.last().unwrap())
    );
    println!(
        "| leader CPU, idle, {up} agents heartbeating | {:.1} % of one core | < 10 % |",
        idle_share * 100.0
    );
    println!(
        "| RSS per node (leader is node {}) | {} MiB | < 200 MB |",
        leader + 1,
        rss.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "| snapshot size per node | {} MB | < 20 MB |",
        snapshots
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "| whole-cluster restart (kill -9) to first write / first read | {:.2} s / {:.2} s | < 5 s |",
        restart_write.as_secs_f64(),
        restart_read.as_secs_f64()
    );
}
