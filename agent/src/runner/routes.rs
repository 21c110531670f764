//! The runners' hands on the host's `sluice-proxy`: where a container behind it listens,
//! switching a service's route, waiting out a drain, taking a route away.
//!
//! Route target names are the containers' short ids, so the proxy's metrics and its
//! `draining` list name containers an operator can find with `docker ps`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sluice_common::names::ServiceName;
use sluice_common::proxy::{ProxyMode, RouteSpec, Target};
use sluice_proxy::control::ControlError;

use super::exec::{Exec, Fail};
use crate::record::{OpRecord, OpRequest};
use crate::runtime::{short, Runtime};

/// How often a drain is polled.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// How long past its `drain_timeout` a drain is waited for (the proxy closes what is left
/// at the timeout; this covers its bookkeeping).
const DRAIN_SLACK: Duration = Duration::from_secs(5);

impl From<ControlError> for Fail {
    fn from(e: ControlError) -> Self {
        Fail::Step(format!("sluice-proxy: {e}"))
    }
}

/// The route target of `container` at `addr`.
fn target(container: &str, addr: SocketAddr) -> Target {
    Target {
        name: short(container).to_string(),
        addr,
        weight: 100,
    }
}

impl<R: Runtime> Exec<'_, R> {
    fn proxy(&self) -> Result<&sluice_proxy::control::Client, Fail> {
        self.env.proxy.as_ref().ok_or_else(|| {
            Fail::Step("this agent has no sluice-proxy configured (proxy_socket)".into())
        })
    }

    /// A `recreate` deploy of a service the proxy serves would publish the port the proxy
    /// holds: refused before anything changes.
    pub async fn refuse_if_routed(&self, service: &ServiceName) -> Result<(), Fail> {
        let Some(proxy) = &self.env.proxy else {
            return Ok(());
        };
        match proxy.route(service).await {
            Ok(Some(route)) => Err(Fail::Step(format!(
                "service {service} is served through sluice-proxy on {} (it was deployed blue_green): deploy it blue_green, or remove it first to go back to recreate",
                route.spec.listen
            ))),
            // No route, or no proxy on this host: nothing stands in the way.
            Ok(None) | Err(_) => Ok(()),
        }
    }

    /// Where a running container publishes on loopback, or what it is instead.
    pub async fn loopback_addr(&self, container: &str) -> Result<SocketAddr, String> {
        match self.rt.inspect(container).await {
            Ok(Some(c)) if c.running => {
                let ip: Option<IpAddr> = c.host_ip.as_deref().and_then(|ip| ip.parse().ok());
                match (ip, c.host_port) {
                    (Some(ip), Some(port)) if ip.is_loopback() => Ok(SocketAddr::new(ip, port)),
                    _ => Err(format!(
                        "container {} does not publish on loopback (it was not deployed behind sluice-proxy)",
                        short(container)
                    )),
                }
            }
            Ok(Some(c)) => Err(c.status),
            Ok(None) => Err("gone".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Points the service's route at `container` (`to`), creating the route on the
    /// service's public port when it has none yet.
    pub async fn route(
        &self,
        rec: &OpRecord,
        container: &str,
        to: SocketAddr,
        name: &str,
    ) -> Result<(), Fail> {
        let proxy = self.proxy()?;
        let service = &rec.view.service;
        let targets = [target(container, to)];
        self.step(name, async {
            let view = match proxy.route(service).await? {
                Some(_) => proxy.switch(service, &targets).await?,
                None => {
                    let OpRequest::Deploy(d) = &rec.request else {
                        return Err(Fail::Step(format!(
                            "service {service} has no route in sluice-proxy to switch back"
                        )));
                    };
                    let spec = RouteSpec {
                        listen: SocketAddr::new(self.env.host_ip, d.host_port.get()),
                        mode: ProxyMode::Http,
                        targets: targets.to_vec(),
                        drain_timeout: sluice_common::time::DurationSpec(rec.drain_timeout()),
                    };
                    match proxy.put_route(service, &spec).await {
                        Err(ControlError::Refused { code, .. }) if code == "port_busy" => {
                            // The one move behind the proxy: a container deployed before
                            // (recreate) holds the public port itself. Stop (keep) it, then
                            // the proxy takes the port: connections are refused meanwhile.
                            self.release_port(rec).await?;
                            proxy.put_route(service, &spec).await?
                        }
                        r => r?,
                    }
                }
            };
            Ok((
                (),
                format!(
                    "{} → {} ({to}, generation {})",
                    view.spec.listen,
                    short(container),
                    view.generation
                ),
            ))
        })
        .await
    }

    /// `canary`: splits the service's route: `weight` percent of new requests to
    /// `container` (`to`), the rest to the old container's target, which the route already
    /// names (the new container's earlier weight is replaced).
    pub async fn weigh(
        &self,
        rec: &OpRecord,
        container: &str,
        to: SocketAddr,
        weight: u32,
    ) -> Result<(), Fail> {
        let proxy = self.proxy()?;
        let service = &rec.view.service;
        let old = rec
            .view
            .previous_container
            .as_deref()
            .map(short)
            .ok_or_else(|| Fail::Step("a canary needs a previous container".into()))?
            .to_string();
        self.step("set canary weight", async {
            let Some(route) = proxy.route(service).await? else {
                return Err(Fail::Step(format!(
                    "service {service} has no route in sluice-proxy to split"
                )));
            };
            let Some(old_target) = route.spec.targets.iter().find(|t| t.name == old) else {
                return Err(Fail::Step(format!(
                    "the route of {service} does not name the old container {old}"
                )));
            };
            let targets = [
                Target {
                    weight,
                    ..target(container, to)
                },
                Target {
                    weight: 100 - weight.min(100),
                    ..old_target.clone()
                },
            ];
            let view = proxy.switch(service, &targets).await?;
            Ok((
                (),
                format!(
                    "{weight}% to {}, {}% to {old} (generation {})",
                    short(container),
                    100 - weight.min(100),
                    view.generation
                ),
            ))
        })
        .await
    }

    /// Stops the replaced container when it publishes the service's port itself.
    async fn release_port(&self, rec: &OpRecord) -> Result<(), Fail> {
        let Some(old) = &rec.view.previous_container else {
            return Err(Fail::Step(
                "the service's port is busy on this host and no container of it holds it".into(),
            ));
        };
        match self.rt.inspect(old).await? {
            Some(c) if c.running && self.loopback_addr(old).await.is_err() => {
                tracing::warn!(container = %short(old), "moving the service behind sluice-proxy: stopping the container that published its port itself");
                self.rt.stop(old, self.env.stop_grace).await?;
                Ok(())
            }
            _ => Err(Fail::Step(
                "the service's port is busy on this host (not by this service)".into(),
            )),
        }
    }

    /// Waits until the proxy has drained `container`'s target: its in-flight requests
    /// finished, its connections closed (at the latest at the route's drain timeout).
    pub async fn drain(&self, rec: &OpRecord, container: &str) -> Result<(), Fail> {
        let proxy = self.proxy()?;
        let service = &rec.view.service;
        let name = short(container).to_string();
        let bound = rec.drain_timeout() + DRAIN_SLACK;
        self.step("drain", async {
            let started = Instant::now();
            loop {
                let left = match proxy.route(service).await? {
                    Some(v) => v.draining.into_iter().find(|d| d.target == name),
                    None => None,
                };
                let Some(d) = left else {
                    return Ok((
                        (),
                        format!("{name} drained in {} ms", started.elapsed().as_millis()),
                    ));
                };
                if started.elapsed() > bound {
                    return Ok((
                        (),
                        format!(
                            "{name} still had {} request(s) and {} connection(s) after {bound:?}; going on",
                            d.requests, d.connections
                        ),
                    ));
                }
                self.cell.set_phase(format!(
                    "draining {name}: {} request(s), {} connection(s)",
                    d.requests, d.connections
                ));
                tokio::select! {
                    _ = self.env.cancel.cancelled() => return Err(Fail::Halt(super::exec::Halt::Interrupted)),
                    _ = tokio::time::sleep(DRAIN_POLL) => {}
                }
            }
        })
        .await
    }

    /// Takes the service's route away if the host's proxy has one (a host without a proxy
    /// has none); whether there was one.
    pub async fn unroute_quietly(&self, service: &ServiceName) -> Result<bool, Fail> {
        let Some(proxy) = &self.env.proxy else {
            return Ok(false);
        };
        match proxy.remove_route(service).await {
            Ok(existed) => Ok(existed),
            Err(ControlError::Unreachable(e)) => {
                tracing::debug!(error = %e, "no sluice-proxy answers; no route to remove");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the service's route away (its first version failed: nothing to go back to).
    pub async fn unroute(&self, rec: &OpRecord) -> Result<(), Fail> {
        let proxy = self.proxy()?;
        let service = &rec.view.service;
        self.step("remove route", async {
            let existed = proxy.remove_route(service).await?;
            Ok((
                (),
                if existed { "removed" } else { "there was none" }.to_string(),
            ))
        })
        .await
    }
}
