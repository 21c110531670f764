//! `cargo build --release -p sluice-agent && cargo bench -p sluice-coordinator --bench deploy`
//!
//! End-to-end deploy time of one service on one server through Sluice (API call → the
//! deployment reported `success`, followed over SSE), against the same steps done with the
//! `docker` CLI in the same run (create new, stop old, start new, poll health until 200,
//! remove the one before). Prints medians and their ratio; asserts nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::testapp_image::{ensure_test_images, image};

const ROUNDS: usize = 7;
const SERVICE: &str = "bench-deploy";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn healthy(port: u16) {
    let http = reqwest::Client::new();
    loop {
        let ok = http
            .get(format!("http://127.0.0.1:{port}/health"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One recreate with the docker CLI; returns the new container's id.
async fn cli_recreate(old: Option<&str>, tag: &str, port: u16, n: usize) -> (String, Duration) {
    let t = Instant::now();
    let name = format!("bench-cli-{n}");
    let id = docker(&[
        "create",
        "--name",
        &name,
        "--label",
        "sluice.service=bench-cli",
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        &image(tag),
    ]);
    if let Some(old) = old {
        docker(&["stop", "-t", "5", old]);
    }
    docker(&["start", &id]);
    healthy(port).await;
    if let Some(old) = old {
        docker(&["rm", old]);
    }
    (id, t.elapsed())
}

async fn sluice_deploy(c: &Cluster, tag: &str) -> Duration {
    let t = Instant::now();
    let body = json!({
        "service": SERVICE, "image": image(tag), "servers": ["bench-1"], "container_port": 8080,
        "health": {"kind": "http", "path": "/health", "interval": "50ms", "retries": 20}
    });
    let r = c
        .http
        .post(c.nodes[0].url("/v1/deployments"))
        .json(&body)
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = c
        .http
        .get(c.nodes[0].url(&format!("/v1/deployments/{id}/events")))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    while let Ok(Some(chunk)) = events.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("\"state\":\"success\"") {
            return t.elapsed();
        }
        assert!(
            !seen.contains("\"state\":\"failed\""),
            "deployment failed: {seen}"
        );
    }
    panic!("stream ended without success: {seen}");
}

#[tokio::main]
async fn main() {
    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    remove_containers("bench-cli");
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let agent = AgentProc::start("bench-1", &[c.nodes[0].addr.clone()], "26000-26009", "");
    // Wait for registration by deploying (validation needs the server known).
    loop {
        let r = c
            .http
            .get(c.nodes[0].url("/v1/servers/bench-1"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sluice_deploy(&c, "v1").await; // warm-up: first deploy, not an upgrade
    let mut sluice = Vec::new();
    let mut cli = Vec::new();
    let (mut old, _) = cli_recreate(None, "v1", 26100, 0).await;
    for round in 0..ROUNDS {
        let tag = if round % 2 == 0 { "v2" } else { "v1" };
        sluice.push(sluice_deploy(&c, tag).await);
        let (new, d) = cli_recreate(Some(&old), tag, 26100, round + 1).await;
        cli.push(d);
        old = new;
    }
    let (s, d) = (median(sluice), median(cli));
    println!("one-server recreate upgrade, {ROUNDS} rounds, health polled every 50 ms");
    println!("| path | median |");
    println!("|---|---|");
    println!(
        "| sluice API → success (validation, lock, agent, Raft) | {:.0} ms |",
        s.as_secs_f64() * 1000.0
    );
    println!(
        "| docker CLI create/stop/start/poll/rm | {:.0} ms |",
        d.as_secs_f64() * 1000.0
    );
    println!(
        "| ratio sluice / docker CLI | {:.2} |",
        s.as_secs_f64() / d.as_secs_f64()
    );
    drop(agent);
    remove_containers(SERVICE);
    remove_containers("bench-cli");
}
