//! Simulated agents (`sluice-agent simulate`) against a real 3-node cluster: every agent
//! registers under its own certificate, heartbeats keep it up and their absence marks it
//! down, deploys run through the real runner on the in-memory engine, and a restarted fleet
//! comes back with the same identities. No Docker involved: this is what the 1,000-agent
//! bench (`--bench fleet`) stands on.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::deployment::DeploymentState;
use sluice_tests::agent::agent_bin;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;

const AGENTS: usize = 20;

struct Fleet(Child);

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_fleet(c: &Cluster, dir: &Path, ca: &(std::path::PathBuf, std::path::PathBuf)) -> Fleet {
    let mut cmd = Command::new(agent_bin());
    cmd.args(["simulate", "--count", &AGENTS.to_string(), "--prefix", "fl"])
        .args(["--heartbeat-interval", "300ms"])
        .arg("--ca-cert")
        .arg(&ca.0)
        .arg("--ca-key")
        .arg(&ca.1)
        .arg("--dir")
        .arg(dir.join("fleet"));
    for n in &c.nodes {
        cmd.args(["--coordinator", &n.addr]);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fleet.log"))
        .expect("log");
    Fleet(
        cmd.stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sluice-agent simulate"),
    )
}

async fn servers(c: &Cluster, leader: usize) -> Result<Vec<Value>, String> {
    let r = c
        .http
        .get(c.nodes[leader].url("/v1/servers"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(v.as_array().cloned().unwrap_or_default())
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
    let list = eventually(
        "every simulated agent up",
        Duration::from_secs(30),
        || async {
            let l = servers(&c, leader).await?;
            let up = l.iter().filter(|s| s["up"] == true).count();
            if up == AGENTS {
                Ok(l)
            } else {
                Err(format!("{up} of {AGENTS} up"))
            }
        },
    )
    .await;
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
    eventually(
        "every simulated agent down",
        Duration::from_secs(30),
        || async {
            let l = servers(&c, leader).await?;
            let up = l.iter().filter(|s| s["up"] == true).count();
            if up == 0 {
                Ok(())
            } else {
                Err(format!("{up} still up"))
            }
        },
    )
    .await;

    // Restarted over the same directory (same certificates and stores): all up again, and
    // the same agents serve the next deploy.
    let _fleet = spawn_fleet(&c, work.path(), &ca);
    eventually(
        "every simulated agent up again",
        Duration::from_secs(30),
        || async {
            let l = servers(&c, leader).await?;
            let up = l.iter().filter(|s| s["up"] == true).count();
            if up == AGENTS && l.len() == AGENTS {
                Ok(())
            } else {
                Err(format!("{up} of {} up", l.len()))
            }
        },
    )
    .await;
    let third = deploy(&c, 0, 3, "v3").await;
    let d = c.final_deployment(&third, Duration::from_secs(30)).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
}
