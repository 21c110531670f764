//! `cargo build --release -p sluice-agent -p sluice-proxy && cargo bench -p sluice-coordinator --bench canary`
//!
//! How fast a failing canary goes back: one coordinator, two agents each with its own
//! `sluice-proxy`, a load of ≥ 200 requests/s on each server's public port. Each round
//! deploys v1 (`blue_green`), then a canary of a v2 whose every `/version` answer is a 500
//! at weight 50 %, judged by the built-in error ratio every second. The figure is the time
//! from the analysis failing the step (the `in_progress → failed` transition's timestamp in
//! the record) to the last request any proxy sent to v2, per server: the target is under
//! 1 s for two servers. Prints each round and the median and worst; asserts nothing.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sluice_common::api::CreateDeploymentRequest;
use sluice_common::deployment::DeploymentState;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::load::{Load, LoadOptions};
use sluice_tests::testapp_image::{ensure_test_images, image};

#[path = "support/stats.rs"]
mod stats;

use stats::{ms, pct};

const ROUNDS: usize = 5;
const SERVICE: &str = "bench-canary";
const SERVERS: [&str; 2] = ["bench-cn-a", "bench-cn-b"];

fn request(tag: &str, extra: serde_json::Value) -> CreateDeploymentRequest {
    let mut body = json!({
        "service": SERVICE, "image": image(tag), "servers": SERVERS, "container_port": 8080,
        "strategy": "blue_green", "min_healthy": "0s", "drain_timeout": "2s",
        "health": {"kind": "http", "path": "/health", "interval": "100ms", "retries": 20},
    });
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    serde_json::from_value(body).expect("a valid request")
}

async fn settle(c: &Cluster, req: &CreateDeploymentRequest) -> sluice_common::api::DeploymentView {
    let api = c.api(0);
    let id = api
        .create_deployment(req, None)
        .await
        .expect("accepted")
        .deployment
        .id
        .to_string();
    loop {
        let d = api.deployment(&id).await.expect("the deployment");
        use sluice_common::deployment::SubState;
        if matches!(
            d.sub_state,
            SubState::Done | SubState::Noop | SubState::GaveUp
        ) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    // Both agents share this host: each gets its own slice of ports for its proxy.
    let _agents: Vec<AgentProc> = SERVERS
        .iter()
        .zip(["23000-23019", "23020-23039"])
        .map(|(s, range)| AgentProc::start(s, &addrs, range, ""))
        .collect();
    // Every agent registered.
    loop {
        let names: Vec<String> = c
            .api(0)
            .servers()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name.to_string())
            .collect();
        if SERVERS.iter().all(|s| names.iter().any(|n| n == s)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let canary = json!({
        "strategy": "canary",
        "env": {"TESTAPP_ERROR_PERCENT": {"value": "100"}},
        "canary": {"steps": [{"weight": 50, "pause": "1m"}],
                   "analysis": {"interval": "1s", "count": 3,
                                "checks": [{"kind": "error_ratio", "max": 0.05}]}},
    });
    let mut per_server = Vec::new();
    println!("round  server       failed→0%   v2 requests");
    for round in 0..ROUNDS {
        let first = settle(&c, &request("v1", json!({}))).await;
        assert_eq!(first.state, DeploymentState::Success, "{first:?}");
        let loads: Vec<Load> = first
            .servers
            .iter()
            .map(|s| {
                Load::start(
                    format!("http://127.0.0.1:{}/version", s.port.expect("a port")),
                    LoadOptions::default(),
                )
            })
            .collect();
        // Instants of the load reports, as wall-clock milliseconds.
        let (i0, w0) = (Instant::now(), SystemTime::now());
        let d = settle(&c, &request("v2", canary.clone())).await;
        assert_eq!(d.state, DeploymentState::RolledBack, "{d:?}");
        let failed_at = d
            .transitions
            .iter()
            .find(|t| t.to == DeploymentState::Failed)
            .expect("the failed transition")
            .at;
        let failed = w0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|e| Duration::from_millis(failed_at.as_millis()).saturating_sub(e))
            .unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (server, load) in SERVERS.iter().zip(loads) {
            let r = load.stop().await;
            let last = r.failures.iter().map(|f| f.sent).max();
            let Some(last) = last else {
                println!("{round:>5}  {server:<11}  (v2 got no request)");
                continue;
            };
            let gone = last.duration_since(i0).saturating_sub(failed);
            per_server.push(gone);
            println!(
                "{round:>5}  {server:<11}  {:>8.0} ms   {:>6}",
                ms(gone),
                r.failures.len()
            );
        }
    }
    per_server.sort();
    println!(
        "\nfrom the failed analysis to 0 % on every server, over {} server-rounds: median {:.0} ms, worst {:.0} ms (target < 1000 ms)",
        per_server.len(),
        ms(pct(&per_server, 0.5)),
        ms(*per_server.last().unwrap_or(&Duration::ZERO))
    );
    remove_containers(SERVICE);
}
