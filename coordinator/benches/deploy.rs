//! `cargo build --release -p sluice-agent && cargo bench -p sluice-coordinator --bench deploy`
//!
//! End-to-end deploy time of one service on one server through Sluice (API call → the
//! deployment reported `success`, followed over SSE), against the same steps done with the
//! `docker` CLI in the same run (create new, stop old, start new, poll health until 200,
//! remove the one before). Prints medians and their ratio; asserts nothing.
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

use deploy::{serving, sluice_deploy};
use stats::{ms, pct};

const ROUNDS: usize = 7;
const SERVICE: &str = "bench-deploy";

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
    drop(agent);
    remove_containers(SERVICE);
    remove_containers("bench-cli");
}
