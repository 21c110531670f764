//! Simulated agents (`sluice-agent simulate`) against a real 3-node cluster: every agent
//! registers under its own certificate, heartbeats keep it up and their absence marks it
//! down, deploys run through the real runner on the in-memory engine, and a restarted fleet
//! comes back with the same identities. No Docker involved: this is what the 1,000-agent
//! bench (`--bench fleet`) stands on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::deployment::DeploymentState;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::fleet::{servers, up, SimFleet};

const AGENTS: usize = 20;

fn spawn_fleet(c: &Cluster, dir: &Path, ca: &(PathBuf, PathBuf)) -> SimFleet {
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.addr.clone()).collect();
    SimFleet::spawn(&addrs, ca, dir, AGENTS, "fl", "300ms")
}

/// Waits until `/v1/servers` on the leader lists `total` servers, `want_up` of them up.
async fn until(c: &Cluster, leader: usize, total: usize, want_up: usize, what: &str) -> Vec<Value> {
    eventually(what, Duration::from_secs(30), || async {
        let l = servers(&c.http, &c.nodes[leader].url("")).await?;
        if up(&l) == want_up && l.len() == total {
            Ok(l)
        } else {
            Err(format!("{} of {} up", up(&l), l.len()))
        }
    })
    .await
}

async fn deploy(c: &Cluster, node: usize, i: usize, tag: &str) -> String {
    let r = c
        .http
        .post(c.nodes[node].url("/v1/deployments"))
        .json(&json!({
            "service": format!("fleet-{i}"),
            "image": format!("fleet/app:{tag}"),
            "servers": [format!("fl-{i:04}")],
            "container_port": 8080,
            "strategy": "recreate",
            "health": {"kind": "none"},
        }))
        .send()
        .await
        .expect("create");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_agents_register_beat_deploy_and_come_back() {
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"));
    let opts = NodeOpts {
        agent_timeout: "2s",
        ..NodeOpts::default()
    };
    let c = Cluster::start(bin, 3, opts).await;
    let work = tempfile::tempdir().expect("tempdir");
    let ca = c.pki.write_ca(&work.path().join("ca"));
    let fleet = spawn_fleet(&c, work.path(), &ca);
    let leader = c.leader().await;

    // Every agent registers, each at its own address, and stays up on heartbeats alone.
    let list = until(&c, leader, AGENTS, AGENTS, "every simulated agent up").await;
    let addrs: BTreeSet<&str> = list
        .iter()
        .filter_map(|s| s["agent_addr"].as_str())
        .collect();
    assert_eq!(addrs.len(), AGENTS, "one address per agent: {list:?}");
    assert!(
        list.iter().all(|s| s["docker_version"] == "in-memory"),
        "every engine is the in-memory one: {list:?}"
    );

    // Deploys through two different nodes, then a second version of one service: the real
    // runner runs each through every stage on the in-memory engine.
    let first = [deploy(&c, 0, 3, "v1").await, deploy(&c, 1, 11, "v1").await];
    for id in &first {
        let d = c.final_deployment(id, Duration::from_secs(30)).await;
        assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    }
    let second = deploy(&c, 2, 3, "v2").await;
    let d = c.final_deployment(&second, Duration::from_secs(30)).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");

    // The fleet stops: missed heartbeats mark every agent down.
    drop(fleet);
    until(&c, leader, AGENTS, 0, "every simulated agent down").await;

    // Restarted over the same directory (same certificates and stores): all up again, and
    // the same agents serve the next deploy.
    let _fleet = spawn_fleet(&c, work.path(), &ca);
    until(&c, leader, AGENTS, AGENTS, "every simulated agent up again").await;
    let third = deploy(&c, 0, 3, "v3").await;
    let d = c.final_deployment(&third, Duration::from_secs(30)).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
}
