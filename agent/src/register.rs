//! Registration with the coordinators and heartbeats.
//!
//! On start the agent POSTs an [`AgentRegistration`] to `/v1/agents/register` on one of its
//! configured coordinators (trying each in turn, with backoff), then an [`AgentHeartbeat`] to
//! `/v1/agents/{server}/heartbeat` every `heartbeat_interval` (sooner when a container
//! changes state). Any 2xx is success (a follower may answer for the leader). A coordinator
//! that answers a heartbeat with 404 has forgotten the agent: it registers again. Failing
//! to reach coordinators is logged, never fatal: the agent keeps serving its API.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_common::agent_api::{AgentHeartbeat, AgentRegistration};
use sluice_common::backoff::Backoff;
use sluice_common::tls::Role;

use crate::Agent;

/// The HTTPS client for talking to coordinators: presents the agent's certificate (read
/// afresh from its files), trusts only the project CA, and only servers whose certificate
/// names a coordinator.
pub fn coordinator_client(
    files: &sluice_common::tls::TlsFiles,
) -> Result<reqwest::Client, sluice_common::tls::TlsError> {
    Ok(files
        .read()?
        .https_client(&[Role::Coordinator])?
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// The client, rebuilt when the listener's certificate was reloaded (rotation).
struct Client {
    files: sluice_common::tls::TlsFiles,
    seen: Option<SystemTime>,
    client: Option<reqwest::Client>,
}

impl Client {
    fn get(&mut self, agent: &Agent) -> Option<reqwest::Client> {
        let now = agent.tls.not_after();
        if self.seen != Some(now) || self.client.is_none() {
            match coordinator_client(&self.files) {
                Ok(c) => {
                    self.client = Some(c);
                    self.seen = Some(now);
                }
                Err(e) => tracing::warn!(error = %e, "cannot build the coordinator client"),
            }
        }
        self.client.clone()
    }
}

/// Retrying registration: 200 ms doubling to 10 s, jittered.
const REGISTER_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// Runs until shutdown; returns at once if no coordinator is configured.
pub async fn run(agent: Arc<Agent>) {
    if agent.config.coordinators.is_empty() {
        tracing::info!("no coordinators configured; running standalone");
        return;
    }
    let mut clients = Client {
        files: agent.config.tls.files(),
        seen: None,
        client: None,
    };
    let addrs = agent.config.coordinators.clone();
    // Start at a coordinator of its own: agents configured with the same list would
    // otherwise all hold their connection to the first, which then carries every agent's
    // connection and heartbeats (heaptrack: 1,006 connection buffers on node 1).
    let mut at = crate::jitter_seed(agent.config.name.as_str()) as usize % addrs.len();
    // Jittered, so a thousand agents that lost their coordinators together do not all come
    // back in the same instant.
    let mut retries = REGISTER_BACKOFF.retries(crate::jitter_seed(agent.config.name.as_str()));
    'register: loop {
        retries.reset();
        loop {
            let reg = registration(&agent).await;
            let url = format!("https://{}/v1/agents/register", addrs[at % addrs.len()]);
            let Some(client) = clients.get(&agent) else {
                tokio::select! {
                    _ = agent.cancel.cancelled() => return,
                    _ = tokio::time::sleep(retries.next_delay()) => {}
                }
                continue;
            };
            match client.post(&url).json(&reg).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(coordinator = %addrs[at % addrs.len()], "registered");
                    break;
                }
                Ok(r) => tracing::warn!(%url, status = %r.status(), "registration refused"),
                Err(e) => tracing::debug!(%url, error = %e, "coordinator unreachable"),
            }
            at += 1;
            tokio::select! {
                _ = agent.cancel.cancelled() => return,
                _ = tokio::time::sleep(retries.next_delay()) => {}
            }
        }
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = agent.cancel.cancelled() => return,
                _ = tokio::time::sleep(agent.config.heartbeat_interval.get()) => {}
                _ = agent.state_changed.notified() => {}
            }
            let hb = heartbeat(&agent).await;
            let url = format!(
                "https://{}/v1/agents/{}/heartbeat",
                addrs[at % addrs.len()],
                agent.config.name
            );
            let Some(client) = clients.get(&agent) else {
                continue;
            };
            match client.post(&url).json(&hb).send().await {
                Ok(r) if r.status().is_success() => failures = 0,
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    tracing::info!("coordinator does not know this agent; registering again");
                    continue 'register;
                }
                Ok(r) => {
                    failures += 1;
                    tracing::warn!(%url, status = %r.status(), "heartbeat refused");
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(%url, error = %e, "heartbeat failed");
                }
            }
            if failures >= 2 {
                // Try the next coordinator, and register there in case it never saw us.
                at += 1;
                tracing::warn!(coordinator = %addrs[at % addrs.len()], "switching coordinator");
                continue 'register;
            }
        }
    }
}

async fn registration(agent: &Agent) -> AgentRegistration {
    let bound = agent.engine.bound_ports(agent.config.port_range).await;
    AgentRegistration {
        bound_ports: Some(bound.into_iter().collect()),
        server: agent.config.name.clone(),
        agent_addr: agent.advertise.clone(),
        labels: agent.config.labels.clone(),
        port_range: agent.config.port_range,
        docker_version: agent.engine.reachability().version,
        agent_version: crate::VERSION.to_string(),
    }
}

/// The current heartbeat.
pub async fn heartbeat(agent: &Agent) -> AgentHeartbeat {
    let bound_ports = agent
        .engine
        .bound_ports(agent.config.port_range)
        .await
        .into_iter()
        .collect();
    let containers_running = match agent.engine.all_containers().await {
        Ok(list) => list.iter().filter(|(_, c)| c.running).count() as u32,
        Err(_) => 0,
    };
    AgentHeartbeat {
        server: agent.config.name.clone(),
        docker_reachable: agent.engine.reachability().reachable,
        bound_ports,
        containers_running,
    }
}
