//! Pre-flight checks, run concurrently per server with a timeout each, all reported.
//!
//! Nothing here changes a server. The only write is the port allocation in the replicated
//! ledger (sticky per service and server), which validation needs to probe the right port.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use sluice_common::api::CheckResult;
use sluice_common::names::ServerName;

use super::Driver;
use crate::state::deployments::Deployment;
use crate::state::{Command, Response};

/// Per-check timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What validation found: every check, and the port chosen per server.
#[derive(Debug)]
pub struct Validation {
    /// Every check.
    pub results: Vec<CheckResult>,
    /// Ports allocated, per server.
    pub ports: Vec<(ServerName, u16)>,
    /// The digest the image's tag resolved to in its registry (`image_in_registry`).
    pub digest: Option<String>,
}

impl Validation {
    /// The failed checks, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{} on {}: {}", r.check, r.server, r.detail))
            .collect()
    }
}

pub(super) async fn timed<F>(check: &str, server: &ServerName, f: F) -> CheckResult
where
    F: std::future::Future<Output = Result<String, String>>,
{
    let t = Instant::now();
    let (ok, detail) = match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(d)) => (true, d),
        Ok(Err(d)) => (false, d),
        Err(_) => (false, format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    CheckResult {
        check: check.to_string(),
        server: server.clone(),
        ok,
        detail,
        duration_ms: t.elapsed().as_millis() as u64,
    }
}

/// Runs every check on every target server.
pub async fn run(driver: &Driver, d: &Deployment) -> Validation {
    run_as(driver, d, false).await
}

/// Runs every check without changing anything (a plan): the port check reads the ledger —
/// the port the service has there, else the one it would get — instead of allocating.
pub async fn run_dry(driver: &Driver, d: &Deployment) -> Validation {
    run_as(driver, d, true).await
}

async fn run_as(driver: &Driver, d: &Deployment, dry: bool) -> Validation {
    let per_server = d
        .targets
        .iter()
        .map(|server| check_server(driver, d, server, dry));
    let mut results = Vec::new();
    let mut ports = Vec::new();
    for (mut r, port) in join_all(per_server).await {
        results.append(&mut r);
        if let Some(p) = port {
            ports.push(p);
        }
    }
    if let Some(r) = analysis_source(driver, d).await {
        results.push(r);
    }
    let mut digest = None;
    if let Some(r) = super::registry_check::image_in_registry(driver, d, &mut digest).await {
        results.push(r);
    }
    Validation {
        results,
        ports,
        digest,
    }
}

/// A canary whose analysis queries Prometheus needs one that answers (reported against the
/// first target server: the check is the cluster's, not a server's).
async fn analysis_source(driver: &Driver, d: &Deployment) -> Option<CheckResult> {
    let spec = d.canary_spec();
    let wants = spec
        .analysis
        .as_ref()
        .is_some_and(|a| a.checks.iter().any(|c| c.needs_prometheus()));
    let first = d.targets.first()?;
    if d.request.strategy != sluice_common::api::Strategy::Canary || !wants {
        return None;
    }
    Some(
        timed("analysis_source", first, async {
            let Some(p) = &driver.prometheus else {
                return Err("the analysis has prometheus checks and this cluster has no Prometheus configured ([analysis] prometheus_url)".to_string());
            };
            match p.query("vector(1)").await {
                sluice_common::analysis::Sample::Value(_) => Ok("Prometheus answers".to_string()),
                sluice_common::analysis::Sample::NoData => {
                    Err("Prometheus answered vector(1) with no data".to_string())
                }
                sluice_common::analysis::Sample::Error(e) => Err(e),
            }
        })
        .await,
    )
}

