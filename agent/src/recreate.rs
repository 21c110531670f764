//! The runner of operations: the recreate deploy of DESIGN.md, and the explicit rollback.
//!
//! Deploy: ensure the image → create the new container → stop (keep) the old one → start the
//! new one → health check → success: keep one previous container, prune older ones of this
//! service only; failure: capture the new container's last log lines, remove it, start the
//! previous one, check it, and report `rolled_back` (or `failed` when that did not work).
//!
//! Rollback: stop the current container, start the kept previous one, check it; the replaced
//! one becomes the kept previous, so a rollback can itself be rolled back. If the previous
//! one is unhealthy, it is stopped (not removed) and the replaced one restarted.
//!
//! Every step is idempotent and the [`Stage`] is persisted before each step that changes
//! Docker, so [`resume`] after an agent restart continues truthfully: if the new container
//! had been started and still runs, its health check is redone; if it died, the previous one
//! is restored; and the record says the agent restarted.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_common::agent_api::{DeployRequest, OperationState};
use sluice_common::api::HealthCheck;
use sluice_common::image::ImageRef;

use crate::docker::{
    Container, ContainerSpec, DockerError, LABEL_DEPLOYMENT, LABEL_HEALTH, LABEL_SERVICE,
    LABEL_TOKEN,
};
use crate::health::{self, Outcome, Target};
use crate::ops::{OpCell, OpRequest, Stage};
use crate::store::StoreError;
use crate::Agent;

