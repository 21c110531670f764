//! The route table and its changes: validate, bind, check targets, persist, then switch.
//! Every change holds the table lock from the first check to the switch, so changes are
//! serialized and a refused one leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::names::ServiceName;
use sluice_common::proxy::{validate_targets, Draining, RouteSpec, RouteView, SpecError, Target};

use crate::drain;
use crate::persist::{self, Stored};
use crate::plan::plan_targets;
use crate::route::{Live, RouteShared};
use crate::runtime::Runtime;
use crate::target::TargetRt;

/// A target that lost its weight, until nothing is left on it.
#[derive(Debug)]
pub struct DrainEntry {
    /// Its runtime (the counters the view reads).
    pub t: Arc<TargetRt>,
    /// When what is left gets closed.
    pub deadline: Instant,
}

/// One route.
#[derive(Debug)]
pub struct Entry {
    /// The live spec.
    pub spec: RouteSpec,
    /// Bumped on each change.
    pub generation: u64,
    /// What the listener shares.
    pub shared: Arc<RouteShared>,
    /// The listening socket (a handle kept for handoff and the systemd store); `None` when
    /// it could not be bound on start.
    pub listener: Option<std::net::TcpListener>,
    /// Targets with weight > 0.
    pub live: Vec<Arc<TargetRt>>,
    /// Targets draining.
    pub draining: Vec<DrainEntry>,
}

/// The route table behind its lock, with the runtime it starts listeners on. The control
/// path holds the lock across a whole change, so changes are serialized.
#[derive(Debug)]
pub struct Routes {
    /// What the data path shares.
    pub rt: Arc<Runtime>,
    /// The routes.
    pub table: tokio::sync::Mutex<Table>,
}

impl Routes {
    /// An empty table.
    pub fn new(rt: Arc<Runtime>) -> Arc<Self> {
        Arc::new(Self {
            rt,
            table: tokio::sync::Mutex::new(Table::default()),
        })
    }
}

/// All routes, plus the drains of deleted routes.
#[derive(Debug, Default)]
pub struct Table {
    /// By service.
    pub routes: BTreeMap<ServiceName, Entry>,
    /// Drains of routes that were deleted, with their service.
    pub orphans: Vec<(String, DrainEntry)>,
}

/// Why a change is refused. Nothing changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No such route.
    #[error("no route for service {0}")]
    UnknownService(String),
    /// The listen address could not be bound.
    #[error("{0}")]
    PortBusy(String),
    /// A target with weight > 0 did not accept a TCP connection within 1 s.
    #[error("{0}")]
    TargetUnreachable(String),
    /// A target outside loopback.
    #[error("{0}")]
    NotLoopback(String),
    /// The body does not parse or breaks a rule.
    #[error("{0}")]
    InvalidBody(String),
    /// The table could not be written.
    #[error("could not persist the route table: {0}")]
    Persist(String),
    /// The process is handing over or stopping.
    #[error("the proxy is shutting down or handing over to its successor")]
    Retiring,
}

impl From<SpecError> for OpError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Invalid(m) => Self::InvalidBody(m),
            SpecError::NotLoopback(m) => Self::NotLoopback(m),
        }
    }
}

/// The control API's view of a route.
pub fn view(service: &ServiceName, e: &Entry, now: Instant) -> RouteView {
    RouteView {
        service: service.clone(),
        spec: e.spec.clone(),
        generation: e.generation,
        draining: e
            .draining
            .iter()
            .map(|d| {
                let load = d.t.load();
                Draining {
                    target: d.t.target.name.clone(),
                    addr: d.t.target.addr,
                    requests: load.requests,
                    connections: load.connections,
                    closes_in_ms: drain::closes_in_ms(d.deadline, now),
                }
            })
            .collect(),
    }
}

/// Opens a listening socket the way the proxy wants it (SO_REUSEADDR, non-blocking).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = tokio::net::TcpSocket::new_v4().and_then(|s| {
        if addr.is_ipv6() {
            tokio::net::TcpSocket::new_v6()
        } else {
            Ok(s)
        }
    })?;
    l.set_reuseaddr(true)?;
    l.bind(addr)?;
    let l = l.listen(1024)?;
    l.into_std()
}

async fn check_targets(targets: &[Target]) -> Result<(), OpError> {
    let checks: Vec<_> = targets
        .iter()
        .filter(|t| t.weight > 0)
        .map(|t| {
            let t = t.clone();
            tokio::spawn(async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(t.addr),
                )
                .await;
                match r {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("target {} at {}: {e}", t.name, t.addr)),
                    Err(_) => Err(format!(
                        "target {} at {}: no connection within 1s",
                        t.name, t.addr
                    )),
                }
            })
        })
        .collect();
    for c in checks {
        match c.await {
            Ok(Ok(())) => {}
            Ok(Err(m)) => return Err(OpError::TargetUnreachable(m)),
            Err(e) => return Err(OpError::TargetUnreachable(e.to_string())),
        }
    }
    Ok(())
}