/// The same container (image, container port, environment) already runs, on the same
/// port, from a successful deployment, and the agents confirm a running container of
/// it. A changed environment or container spec with the same image is not a no-op.
pub async fn already_running(
    driver: &Driver,
    d: &Deployment,
    ports: &[(ServerName, u16)],
    image: &sluice_common::image::ImageRef,
) -> bool {
    // Secret values are sealed with fresh nonces: compare what the container would get.
    let plain = |r: &sluice_common::api::CreateDeploymentRequest| {
        crate::secrets::env::open(&driver.secrets, &r.service, &r.env).ok()
    };
    let wanted = plain(&d.request);
    let placements = driver.node.read(|a| {
        let st = &a.state.deployments;
        let record = st.services.get(&d.request.service)?;
        let same = |placed_by: &uuid::Uuid| {
            st.all.get(placed_by).is_some_and(|p| {
                wanted.is_some()
                    && plain(&p.request) == wanted
                    && p.request.container_port == d.request.container_port
                    && p.request.spec == d.request.spec
            })
        };
        Some(
            record
                .servers
                .iter()
                .filter(|(_, p)| same(&p.deployment))
                .map(|(s, p)| (s.clone(), p.clone()))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
    });
    let Some(placements) = placements else {
        return false;
    };
    for (server, port) in ports {
        match placements.get(server) {
            Some(p) if p.image == d.request.image && p.port == *port => {}
            _ => return false,
        }
        let Some(addr) = driver.agent_addr(server) else {
            return false;
        };
        match driver.agents.service(&addr, &d.request.service).await {
            Ok(Some(s)) => {
                let running = s
                    .containers
                    .iter()
                    .any(|c| c.current && c.state == "running" && c.image == image.to_string());
                if !running {
                    return false;
                }
            }
            _ => return false,
        }
    }
    ports.len() == d.targets.len()
}

async fn check_server(
    driver: &Driver,
    d: &Deployment,
    server: &ServerName,
    dry: bool,
) -> (Vec<CheckResult>, Option<(ServerName, u16)>) {
    let record = driver.node.read(|a| a.state.servers.get(server).cloned());
    let Some(record) = record else {
        let r = timed("server_allowed", server, async {
            Err::<String, _>(format!("server {server} is not registered"))
        })
        .await;
        return (vec![r], None);
    };
    let addr = record.agent_addr.clone();
    let service = d.request.service.clone();

    let protected = driver
        .node
        .read(|a| a.state.policy.protected_labels.clone());
    let allowed = timed("server_allowed", server, async {
        if record.forbidden {
            return Err(format!("server {server} is forbidden by policy"));
        }
        if record.cordoned {
            return Err(format!(
                "server {server} is cordoned: no new deployment is placed on it (sluice servers uncordon {server})"
            ));
        }
        let missing: Vec<String> = record
            .labels
            .iter()
            .filter(|l| protected.contains(l) && !d.request.allow_labels.contains(l))
            .map(|l| l.to_string())
            .collect();
        if missing.is_empty() {
            Ok("allowed".to_string())
        } else {
            Err(format!(
                "server {server} carries protected label(s) {}; list them in allow_labels to deploy there",
                missing.join(", ")
            ))
        }
    });
    let reachable = timed("agent_reachable", server, async {
        let h = driver
            .agents
            .health(&addr)
            .await
            .map_err(|e| e.to_string())?;
        if h.docker_reachable {
            Ok(format!(
                "agent answers; Docker {}",
                h.docker_version.unwrap_or_default()
            ))
        } else {
            Err(format!(
                "agent answers but Docker is unreachable: {}",
                h.docker_error.unwrap_or_default()
            ))
        }
    });
    let proxied = d.request.strategy.proxied();
    let proxy = timed("proxy_reachable", server, async {
        if !proxied {
            return Ok("not needed (recreate)".to_string());
        }
        let h = driver
            .agents
            .health(&addr)
            .await
            .map_err(|e| e.to_string())?;
        match (h.proxy_reachable, h.proxy_version, h.proxy_error) {
            (true, v, _) => Ok(format!("sluice-proxy {} answers", v.unwrap_or_default())),
            (false, _, e) => Err(format!(
                "sluice-proxy does not answer on this server: {}",
                e.unwrap_or_else(|| "the agent predates sluice-proxy".into())
            )),
        }
    });
    let image = timed("image_exists", server, async {
        let c = driver
            .agents
            .image(&addr, &d.request.image)
            .await
            .map_err(|e| e.to_string())?;
        match (c.present, d.request.image.registry()) {
            (true, _) => Ok("present locally".to_string()),
            (false, Some(reg)) => Ok(format!("not present locally; will be pulled from {reg}")),
            (false, None) => Err(format!(
                "{} is not present on {server} and names no registry to pull it from",
                d.request.image
            )),
        }
    });
    let mut port_chosen = None;
    let port = timed("port_available", server, async {
        let r = if dry {
            super::spec_check::peek_port(driver, server, &service, d.request.port)
        } else {
            driver
                .propose(Command::AllocatePort {
                    server: server.clone(),
                    service: service.clone(),
                    port: d.request.port,
                })
                .await
                .map_err(|e| e.to_string())?
        };
        let port = match r {
            Response::Port { outcome: Ok(a) } => a.port,
            Response::Port { outcome: Err(e) } => return Err(e.to_string()),
            other => return Err(format!("unexpected {other:?}")),
        };
        port_chosen = Some(port);
        let probe = driver
            .agents
            .port(&addr, port)
            .await
            .map_err(|e| e.to_string())?;
        match (probe.bound, probe.service) {
            (false, _) => Ok(format!("port {port} is free")),
            (true, Some(s)) if s == service => Ok(format!("port {port} is held by {s} itself")),
            (true, Some(s)) => Err(format!("port {port} is held by service {s}")),
            (true, None) => Err(format!("port {port} is held by a process outside Sluice")),
        }
    });
    let policy = timed("container_policy", server, async {
        let h = driver
            .agents
            .health(&addr)
            .await
            .map_err(|e| e.to_string())?;
        super::spec_check::container_policy(h.policy.as_ref(), &d.request.spec)
    });
    let (a, b, c, p, x, k) = tokio::join!(allowed, reachable, image, port, proxy, policy);
    let mut results = vec![a, b, c, p];
    // Only a spec asks anything of the policy (the empty spec is what every server takes).
    if !d.request.spec.is_default() {
        results.push(k);
    }
    if proxied {
        results.push(x);
    }
    (results, port_chosen.map(|p| (server.clone(), p)))
}