/// How many log lines of a failed container are kept in the operation.
const LOG_LINES: usize = 20;
/// How long a rollback waits out an unreachable Docker daemon (a daemon restart, a package
/// upgrade) before it gives up on restoring the previous container.
const DOCKER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs a Docker call, retrying it while the daemon is unreachable, for up to
/// [`DOCKER_PATIENCE`]; any other answer is returned at once.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, DockerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DockerError>>,
{
    let deadline = tokio::time::Instant::now() + DOCKER_PATIENCE;
    loop {
        match call().await {
            Err(DockerError::Unavailable(why)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%why, "docker unreachable during a rollback; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Why a runner stopped without finishing.
#[derive(Debug)]
enum Halt {
    /// Shutdown: the record stays `running` at its stage for the next start to resume.
    Interrupted,
    /// The record could not be persisted.
    Store(StoreError),
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A step's failure.
#[derive(Debug)]
enum Fail {
    /// The step failed (Docker refused, unhealthy, ...).
    Step(String),
    /// Stop running.
    Halt(Halt),
}

impl From<DockerError> for Fail {
    fn from(e: DockerError) -> Self {
        Self::Step(e.to_string())
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Halt(Halt::Store(e))
    }
}

/// Starts the runner of a newly admitted operation.
pub fn spawn(agent: Arc<Agent>, cell: Arc<OpCell>) {
    let a = agent.clone();
    agent.tasks.spawn(drive(a, cell));
}

/// Resumes an operation a previous agent process left running.
pub fn resume(agent: Arc<Agent>, cell: Arc<OpCell>) {
    let stage = cell.record().stage;
    tracing::warn!(op = %cell.view().id, ?stage, "resuming an operation interrupted by an agent restart");
    let r = cell.update(|r| {
        r.view.resumed += 1;
        r.end(false, "interrupted by an agent restart");
        r.begin("agent restarted; reconciling with Docker");
        r.end(true, format!("resuming at stage {stage:?}"));
    });
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot persist the resume marker");
    }
    spawn(agent, cell);
}

async fn drive(agent: Arc<Agent>, cell: Arc<OpCell>) {
    let id = cell.view().id;
    match run(&agent, &cell).await {
        Ok(()) => {
            let v = cell.view();
            tracing::info!(op = %id, service = %v.service, state = ?v.state, phase = %v.phase, "operation finished");
            agent.ops.retire(id);
        }
        Err(Halt::Interrupted) => {
            tracing::info!(op = %id, "operation interrupted by shutdown; it resumes on the next start");
        }
        Err(Halt::Store(e)) => {
            tracing::error!(op = %id, error = %e, "operation stopped: its record cannot be persisted");
        }
    }
}

/// Runs `fut` as a named step: recorded, persisted, interruptible by shutdown.
async fn step<T>(
    agent: &Agent,
    cell: &OpCell,
    name: &str,
    fut: impl std::future::Future<Output = Result<(T, String), Fail>>,
) -> Result<T, Fail> {
    cell.update(|r| r.begin(name))?;
    let r = tokio::select! {
        _ = agent.cancel.cancelled() => return Err(Fail::Halt(Halt::Interrupted)),
        r = fut => r,
    };
    match r {
        Ok((v, detail)) => {
            cell.update(|r| r.end(true, detail))?;
            Ok(v)
        }
        Err(Fail::Step(e)) => {
            cell.update(|r| r.end(false, e.clone()))?;
            Err(Fail::Step(e))
        }
        Err(h) => Err(h),
    }
}

async fn run(agent: &Agent, cell: &OpCell) -> Result<(), Halt> {
    let rec = cell.record();
    let is_deploy = matches!(rec.request, OpRequest::Deploy(_));
    let health = match &rec.request {
        OpRequest::Deploy(d) => d.health.clone(),
        OpRequest::Rollback(r) => r.health.clone(),
    };
    let mut stage = rec.stage;
    if stage == Stage::Start {
        let prepared = match &rec.request {
            OpRequest::Deploy(d) => prepare_deploy(agent, cell, d).await,
            OpRequest::Rollback(_) => prepare_rollback(agent, cell).await,
        };
        match prepared {
            Ok(()) => {}
            Err(Fail::Step(e)) => {
                cell.update(|r| {
                    r.view.error = Some(format!("{e} (nothing was changed)"));
                    r.finish(OperationState::Failed, "failed before anything was changed");
                })?;
                return Ok(());
            }
            Err(Fail::Halt(h)) => return Err(h),
        }
        stage = Stage::Switching;
        // Aborted, or out of time, before anything that serves was touched: take the new
        // container away again and stop there.
        if let Some(why) = cell.record().halt_reason(crate::now()) {
            return abandon(agent, cell, why).await;
        }
    }
    if stage == Stage::Switching {
        match switch(agent, cell).await {
            Ok(()) => stage = Stage::Started,
            Err(Fail::Step(e)) => return restore(agent, cell, &health, e, is_deploy).await,
            Err(Fail::Halt(h)) => return Err(h),
        }
    }
    if stage == Stage::Started {
        let new = cell.view().container.unwrap_or_default();
        let running = agent.docker.inspect(&new).await.ok().flatten();
        if !running.as_ref().is_some_and(|c| c.running) {
            let state = running.map_or("gone".to_string(), |c| c.status);
            let why = format!("the new container is {state} (found after an agent restart)");
            return restore(agent, cell, &health, why, is_deploy).await;
        }
        // A rollback's target is an older version: judge it by its own check.
        let hc = own_health(agent, &new)
            .await
            .unwrap_or_else(|| health.clone());
        match check(agent, cell, &new, &hc, "health check").await {
            Ok(detail) => return succeed(agent, cell, is_deploy, detail).await,
            Err(Fail::Step(e)) => return restore(agent, cell, &health, e, is_deploy).await,
            Err(Fail::Halt(h)) => return Err(h),
        }
    }
    if stage == Stage::RollingBack {
        let why = cell
            .view()
            .error
            .unwrap_or_else(|| "interrupted while rolling back".into());
        return restore(agent, cell, &health, why, is_deploy).await;
    }
    Ok(())
}

/// Ends an operation that was halted before it switched anything: the container it
/// created is removed and the previous one was never stopped.
async fn abandon(agent: &Agent, cell: &OpCell, why: String) -> Result<(), Halt> {
    if let Some(new) = cell.view().container {
        let removed = step(agent, cell, "remove new container", async {
            patiently(|| agent.docker.remove(&new)).await?;
            Ok(((), short(&new).to_string()))
        })
        .await;
        if let Err(Fail::Halt(h)) = removed {
            return Err(h);
        }
    }
    cell.update(|r| {
        r.view.error = Some(format!("{why} (nothing that serves was changed)"));
        // The previous container was never stopped: if it served, it still does.
        if r.view.previous_container.is_some() && r.previous_was_running {
            r.finish(
                OperationState::RolledBack,
                "stopped before switching: the previous container kept serving",
            );
        } else {
            r.finish(
                OperationState::Failed,
                "stopped before anything was changed",
            );
        }
    })?;
    Ok(())
}

/// Ensures the image, creates (or finds, when resuming) the new container, and picks the
/// previous one. Changes nothing that serves.
async fn prepare_deploy(agent: &Agent, cell: &OpCell, req: &DeployRequest) -> Result<(), Fail> {
    let image = req.image.to_string();
    step(agent, cell, "ensure image", async {
        if let Some(id) = agent.docker.image_id(&image).await? {
            return Ok(((), format!("present ({id})")));
        }
        cell.set_phase(format!("pulling {image}"));
        tokio::select! {
            pulled = agent.docker.pull(&req.image, |status| {
                cell.set_phase(format!("pulling {image}: {status}"));
            }) => pulled?,
            why = cell.halted() => return Err(Fail::Step(why)),
        }
        Ok(((), "pulled".to_string()))
    })
    .await?;

    let id = cell.view().id;
    let existing = agent.docker.service_containers(&req.service).await?;
    let new_id = step(agent, cell, "create container", async {
        if let Some(c) = existing.iter().find(|c| c.deployment == Some(id)) {
            return Ok((c.id.clone(), format!("{} (already created)", short(&c.id))));
        }
        let spec = container_spec(agent, req, id);
        let cid = agent.docker.create(&spec).await?;
        Ok((cid.clone(), short(&cid).to_string()))
    })
    .await?;

    let previous = pick_previous(&existing, Some(&new_id));
    cell.update(|r| {
        r.view.container = Some(new_id.clone());
        r.view.previous_container = previous.map(|c| c.id.clone());
        r.previous_was_running = previous.is_some_and(|c| c.running);
        r.stage = Stage::Switching;
    })?;
    Ok(())
}

/// A rollback: the kept previous container becomes the target, the current one the kept one.
async fn prepare_rollback(agent: &Agent, cell: &OpCell) -> Result<(), Fail> {
    let service = cell.view().service;
    let containers = agent.docker.service_containers(&service).await?;
    let current = containers.iter().find(|c| c.running);
    let target = pick_previous(&containers, current.map(|c| c.id.as_str()))
        .filter(|c| !c.running)
        .ok_or_else(|| Fail::Step(format!("service {service} has no kept previous container")))?;
    cell.update(|r| {
        r.begin("choose previous container");
        r.end(true, short(&target.id));
        r.view.image = ImageRef::parse(&target.image).ok();
        r.view.container = Some(target.id.clone());
        r.view.previous_container = current.map(|c| c.id.clone());
        r.previous_was_running = current.is_some();
        r.stage = Stage::Switching;
    })?;
    Ok(())
}

/// The container a new one replaces: the running one, else the one that stopped last.
pub(crate) fn pick_previous<'a>(
    containers: &'a [Container],
    except: Option<&str>,
) -> Option<&'a Container> {
    let others = containers.iter().filter(|c| Some(c.id.as_str()) != except);
    others
        .clone()
        .find(|c| c.running)
        .or_else(|| others.max_by(|a, b| a.finished_at.cmp(&b.finished_at)))
}

/// Stops whatever of the service runs (except the new container) and starts the new one.
async fn switch(agent: &Agent, cell: &OpCell) -> Result<(), Fail> {
    let v = cell.view();
    let new = v.container.clone().unwrap_or_default();
    let grace = agent.config.stop_grace.get();
    let running: Vec<Container> = agent
        .docker
        .service_containers(&v.service)
        .await?
        .into_iter()
        .filter(|c| c.running && c.id != new)
        .collect();
    if !running.is_empty() {
        step(agent, cell, "stop previous container", async {
            for c in &running {
                agent.docker.stop(&c.id, grace).await?;
            }
            let ids: Vec<&str> = running.iter().map(|c| short(&c.id)).collect();
            Ok(((), format!("stopped {} (kept)", ids.join(", "))))
        })
        .await?;
    }
    step(agent, cell, "start new container", async {
        agent.docker.start(&new).await?;
        Ok(((), short(&new).to_string()))
    })
    .await?;
    cell.update(|r| r.stage = Stage::Started)?;
    Ok(())
}

/// Health-checks `container`, with progress in the phase.
async fn check(
    agent: &Agent,
    cell: &OpCell,
    container: &str,
    hc: &HealthCheck,
    name: &str,
) -> Result<String, Fail> {
    let target = probe_target(agent, cell, container).await;
    step(agent, cell, name, async {
        // Going forward, the check stops the moment the coordinator aborts the operation
        // or its own deadline passes (the restore's checks are never cut short).
        let out = tokio::select! {
            out = health::check(
                &agent.docker,
                &agent.probe_client,
                container,
                target,
                hc,
                &agent.cancel,
                |p| cell.set_phase(p),
            ) => out,
            why = cell.halted() => return Err(Fail::Step(why)),
        };
        if !matches!(out, Outcome::Interrupted) {
            crate::metrics::health_check_finished(matches!(out, Outcome::Healthy(_)));
        }
        match out {
            Outcome::Healthy(d) => Ok((d.clone(), d)),
            Outcome::Unhealthy(e) => Err(Fail::Step(e)),
            Outcome::Interrupted => Err(Fail::Halt(Halt::Interrupted)),
        }
    })
    .await
}

/// Where to probe `container`: the host port it publishes, else (host network) the port the
/// deploy request names.
async fn probe_target(agent: &Agent, cell: &OpCell, container: &str) -> Target {
    let published = match agent.docker.inspect(container).await {
        Ok(Some(c)) => c.host_port,
        _ => None,
    };
    let fallback = match &cell.record().request {
        OpRequest::Deploy(d) if d.network_mode.as_deref() == Some("host") => d.container_port.get(),
        OpRequest::Deploy(d) => d.host_port.get(),
        OpRequest::Rollback(_) => 0,
    };
    Target {
        ip: agent.config.host_ip,
        port: published.unwrap_or(fallback),
    }
}

/// The new container is healthy: keep one previous, prune the rest of this service.
async fn succeed(
    agent: &Agent,
    cell: &OpCell,
    is_deploy: bool,
    detail: String,
) -> Result<(), Halt> {
    let v = cell.view();
    if is_deploy {
        let keep = [v.container.clone(), v.previous_container.clone()];
        let pruned = step(agent, cell, "prune old containers", async {
            let mut removed = Vec::new();
            for c in agent.docker.service_containers(&v.service).await? {
                if !keep.contains(&Some(c.id.clone())) {
                    agent.docker.remove(&c.id).await?;
                    removed.push(short(&c.id).to_string());
                }
            }
            let d = if removed.is_empty() {
                "nothing to prune".to_string()
            } else {
                format!("removed {}", removed.join(", "))
            };
            Ok(((), d))
        })
        .await;
        match pruned {
            // A failed prune leaves extra stopped containers; the deploy itself worked.
            Ok(()) | Err(Fail::Step(_)) => {}
            Err(Fail::Halt(h)) => return Err(h),
        }
    }
    let discard = match &cell.record().request {
        OpRequest::Rollback(r) if r.discard_replaced => v.previous_container.clone(),
        _ => None,
    };
    let mut removed = None;
    if let Some(failed) = discard {
        // An automatic rollback: the replaced container is the failed version.
        let r = step(agent, cell, "remove failed container", async {
            patiently(|| agent.docker.remove(&failed)).await?;
            Ok(((), short(&failed).to_string()))
        })
        .await;
        match r {
            Ok(()) => removed = Some(failed),
            Err(Fail::Step(_)) => {}
            Err(Fail::Halt(h)) => return Err(h),
        }
    }
    let phase = match (&v.image, is_deploy, &removed) {
        (Some(i), true, _) => format!("{i} is running and healthy ({detail})"),
        (_, _, Some(failed)) => format!(
            "previous container is running and healthy ({detail}); the failed one ({}) was removed",
            short(failed)
        ),
        _ => format!("previous container is running and healthy ({detail})"),
    };
    cell.update(|r| r.finish(OperationState::Succeeded, &phase))?;
    Ok(())
}

/// The new (deploy) or target (rollback) container failed: keep its log tail, remove it
/// (deploy) or stop it (rollback: it is the only copy of that version), restart the one it
/// replaced and check it.
async fn restore(
    agent: &Agent,
    cell: &OpCell,
    hc: &HealthCheck,
    why: String,
    remove_failed: bool,
) -> Result<(), Halt> {
    cell.update(|r| {
        r.stage = Stage::RollingBack;
        r.view.error = Some(why.clone());
        r.view.phase = "rolling back".into();
    })?;
    let v = cell.view();
    let failed = v.container.clone().unwrap_or_default();
    let rec = cell.record();
    let r: Result<(), Fail> = async {
        if v.log_tail.is_none() && !failed.is_empty() {
            if let Ok(Some(_)) = agent.docker.inspect(&failed).await {
                let tail = step(agent, cell, "capture log of failed container", async {
                    let t = agent.docker.log_tail(&failed, LOG_LINES).await?;
                    let n = t.lines().count();
                    Ok((t, format!("{n} line(s)")))
                })
                .await;
                match tail {
                    Ok(t) => cell.update(|r| r.view.log_tail = Some(t))?,
                    Err(Fail::Halt(h)) => return Err(Fail::Halt(h)),
                    Err(Fail::Step(_)) => {}
                }
            }
        }
        if !failed.is_empty() {
            let name = if remove_failed {
                "remove failed container"
            } else {
                "stop failed container"
            };
            step(agent, cell, name, async {
                if remove_failed {
                    patiently(|| agent.docker.remove(&failed)).await?;
                } else {
                    let grace = agent.config.stop_grace.get();
                    patiently(|| agent.docker.stop(&failed, grace)).await?;
                }
                Ok(((), short(&failed).to_string()))
            })
            .await?;
        }
        Ok(())
    }
    .await;
    match r {
        Ok(()) | Err(Fail::Step(_)) => {}
        Err(Fail::Halt(h)) => return Err(h),
    }
    let previous = match (&v.previous_container, rec.previous_was_running) {
        (Some(p), true) => p.clone(),
        (Some(_), false) => {
            cell.update(|r| {
                r.finish(
                    OperationState::Failed,
                    "failed; the previous container was not running before, so it was left stopped",
                )
            })?;
            return Ok(());
        }
        (None, _) => {
            cell.update(|r| {
                r.finish(
                    OperationState::Failed,
                    "failed; there was no previous container to restore",
                )
            })?;
            return Ok(());
        }
    };
    let restarted = step(agent, cell, "start previous container", async {
        patiently(|| agent.docker.start(&previous)).await?;
        Ok(((), short(&previous).to_string()))
    })
    .await;
    let outcome = match restarted {
        Ok(()) => {
            let own = previous_health(agent, &previous, hc, &rec.request).await;
            check(
                agent,
                cell,
                &previous,
                &own,
                "health check previous container",
            )
            .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(_) => cell.update(|r| {
            r.finish(
                OperationState::RolledBack,
                "rolled back: the previous container is running and healthy",
            )
        })?,
        Err(Fail::Step(e)) => cell.update(|r| {
            let first = r.view.error.take().unwrap_or_default();
            r.view.error = Some(format!(
                "{first}; restoring the previous container failed too: {e}"
            ));
            r.finish(
                OperationState::Failed,
                "FAILED: the new version failed and the previous one could not be restored",
            );
        })?,
        Err(Fail::Halt(h)) => return Err(h),
    }
    Ok(())
}

/// The health check `container` was deployed with (its label), if it carries one.
async fn own_health(agent: &Agent, container: &str) -> Option<HealthCheck> {
    match agent.docker.inspect(container).await {
        Ok(Some(c)) => c.health_check,
        _ => None,
    }
}

/// The check a restored container is judged by: the one it was deployed with, else the
/// one the coordinator recorded for that version, else `fallback`.
async fn previous_health(
    agent: &Agent,
    container: &str,
    fallback: &HealthCheck,
    request: &OpRequest,
) -> HealthCheck {
    if let Some(own) = own_health(agent, container).await {
        return own;
    }
    match request {
        OpRequest::Deploy(d) => d.previous_health.clone(),
        OpRequest::Rollback(_) => None,
    }
    .unwrap_or_else(|| fallback.clone())
}

fn container_spec(agent: &Agent, req: &DeployRequest, id: uuid::Uuid) -> ContainerSpec {
    let short_id = id.simple().to_string();
    ContainerSpec {
        // The server's name too: container names are per Docker daemon, and agents for two
        // servers may share one (a dev box, a test host).
        name: format!(
            "sluice-{}-{}-{}",
            req.service,
            agent.config.name,
            &short_id[..12]
        ),
        image: req.image.to_string(),
        labels: HashMap::from([
            (LABEL_SERVICE.to_string(), req.service.to_string()),
            (LABEL_DEPLOYMENT.to_string(), id.to_string()),
            (LABEL_TOKEN.to_string(), req.fence.token.0.to_string()),
            (
                LABEL_HEALTH.to_string(),
                serde_json::to_string(&req.health).unwrap_or_default(),
            ),
        ]),
        env: req.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        container_port: req.container_port.get(),
        host_ip: agent.config.host_ip.to_string(),
        host_port: req.host_port.get(),
        memory_bytes: req.limits.memory_bytes,
        millicpus: req.limits.millicpus,
        privileged: req.privileged,
        network_mode: req.network_mode.clone(),
        pid_mode: req.pid_mode.clone(),
        cap_add: req.cap_add.clone(),
        binds: req.mounts.clone(),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
