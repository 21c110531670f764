//! `cargo bench -p sluice-agent --bench deploy`: the agent's idle memory, and one deploy's
//! wall time through the agent compared with the same steps done with the docker CLI
//! (create new, stop old, start new, first good HTTP answer, remove the one before).
//! Prints figures; asserts nothing about them.

use std::process::Command;
use std::time::{Duration, Instant};

use sluice_tests::agent_support::*;

const ROUNDS: usize = 7;

fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn first_good_answer(port: u16, version: &str) {
    loop {
        if service_get(port, "/version").await.as_deref() == Ok(version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cli(args: &[&str]) -> String {
    docker(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    images();
    let _c = Cleanup::new(&["b-agent", "b-cli"]);
    let agent = Agent::start("b-agent", "").await;
    let pid = agent.pid();
    // Let start-up allocations settle before reading idle memory (a measurement, not a sync).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = rss_kb(pid);

    // Through the agent.
    let port = free_port();
    let mut through_agent = Vec::new();
    for round in 0..=ROUNDS {
        let tag = if round % 2 == 0 { "v1" } else { "v2" };
        let mut body = deploy_body("b-agent", &image(tag), port, round as u64 + 1);
        body["health"] = serde_json::json!({"kind": "http", "path": "/health", "interval": "20ms"});
        let t = Instant::now();
        let op = agent.deploy_and_wait(&op_id(), &body).await;
        let took = t.elapsed();
        assert_eq!(op["state"], "succeeded", "{op:#}");
        if round > 0 {
            // Round 0 is a fresh deploy; the rest are upgrades like the CLI rounds.
            through_agent.push(took);
        }
    }
    let (after_rss, hwm) = rss_kb(pid);

    // The same steps with the docker CLI.
    let port = free_port();
    let mut by_cli = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for round in 0..=ROUNDS {
        let tag = if round % 2 == 0 { "v1" } else { "v2" };
        let name = format!("b-cli-{round}");
        let t = Instant::now();
        let publish = format!("127.0.0.1:{port}:8080");
        cli(&[
            "create",
            "--name",
            &name,
            "-p",
            &publish,
            "--restart",
            "unless-stopped",
            "--label",
            "sluice.service=b-cli",
            "-e",
            "SECRET_TOKEN=x",
            &image(tag),
        ]);
        if let Some(old) = names.last() {
            cli(&["stop", "-t", "5", old]);
        }
        cli(&["start", &name]);
        first_good_answer(port, tag).await;
        if names.len() >= 2 {
            let older = names.remove(0);
            cli(&["rm", "-f", &older]);
        }
        let took = t.elapsed();
        names.push(name);
        if round > 0 {
            by_cli.push(took);
        }
    }

    let (a, c) = (median(through_agent.clone()), median(by_cli.clone()));
    let docker_version = String::from_utf8_lossy(
        &Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    println!(
        "sluice-agent deploy benchmark (docker {docker_version}, {ROUNDS} upgrade rounds each)"
    );
    println!(
        "  agent idle RSS:          {} KiB ({:.1} MiB)",
        idle_rss,
        idle_rss as f64 / 1024.0
    );
    println!(
        "  agent RSS after deploys: {} KiB (peak {} KiB)",
        after_rss, hwm
    );
    println!(
        "  upgrade via agent (PUT -> op succeeded), median: {}  all: {:?}",
        ms(a),
        through_agent
            .iter()
            .map(|d| d.as_millis())
            .collect::<Vec<_>>()
    );
    println!(
        "  same steps via docker CLI, median:              {}  all: {:?}",
        ms(c),
        by_cli.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    println!("  agent / CLI: {:.2}", a.as_secs_f64() / c.as_secs_f64());
}
