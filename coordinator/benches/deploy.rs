//! `cargo build --release -p sluice-agent && cargo bench -p sluice-coordinator --bench deploy`
//!
//! (`cargo build --release -p sluice-proxy` too: each agent gets a `sluice-proxy` beside it.)
//!
//! End-to-end deploy time of one service on one server through Sluice (API call → the
//! deployment reported `success`, followed over SSE), against the same steps done with the
//! `docker` CLI in the same run (create new, stop old, start new, poll health until 200,
//! remove the one before). Then `blue_green` against `recreate` at explicit watch periods
//! (`min_healthy` 0s and 2s, `BENCH_MIN_HEALTHY=0s,2s`), the same image alternation and
//! health polling every 50 ms on both, rounds interleaved: the target is
//! `blue_green(m) ≤ recreate(m) + 0.2 s`. Prints medians; asserts nothing.
//! `--bench peers` compares with Docker Swarm instead.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::agent_support::docker;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::testapp_image::{ensure_test_images, image};

#[path = "support/deploy.rs"]
mod deploy;
#[path = "support/stats.rs"]
mod stats;

use deploy::{serving, sluice_deploy, sluice_deploy_with};
use stats::{ms, pct};

const ROUNDS: usize = 7;
const SERVICE: &str = "bench-deploy";
/// `blue_green` needs its own service: a service the proxy routes refuses `recreate`.
const BG_SERVICE: &str = "bench-deploy-bg";
/// `recreate` with a watch period, beside it.
const RC_SERVICE: &str = "bench-deploy-rc";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    pct(&v, 0.5)
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
    serving(port, "/health", None).await;
    if let Some(old) = old {
        docker(&["rm", old]);
    }
    (id, t.elapsed())
}

/// `strategy` with `min_healthy` `m`, as request fields.
fn strategy(name: &str, m: &str) -> serde_json::Value {
    serde_json::json!({"strategy": name, "min_healthy": m})
}

#[tokio::main]
async fn main() {
    ensure_test_images().expect("test images");
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for s in [SERVICE, BG_SERVICE, RC_SERVICE, "bench-cli"] {
        remove_containers(s);
    }
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let agent = AgentProc::start("bench-1", &[c.nodes[0].addr.clone()], "26000-26009", "");
    // Validation needs the server known.
    deploy::wait_registered(&c, "bench-1").await;
    sluice_deploy(&c, SERVICE, "bench-1", &image("v1")).await; // warm-up: first deploy, not an upgrade
    let mut sluice = Vec::new();
    let mut cli = Vec::new();
    let (mut old, _) = cli_recreate(None, "v1", 26100, 0).await;
    for round in 0..ROUNDS {
        let tag = if round % 2 == 0 { "v2" } else { "v1" };
        sluice.push(sluice_deploy(&c, SERVICE, "bench-1", &image(tag)).await.1);
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
        ms(s)
    );
    println!("| docker CLI create/stop/start/poll/rm | {:.0} ms |", ms(d));
    println!(
        "| ratio sluice / docker CLI | {:.2} |",
        s.as_secs_f64() / d.as_secs_f64()
    );

    // blue_green against recreate, each at the same explicit watch period.
    let watches = std::env::var("BENCH_MIN_HEALTHY").unwrap_or_else(|_| "0s,2s".into());
    let first = strategy("blue_green", "0s");
    sluice_deploy_with(&c, BG_SERVICE, "bench-1", &image("v1"), &first).await; // not timed
    let first = strategy("recreate", "0s");
    sluice_deploy_with(&c, RC_SERVICE, "bench-1", &image("v1"), &first).await; // not timed
    let mut rows = Vec::new();
    for m in watches.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (mut rc, mut bg) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Each service alternates v1 ↔ v2 on its own; its first deploy above was v1.
            let tag = if round % 2 == 0 { "v2" } else { "v1" };
            let rc_req = strategy("recreate", m);
            rc.push(
                sluice_deploy_with(&c, RC_SERVICE, "bench-1", &image(tag), &rc_req)
                    .await
                    .1,
            );
            let bg_req = strategy("blue_green", m);
            bg.push(
                sluice_deploy_with(&c, BG_SERVICE, "bench-1", &image(tag), &bg_req)
                    .await
                    .1,
            );
        }
        if ROUNDS % 2 == 1 {
            // Back to v1 on both, so that the next watch period starts from the same image.
            for (svc, name) in [(RC_SERVICE, "recreate"), (BG_SERVICE, "blue_green")] {
                let req = strategy(name, "0s");
                sluice_deploy_with(&c, svc, "bench-1", &image("v1"), &req).await;
            }
        }
        rows.push((m.to_string(), median(rc), median(bg)));
    }
    println!();
    println!(
        "one-server upgrade v1 ↔ v2 through the API → `success`, {ROUNDS} rounds each, interleaved, \
         health polled every 50 ms on both, no traffic through the proxy; target blue_green ≤ recreate + 0.2 s"
    );
    println!("| min_healthy | recreate, median | blue_green, median | blue_green − recreate | target met |");
    println!("|---|---|---|---|---|");
    for (m, rc, bg) in rows {
        let delta = ms(bg) - ms(rc);
        println!(
            "| {m} | {:.0} ms | {:.0} ms | {delta:+.0} ms | {} |",
            ms(rc),
            ms(bg),
            if delta <= 200.0 { "yes" } else { "no" }
        );
    }
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    drop(agent);
    for s in [SERVICE, BG_SERVICE, RC_SERVICE, "bench-cli"] {
        remove_containers(s);
    }
}