fn stored(table: &Table) -> BTreeMap<ServiceName, Stored> {
    table
        .routes
        .iter()
        .map(|(s, e)| {
            (
                s.clone(),
                Stored {
                    spec: e.spec.clone(),
                    generation: e.generation,
                },
            )
        })
        .collect()
}

async fn save(rt: &Runtime, routes: BTreeMap<ServiceName, Stored>) -> Result<(), OpError> {
    let dir = rt.state_dir.clone();
    tokio::task::spawn_blocking(move || persist::save(&dir, &routes))
        .await
        .map_err(|e| OpError::Persist(e.to_string()))?
        .map_err(|e| OpError::Persist(e.to_string()))
}

/// Starts a route's runtime on `listener` (no checks: used on start, after a handoff, and
/// by [`put`] once everything passed).
pub fn install(
    rt: &Arc<Runtime>,
    table: &mut Table,
    service: &ServiceName,
    spec: RouteSpec,
    generation: u64,
    listener: Option<std::net::TcpListener>,
) {
    let now = Instant::now();
    let previous = table.routes.remove(service);
    let (old_live, mut draining, old_shared, old_listener) = match previous {
        Some(e) => (e.live, e.draining, Some(e.shared), e.listener),
        None => (Vec::new(), Vec::new(), None, None),
    };
    // Cut targets cannot come back; everything else may be revived.
    let revivable: Vec<usize> = (0..draining.len())
        .filter(|&i| !draining[i].t.is_cut())
        .collect();
    let live_t: Vec<Target> = old_live.iter().map(|t| t.target.clone()).collect();
    let drain_t: Vec<Target> = revivable
        .iter()
        .map(|&i| draining[i].t.target.clone())
        .collect();
    let plan = plan_targets(&live_t, &drain_t, &spec.targets);
    let mut next: Vec<Arc<TargetRt>> = Vec::new();
    let mut weights: Vec<u32> = Vec::new();
    for &(li, ni) in &plan.keep {
        next.push(old_live[li].clone());
        weights.push(spec.targets[ni].weight);
    }
    let mut revived = Vec::new();
    for &(di, ni) in &plan.revive {
        let t = draining[revivable[di]].t.clone();
        t.reopen_pool();
        next.push(t);
        weights.push(spec.targets[ni].weight);
        revived.push(revivable[di]);
    }
    revived.sort_unstable();
    for i in revived.into_iter().rev() {
        draining.remove(i);
    }
    for &ni in &plan.fresh {
        let t = &spec.targets[ni];
        next.push(TargetRt::new(
            t.clone(),
            rt.metrics.target(service.as_str(), &t.name),
            rt.workers.slots(),
        ));
        weights.push(t.weight);
    }
    let deadline = drain::deadline(now, spec.drain_timeout.0);
    // Their pools close only after the swap: a request that picks one before it still
    // finds its pool.
    let mut to_close = Vec::new();
    for &li in &plan.drain {
        let t = old_live[li].clone();
        to_close.push(t.clone());
        draining.push(DrainEntry { t, deadline });
    }
    let fresh_socket = listener.is_some() && old_listener.is_some();
    let rebind = listener.is_some() || old_shared.as_ref().is_none_or(|s| s.mode != spec.mode);
    let (shared, listener) = match (rebind, old_shared) {
        (false, Some(s)) => {
            *s.drain_timeout.write().expect("drain lock") = spec.drain_timeout.0;
            (s, old_listener)
        }
        (_, old) => {
            if let Some(o) = old {
                // Its listener stops; connections it accepted follow the new targets until
                // they close (gracefully, once idle).
                o.swap(Live {
                    targets: next.clone(),
                    weights: weights.clone(),
                });
                o.stop();
            }
            let shared = RouteShared::new(
                service.to_string(),
                spec.mode,
                spec.drain_timeout.0,
                rt.limits,
            );
            // Targets first, then the accept loop: a connection already waiting in the
            // backlog (a restart, a handoff) must find them.
            shared.swap(Live {
                targets: next.clone(),
                weights: weights.clone(),
            });
            let l = listener.or(old_listener);
            if let Some(l) = &l {
                let _ = l.set_nonblocking(true);
                match l.try_clone().and_then(tokio::net::TcpListener::from_std) {
                    Ok(tl) => crate::listener::spawn(rt.clone(), shared.clone(), tl),
                    Err(e) => tracing::error!(error = %e, %service, "cannot serve the listener"),
                }
                if rt.fdstore {
                    // A route that moved to another port must not leave its old socket in
                    // the store.
                    if fresh_socket {
                        crate::systemd::forget(service);
                    }
                    crate::systemd::store(service, l);
                }
            }
            (shared, l)
        }
    };
    tracing::debug!(%service, generation, "switched");
    shared.swap(Live {
        targets: next.clone(),
        weights,
    });
    for t in to_close {
        t.close_pool();
    }
    rt.metrics.generation(service.as_str(), generation);
    rt.metrics.drains(service.as_str(), draining.len());
    table.routes.insert(
        service.clone(),
        Entry {
            spec,
            generation,
            shared,
            listener,
            live: next,
            draining,
        },
    );
}

