//! Performs the steps the runners' plans name ([`Step`]), through the [`Runtime`] and
//! the host's `sluice-proxy`, and records what each saw in [`Observed`]. Every step is
//! idempotent: a resumed run may perform one again.

use std::collections::HashMap;

use sluice_common::agent_api::DeployRequest;
use sluice_common::api::HealthCheck;
use sluice_common::container::NetworkMode;
use sluice_common::image::ImageRef;

use super::exec::{patiently, settle, Exec, Fail, Halt};
use super::steps::{Observed, Step};
use crate::record::{OpRecord, OpRequest, Stage};
use crate::runtime::{
    pick_previous, short, Container, ContainerSpec, Runtime, LABEL_DEPLOYMENT, LABEL_HEALTH,
    LABEL_SERVICE, LABEL_TOKEN,
};

/// How many log lines of a failed container are kept in the operation.
const LOG_LINES: usize = 20;

/// Performs one step and records what it saw in `obs`.
pub(super) async fn perform<R: Runtime>(
    x: &Exec<'_, R>,
    step: Step,
    obs: &mut Observed,
) -> Result<(), Halt> {
    let rec = x.record();
    let v = &rec.view;
    let new = v.container.clone().unwrap_or_default();
    match step {
        Step::EnsureImage => {
            obs.image = Some(match &rec.request {
                OpRequest::Deploy(req) => settle(ensure_image(x, req).await)?,
                _ => Err("only a deploy has an image to ensure".into()),
            });
        }
        Step::CreateContainer => {
            let prepared = match &rec.request {
                OpRequest::Deploy(req) => settle(create(x, req).await)?,
                _ => Err("only a deploy creates a container".into()),
            };
            prepared_then_halted(x, obs, prepared);
        }
        Step::ChoosePrevious => {
            let prepared = settle(choose_previous(x).await)?;
            prepared_then_halted(x, obs, prepared);
        }
        Step::RemoveNew => {
            let removed = x
                .patient_step("remove new container", &new, || x.rt.remove(&new))
                .await;
            // A failed removal does not matter: nothing serves from that container.
            let _ = settle(removed)?;
            obs.new_removed = true;
        }
        Step::StopPrevious => obs.stopped = Some(settle(stop_previous(x, &rec).await)?),
        Step::StartNew => {
            let started = x
                .step("start new container", async {
                    x.rt.start(&new).await?;
                    Ok(((), short(&new).to_string()))
                })
                .await;
            let started = settle(started)?;
            if started.is_ok() {
                x.update(|r| r.stage = Stage::Started)?;
            }
            obs.started = Some(started);
        }
        Step::InspectNew => {
            let found = x.rt.inspect(&new).await.ok().flatten();
            obs.new_state = Some(match found {
                Some(c) if c.running => Ok(()),
                Some(c) => Err(c.status),
                None => Err("gone".into()),
            });
        }
        Step::CheckNew => {
            // A rollback's target is an older version: judge it by its own check.
            let hc = match x.own_health(&new).await {
                Some(own) => own,
                None => request_health(&rec.request),
            };
            obs.health = Some(settle(x.check(&new, &hc, "health check").await)?);
        }
        Step::Watch => {
            let hc = request_health(&rec.request);
            obs.watched = Some(settle(x.watch(&new, &hc, rec.min_healthy()).await)?);
        }
        Step::Prune => {
            // A failed prune leaves extra stopped containers; the deploy itself worked.
            let _ = settle(prune(x, &rec).await)?;
            obs.pruned = true;
        }
        Step::DiscardReplaced { container } => {
            // An automatic rollback: the replaced container is the failed version.
            let r = x
                .patient_step("remove failed container", &container, || {
                    x.rt.remove(&container)
                })
                .await;
            obs.discarded = Some(settle(r)?.is_ok());
        }
        Step::Restore { why } => {
            x.update(|r| {
                r.stage = Stage::RollingBack;
                r.view.error = Some(why);
                r.view.phase = "rolling back".into();
            })?;
            obs.restoring = true;
        }
        Step::CaptureLog { container } => {
            if let Ok(Some(_)) = x.rt.inspect(&container).await {
                let tail = x
                    .step("capture log of failed container", async {
                        let t = x.rt.log_tail(&container, LOG_LINES).await?;
                        let n = t.lines().count();
                        Ok((t, format!("{n} line(s)")))
                    })
                    .await;
                if let Ok(t) = settle(tail)? {
                    x.update(|r| r.view.log_tail = Some(t))?;
                }
            }
            obs.log_captured = true;
        }
        Step::ClearFailed { container, remove } => {
            let name = if remove {
                "remove failed container"
            } else {
                "stop failed container"
            };
            let grace = x.env.stop_grace;
            let r = if remove {
                x.patient_step(name, &container, || x.rt.remove(&container))
                    .await
            } else {
                x.patient_step(name, &container, || x.rt.stop(&container, grace))
                    .await
            };
            // Whether or not it went, the previous container is restored next.
            let _ = settle(r)?;
            obs.failed_cleared = true;
        }
        Step::StartPrevious { container } => {
            let r = x
                .patient_step("start previous container", &container, || {
                    x.rt.start(&container)
                })
                .await;
            let r = settle(r)?;
            if r.is_ok() {
                // Started anew: Docker may have given it another port.
                obs.previous_addr = None;
            }
            obs.previous_started = Some(r);
        }
        Step::CheckPrevious { container } => {
            let hc = previous_health(x, &container, &rec.request).await;
            let r = x
                .check(&container, &hc, "health check previous container")
                .await;
            obs.previous_health = Some(settle(r)?);
        }
        Step::LocateNew => obs.new_addr = Some(x.loopback_addr(&new).await),
        Step::Route { container, to } => {
            let r = settle(x.route(&rec, &container, to, "switch traffic").await)?;
            if r.is_ok() {
                x.update(|r| r.stage = Stage::Routed)?;
            }
            obs.routed = Some(r);
        }
        Step::Drain { container } => {
            let _ = settle(x.drain(&rec, &container).await)?;
            if Some(&container) == rec.view.container.as_ref() {
                obs.new_drained = true;
            } else {
                obs.drained = true;
            }
        }
        Step::ClearOld { container, remove } => {
            let grace = x.env.stop_grace;
            let name = if remove {
                "remove replaced container"
            } else {
                "stop previous container"
            };
            let r = x
                .step(name, async {
                    if remove {
                        patiently(|| x.rt.remove(&container)).await?;
                        return Ok(((), format!("removed {}", short(&container))));
                    }
                    patiently(|| x.rt.stop(&container, grace)).await?;
                    Ok(((), format!("stopped {} (kept)", short(&container))))
                })
                .await;
            obs.old_cleared = Some(settle(r)?);
        }
        Step::LocatePrevious { container } => {
            obs.previous_addr = Some(x.loopback_addr(&container).await);
        }
        Step::RouteBack { container, to } => {
            let r = x.route(&rec, &container, to, "switch traffic back").await;
            obs.routed_back = Some(settle(r)?);
        }
        Step::Weigh {
            container,
            to,
            weight,
        } => {
            let r = settle(x.weigh(&rec, &container, to, weight).await)?;
            if r.is_ok() {
                x.update(|r| {
                    r.stage = Stage::Canary;
                    r.view.canary_weight = Some(weight);
                    r.view.phase =
                        format!("canary: {weight}% of new requests to {}", short(&container));
                })?;
            }
            obs.held = None;
            obs.weighed = Some(r);
        }
        Step::Hold => {
            // Ok: the coordinator asked for another weight (plan again); Err: go back.
            obs.held = match settle(x.hold(&new).await)? {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Step::Unroute => {
            let r = x.unroute(&rec).await;
            obs.routed_back = Some(settle(r)?);
        }
        Step::Finish(f) => x.update(|r| r.conclude(f))?,
    }
    Ok(())
}

/// Records a preparation's outcome and, when it worked, whether the operation must stop
/// before switching anything (aborted, or out of time, while preparing).
fn prepared_then_halted<R: Runtime>(x: &Exec<'_, R>, obs: &mut Observed, r: Result<(), String>) {
    if r.is_ok() {
        obs.halted = x.record().halt_reason(crate::now());
    }
    obs.prepared = Some(r);
}

/// The check the request names.
pub(crate) fn request_health(request: &OpRequest) -> HealthCheck {
    match request {
        OpRequest::Deploy(d) => d.health.clone(),
        OpRequest::Rollback(r) => r.health.clone(),
        OpRequest::Remove(_) => HealthCheck::None {},
    }
}

/// Ensures the image, pulling it when missing; a pull stops when the operation is halted.
async fn ensure_image<R: Runtime>(x: &Exec<'_, R>, req: &DeployRequest) -> Result<(), Fail> {
    let image = req.image.to_string();
    x.step("ensure image", async {
        if let Some(id) = x.rt.image_id(&image).await? {
            return Ok(((), format!("present ({id})")));
        }
        x.cell.set_phase(format!("pulling {image}"));
        let auth = x.cell.registry_auth();
        tokio::select! {
            pulled = x.rt.pull(&req.image, auth.as_ref(), |status| {
                x.cell.set_phase(format!("pulling {image}: {status}"));
            }) => pulled?,
            why = x.cell.halted() => return Err(Fail::Step(why)),
        }
        Ok(((), "pulled".to_string()))
    })
    .await
}

/// Creates (or finds, when resuming) the new container and picks the previous one.
/// Changes nothing that serves.
async fn create<R: Runtime>(x: &Exec<'_, R>, req: &DeployRequest) -> Result<(), Fail> {
    let id = x.cell.view().id;
    if !req.strategy.proxied() {
        x.refuse_if_routed(&req.service).await?;
    }
    let existing = x.rt.service_containers(&req.service).await?;
    let new_id = x
        .step("create container", async {
            if let Some(c) = existing.iter().find(|c| c.deployment == Some(id)) {
                return Ok((c.id.clone(), format!("{} (already created)", short(&c.id))));
            }
            let spec = container_spec(x, req, id);
            let cid = x.rt.create(&spec).await?;
            Ok((cid.clone(), short(&cid).to_string()))
        })
        .await?;
    let previous = pick_previous(&existing, Some(&new_id));
    x.update(|r| {
        r.view.container = Some(new_id.clone());
        r.view.previous_container = previous.map(|c| c.id.clone());
        r.previous_was_running = previous.is_some_and(|c| c.running);
        r.stage = Stage::Switching;
    })?;
    Ok(())
}

/// A rollback: the kept previous container becomes the target, the current one the kept one.
async fn choose_previous<R: Runtime>(x: &Exec<'_, R>) -> Result<(), Fail> {
    let service = x.cell.view().service;
    let containers = x.rt.service_containers(&service).await?;
    let current = containers.iter().find(|c| c.running);
    let target = pick_previous(&containers, current.map(|c| c.id.as_str()))
        .filter(|c| !c.running)
        .ok_or_else(|| Fail::Step(format!("service {service} has no kept previous container")))?;
    x.update(|r| {
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

/// Stops (keeps) whatever of the service runs, except the new container.
async fn stop_previous<R: Runtime>(x: &Exec<'_, R>, rec: &OpRecord) -> Result<(), Fail> {
    let new = rec.view.container.clone().unwrap_or_default();
    let grace = x.env.stop_grace;
    let running: Vec<Container> =
        x.rt.service_containers(&rec.view.service)
            .await?
            .into_iter()
            .filter(|c| c.running && c.id != new)
            .collect();
    if running.is_empty() {
        return Ok(());
    }
    x.step("stop previous container", async {
        for c in &running {
            x.rt.stop(&c.id, grace).await?;
        }
        let ids: Vec<&str> = running.iter().map(|c| short(&c.id)).collect();
        Ok(((), format!("stopped {} (kept)", ids.join(", "))))
    })
    .await
}

/// Keeps the new container and one previous, removes the service's other containers.
async fn prune<R: Runtime>(x: &Exec<'_, R>, rec: &OpRecord) -> Result<(), Fail> {
    let v = &rec.view;
    let keep = [v.container.clone(), v.previous_container.clone()];
    x.step("prune old containers", async {
        let mut removed = Vec::new();
        for c in x.rt.service_containers(&v.service).await? {
            if !keep.contains(&Some(c.id.clone())) {
                x.rt.remove(&c.id).await?;
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
    .await
}

/// The check a restored container is judged by: the one it was deployed with, else the
/// one the coordinator recorded for that version, else the request's.
async fn previous_health<R: Runtime>(
    x: &Exec<'_, R>,
    container: &str,
    request: &OpRequest,
) -> HealthCheck {
    if let Some(own) = x.own_health(container).await {
        return own;
    }
    match request {
        OpRequest::Deploy(d) => d.previous_health.clone(),
        OpRequest::Rollback(_) | OpRequest::Remove(_) => None,
    }
    .unwrap_or_else(|| request_health(request))
}

fn container_spec<R>(x: &Exec<'_, R>, req: &DeployRequest, id: uuid::Uuid) -> ContainerSpec {
    let short_id = id.simple().to_string();
    ContainerSpec {
        // The server's name too: container names are per Docker daemon, and agents for two
        // servers may share one (a dev box, a test host).
        name: format!(
            "sluice-{}-{}-{}",
            req.service,
            x.env.server,
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
        // Behind the proxy a container publishes on loopback only, on a port Docker picks;
        // the proxy owns the service's public port.
        host_ip: if req.strategy.proxied() {
            "127.0.0.1".into()
        } else {
            x.env.host_ip.to_string()
        },
        host_port: if req.strategy.proxied() {
            0
        } else {
            req.host_port.get()
        },
        // The older top-level fields and the container spec's say the same things; the
        // policy has held both, so either asks.
        memory_bytes: req.limits.memory_bytes.or(req
            .spec
            .resources
            .memory
            .as_ref()
            .map(|m| m.bytes())),
        millicpus: req
            .limits
            .millicpus
            .or(req.spec.resources.cpus.map(|c| c.millis())),
        privileged: req.privileged || req.spec.privileged,
        network_mode: req.network_mode.clone().or(req.spec.network_mode.map(|m| {
            match m {
                NetworkMode::Bridge => "bridge",
                NetworkMode::Host => "host",
            }
            .to_string()
        })),
        pid_mode: req.pid_mode.clone(),
        cap_add: req
            .cap_add
            .iter()
            .cloned()
            .chain(req.spec.cap_add.iter().map(|c| c.to_string()))
            .collect(),
        binds: req
            .mounts
            .iter()
            .cloned()
            .chain(req.spec.volumes.iter().map(|v| v.to_string()))
            .collect(),
        spec: req.spec.clone(),
    }
}
