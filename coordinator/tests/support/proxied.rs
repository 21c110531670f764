//! What the tests of the strategies behind `sluice-proxy` share (`blue_green.rs`,
//! `canary.rs`): a real coordinator, real agents each with its own real `sluice-proxy`, the
//! real Docker daemon, and a load generator sending requests all the time (≥ 200/s, half
//! on keep-alive connections, half on new ones) to the service's public port.
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_common::api::{CreateDeploymentRequest, DeploymentView};
use sluice_common::client::Client;
use sluice_common::deployment::{DeploymentState, SubState};
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::load::{Load, LoadOptions, LoadReport};
use sluice_tests::testapp_image::{ensure_test_images, image};

/// Each environment gets its own slice of host ports: tests run in parallel on one host.
pub fn port_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    let base = 24000 + (std::process::id() % 20) as u16 * 200 + slot * 20;
    format!("{base}-{}", base + 19)
}

pub struct Env {
    pub cluster: Cluster,
    pub agents: Vec<AgentProc>,
    pub service: String,
}

impl Env {
    pub async fn start(agents: &[&str], service: &str) -> Self {
        Self::start_with(agents, service, NodeOpts::default()).await
    }

    /// [`Env::start`] with a coordinator configured by `opts`.
    pub async fn start_with(agents: &[&str], service: &str, opts: NodeOpts) -> Self {
        Self::start_cluster(agents, service, 1, opts).await
    }

    /// [`Env::start_with`] with `nodes` coordinators.
    pub async fn start_cluster(
        agents: &[&str],
        service: &str,
        nodes: usize,
        opts: NodeOpts,
    ) -> Self {
        ensure_test_images().expect("test images");
        remove_containers(service);
        let bin = Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"));
        let cluster = Cluster::start(bin, nodes, opts).await;
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
        let agents: Vec<AgentProc> = agents
            .iter()
            .map(|name| AgentProc::start(name, &addrs, &port_range(), ""))
            .collect();
        let env = Self {
            cluster,
            agents,
            service: service.to_string(),
        };
        let names: Vec<String> = env.agents.iter().map(|a| a.name.clone()).collect();
        eventually(
            "every agent registered",
            Duration::from_secs(20),
            || async {
                let got: Vec<String> = env
                    .api()
                    .servers()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|s| s.name.to_string())
                    .collect();
                if names.iter().all(|n| got.contains(n)) {
                    Ok(())
                } else {
                    Err(format!("registered: {got:?}"))
                }
            },
        )
        .await;
        env
    }

    pub fn api(&self) -> Client {
        self.cluster.api(0)
    }

    /// A deployment request of `tag` to every agent, with `extra` fields.
    pub fn request(&self, tag: &str, extra: serde_json::Value) -> CreateDeploymentRequest {
        let servers: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
        let mut body = json!({
            "service": self.service,
            "image": image(tag),
            "servers": servers,
            "container_port": 8080,
            "strategy": "blue_green",
            "min_healthy": "0s",
            "drain_timeout": "2s",
            "health": {"kind": "http", "path": "/health", "interval": "100ms", "retries": 20},
        });
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        serde_json::from_value(body).expect("a valid request")
    }

    pub async fn deploy(&self, tag: &str, extra: serde_json::Value) -> DeploymentView {
        let created = self
            .api()
            .create_deployment(&self.request(tag, extra), None)
            .await
            .expect("accepted");
        self.settled(&created.deployment.id.to_string()).await
    }

    /// Polls until nothing is left to do for the deployment.
    pub async fn settled(&self, id: &str) -> DeploymentView {
        eventually(
            &format!("deployment {id} to settle"),
            Duration::from_secs(120),
            || async {
                let d = self.api().deployment(id).await.map_err(|e| e.to_string())?;
                match d.sub_state {
                    SubState::Done | SubState::Noop | SubState::GaveUp => Ok(d),
                    s => Err(format!("{:?}/{s:?}: {}", d.state, d.phase.as_str())),
                }
            },
        )
        .await
    }

    /// The service's public port on agent `i`, as the ledger allocated it.
    pub fn port(d: &DeploymentView, server: &str) -> u16 {
        d.servers
            .iter()
            .find(|s| s.server.as_str() == server)
            .and_then(|s| s.port)
            .expect("a port")
    }

    pub fn load(port: u16) -> Load {
        Load::start(
            format!("http://127.0.0.1:{port}/version"),
            LoadOptions::default(),
        )
    }
}

/// The container deployment `id` created on `agent`, once `agent`'s proxy routes to it
/// (its route table on disk is written before the proxy answers a switch).
pub fn routed_to(agent: &AgentProc, id: &str) -> Result<String, String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=sluice.deployment={id}"),
            "--filter",
            &format!("label=sluice.server={}", agent.name),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if container.is_empty() {
        return Err("no running container of the deployment yet".into());
    }
    let routes = std::fs::read_to_string(agent.proxy.routes_file()).unwrap_or_default();
    if routes.contains(&container[..12]) {
        Ok(container)
    } else {
        Err(format!("the route does not name {} yet", &container[..12]))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        remove_containers(&self.service);
    }
}

/// What a load report must show: no failure at all, and enough traffic to mean it.
pub fn assert_lossless(what: &str, r: &LoadReport) {
    if !r.failures.is_empty() {
        // Every kind of failure with its count and when it first and last happened, so a
        // failure in CI says what it was.
        let t0 = r.seen.first().map(|s| s.sent);
        let mut kinds: std::collections::BTreeMap<&str, (usize, u128, u128)> = Default::default();
        for f in &r.failures {
            let at = t0.map_or(0, |t| f.sent.saturating_duration_since(t).as_millis());
            let e = kinds.entry(f.error.as_str()).or_insert((0, at, at));
            e.0 += 1;
            e.2 = at;
        }
        panic!(
            "{what}: {} of {} requests failed (ms since the first answer): {kinds:#?}",
            r.failures.len(),
            r.ok + r.failures.len() as u64,
        );
    }
    assert!(
        r.rate() >= 150.0,
        "{what}: the load ran at {:.0} requests/s only",
        r.rate()
    );
}

/// Every response to a request sent after `t` came from `version`.
pub fn all_from(r: &LoadReport, t: Instant, version: &str) -> Result<usize, String> {
    let after: Vec<_> = r.seen_after(t).collect();
    match after.iter().find(|s| s.first_line != version) {
        Some(s) => Err(format!(
            "a request sent {} ms after the switch answered {:?}",
            s.sent.duration_since(t).as_millis(),
            s.first_line
        )),
        None => Ok(after.len()),
    }
}

pub fn state(d: &DeploymentView) -> DeploymentState {
    d.state
}

/// The id of the container deployment `id` created on server `server`, running or not.
pub fn container_of(id: &str, server: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=sluice.deployment={id}"),
            "--filter",
            &format!("label=sluice.server={server}"),
        ])
        .output()
        .unwrap();
    let c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(c.len() >= 12, "no container of {id} on {server}");
    c
}

/// The proxy's Prometheus text, from its control socket.
pub fn proxy_metrics(agent: &AgentProc) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(agent.proxy.socket())
        .arg("http://proxy/metrics")
        .output()
        .unwrap();
    assert!(out.status.success(), "GET /metrics on the control socket");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