fn refuse_if_retiring(rt: &Runtime) -> Result<(), OpError> {
    if rt.retiring.load(Ordering::SeqCst) {
        return Err(OpError::Retiring);
    }
    Ok(())
}

/// `PUT /v1/routes/{service}`: creates or replaces a route.
pub async fn put(
    routes: &Routes,
    service: &ServiceName,
    spec: RouteSpec,
) -> Result<RouteView, OpError> {
    spec.validate()?;
    let rt = &routes.rt;
    let mut table = routes.table.lock().await;
    refuse_if_retiring(rt)?;
    let current = table.routes.get(service);
    if let Some(e) = current {
        if e.spec == spec {
            return Ok(view(service, e, Instant::now()));
        }
    }
    let listener = match current {
        Some(e) if e.spec.listen == spec.listen && e.listener.is_some() => None,
        _ => Some(
            bind(spec.listen)
                .map_err(|e| OpError::PortBusy(format!("cannot listen on {}: {e}", spec.listen)))?,
        ),
    };
    let generation = current.map_or(1, |e| e.generation + 1);
    commit(rt, &mut table, service, spec, generation, listener).await
}

/// `PUT /v1/routes/{service}/targets`: the switch.
pub async fn switch(
    routes: &Routes,
    service: &ServiceName,
    targets: Vec<Target>,
) -> Result<RouteView, OpError> {
    validate_targets(&targets)?;
    let rt = &routes.rt;
    let mut table = routes.table.lock().await;
    refuse_if_retiring(rt)?;
    let e = table
        .routes
        .get(service)
        .ok_or_else(|| OpError::UnknownService(service.to_string()))?;
    if e.spec.targets == targets {
        return Ok(view(service, e, Instant::now()));
    }
    let spec = RouteSpec {
        targets,
        ..e.spec.clone()
    };
    let generation = e.generation + 1;
    commit(rt, &mut table, service, spec, generation, None).await
}

/// Checks the spec's live targets, persists the table with `service` at `spec`, then
/// installs it (nothing changes when a check or the write fails).
async fn commit(
    rt: &Arc<Runtime>,
    table: &mut Table,
    service: &ServiceName,
    spec: RouteSpec,
    generation: u64,
    listener: Option<std::net::TcpListener>,
) -> Result<RouteView, OpError> {
    check_targets(&spec.targets).await?;
    let mut next = stored(table);
    next.insert(
        service.clone(),
        Stored {
            spec: spec.clone(),
            generation,
        },
    );
    save(rt, next).await?;
    install(rt, table, service, spec, generation, listener);
    Ok(view(service, &table.routes[service], Instant::now()))
}

/// `DELETE /v1/routes/{service}`: stops listening, drains, forgets. `false` if unknown.
pub async fn remove(routes: &Routes, service: &ServiceName) -> Result<bool, OpError> {
    let rt = &routes.rt;
    let mut table = routes.table.lock().await;
    refuse_if_retiring(rt)?;
    if !table.routes.contains_key(service) {
        return Ok(false);
    }
    let mut next = stored(&table);
    next.remove(service);
    save(rt, next).await?;
    let e = table.routes.remove(service).expect("checked");
    e.shared.stop();
    if rt.fdstore {
        crate::systemd::forget(service);
    }
    // The route's client connections close gracefully (their listener's stop); what is in
    // flight finishes on the targets it picked, which drain like any other.
    let deadline = drain::deadline(Instant::now(), e.spec.drain_timeout.0);
    for t in e.live {
        table
            .orphans
            .push((service.to_string(), DrainEntry { t, deadline }));
    }
    for d in e.draining {
        table.orphans.push((service.to_string(), d));
    }
    rt.metrics.forget_route(service.as_str());
    Ok(true)
}
