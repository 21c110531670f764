//! The executor core every runner shares: named steps that are recorded and persisted,
//! interrupted by shutdown, and Docker calls retried through a daemon restart.
//!
//! A runner's plan decides; this performs. A step's failure is data for the plan
//! ([`Fail::Step`], turned into an observation by [`settle`]); only shutdown and a failed
//! persist stop a runner ([`Halt`]).

use sluice_common::backoff::Backoff;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use sluice_common::api::HealthCheck;
use sluice_common::names::ServerName;
use tokio_util::sync::CancellationToken;

use crate::health::{self, Outcome, Target};
use crate::ops::OpCell;
use crate::record::{OpRecord, OpRequest};
use crate::runtime::{short, DockerError, Runtime};
use crate::store::StoreError;

/// How long a restore waits out an unreachable Docker daemon (a daemon restart, a package
/// upgrade) before it gives up on restoring the previous container.
pub const DOCKER_PATIENCE: Duration = Duration::from_secs(60);

/// What runners need from the agent besides the runtime.
#[derive(Debug, Clone)]
pub struct Env {
    /// The server's name (part of container names).
    pub server: ServerName,
    /// The host address containers publish on and probes dial.
    pub host_ip: IpAddr,
    /// How long a stopped container gets before SIGKILL.
    pub stop_grace: Duration,
    /// Flipped on shutdown: runners stop at their next step.
    pub cancel: CancellationToken,
    /// The HTTP client of health probes.
    pub probes: reqwest::Client,
    /// The host's `sluice-proxy` (`blue_green` switches its routes).
    pub proxy: Option<sluice_proxy::control::Client>,
}

impl Env {
    /// The environment of `agent`'s runners.
    pub fn of(agent: &crate::Agent) -> Self {
        Self {
            server: agent.config.name.clone(),
            host_ip: agent.config.host_ip,
            stop_grace: agent.config.stop_grace.get(),
            cancel: agent.cancel.clone(),
            probes: agent.probe_client.clone(),
            proxy: Some(agent.proxy.clone()),
        }
    }
}

/// Why a runner stopped without finishing.
#[derive(Debug)]
pub enum Halt {
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
pub enum Fail {
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

/// A step's outcome as a plan observes it: `Ok(Err(why))` when the step failed, `Err`
/// when the runner must stop.
pub fn settle<T>(r: Result<T, Fail>) -> Result<Result<T, String>, Halt> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Fail::Step(e)) => Ok(Err(e)),
        Err(Fail::Halt(h)) => Err(h),
    }
}

/// Runs a Docker call, retrying it while the daemon is unreachable, for up to
/// [`DOCKER_PATIENCE`]; any other answer is returned at once.
pub async fn patiently<T, F, Fut>(call: F) -> Result<T, DockerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DockerError>>,
{
    let policy = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));
    let unavailable = |e: &DockerError| {
        let wait = matches!(e, DockerError::Unavailable(_));
        if wait {
            tracing::warn!(error = %e, "docker unreachable during a rollback; retrying");
        }
        wait
    };
    sluice_common::backoff::retry(policy, jitter(), DOCKER_PATIENCE, unavailable, call).await
}

/// A seed for one retry loop's jitter.
fn jitter() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64
}

/// One runner's hands: the runtime, the agent's settings, and the operation's record.
#[derive(Debug)]
pub struct Exec<'a, R> {
    /// The container runtime.
    pub rt: &'a R,
    /// The agent's settings.
    pub env: &'a Env,
    /// The operation.
    pub cell: &'a OpCell,
}

impl<R: Runtime> Exec<'_, R> {
    /// A copy of the record.
    pub fn record(&self) -> OpRecord {
        self.cell.record()
    }

    /// Changes the record and persists it.
    pub fn update(&self, f: impl FnOnce(&mut OpRecord)) -> Result<(), StoreError> {
        self.cell.update(f)
    }

    /// A Docker call on `container` as step `name`, retried while the daemon is unreachable
    /// ([`patiently`]); the step's detail is the container's short id.
    pub async fn patient_step<F, Fut>(
        &self,
        name: &str,
        container: &str,
        call: F,
    ) -> Result<(), Fail>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), DockerError>>,
    {
        self.step(name, async {
            patiently(call).await?;
            Ok(((), short(container).to_string()))
        })
        .await
    }

    /// Runs `fut` as a named step: recorded, persisted, interruptible by shutdown.
    pub async fn step<T>(
        &self,
        name: &str,
        fut: impl Future<Output = Result<(T, String), Fail>>,
    ) -> Result<T, Fail> {
        self.cell.update(|r| r.begin(name))?;
        // Shutdown first: once it is asked for, no further step runs (deterministically,
        // even when the step's own future is ready too).
        let r = tokio::select! {
            biased;
            _ = self.env.cancel.cancelled() => return Err(Fail::Halt(Halt::Interrupted)),
            r = fut => r,
        };
        match r {
            Ok((v, detail)) => {
                self.cell.update(|r| r.end(true, detail))?;
                Ok(v)
            }
            Err(Fail::Step(e)) => {
                self.cell.update(|r| r.end(false, e.clone()))?;
                Err(Fail::Step(e))
            }
            Err(h) => Err(h),
        }
    }

    /// Health-checks `container` as step `name`, with progress in the phase. Going
    /// forward, the check stops the moment the coordinator aborts the operation or its own
    /// deadline passes (a restore's checks are never cut short: see
    /// [`OpRecord::halt_reason`]).
    pub async fn check(
        &self,
        container: &str,
        hc: &HealthCheck,
        name: &str,
    ) -> Result<String, Fail> {
        self.probe(container, name, |target| async move {
            let out = health::check(
                self.rt,
                &self.env.probes,
                container,
                target,
                hc,
                &self.env.cancel,
                |p| self.cell.set_phase(p),
            )
            .await;
            if !matches!(out, Outcome::Interrupted) {
                crate::metrics::health_check_finished(matches!(out, Outcome::Healthy(_)));
            }
            out
        })
        .await
    }

    /// Watches `container` for `period` after its first good check, as step "watch";
    /// stops going forward (a failure) the moment the operation is aborted or out of time.
    pub async fn watch(
        &self,
        container: &str,
        hc: &HealthCheck,
        period: Duration,
    ) -> Result<(), Fail> {
        self.probe(container, "watch", |target| {
            health::watch(
                self.rt,
                &self.env.probes,
                container,
                target,
                hc,
                period,
                &self.env.cancel,
                |p| self.cell.set_phase(p),
            )
        })
        .await
        .map(drop)
    }

    /// Runs `probe` against `container` (given where to reach it) as step `name`: it stops
    /// the moment the operation halts (a failure); healthy gives the step its detail,
    /// unhealthy fails it, interrupted (shutdown) halts the runner.
    async fn probe<F>(
        &self,
        container: &str,
        name: &str,
        probe: impl FnOnce(Target) -> F,
    ) -> Result<String, Fail>
    where
        F: Future<Output = Outcome>,
    {
        let target = self.probe_target(container).await;
        self.step(name, async {
            let out = tokio::select! {
                out = probe(target) => out,
                why = self.cell.halted() => return Err(Fail::Step(why)),
            };
            match out {
                Outcome::Healthy(d) => Ok((d.clone(), d)),
                Outcome::Unhealthy(e) => Err(Fail::Step(e)),
                Outcome::Interrupted => Err(Fail::Halt(Halt::Interrupted)),
            }
        })
        .await
    }

    /// Where to probe `container`: the host port it publishes, else (host network) the
    /// port the deploy request names.
    pub(crate) async fn probe_target(&self, container: &str) -> Target {
        let (published, ip) = match self.rt.inspect(container).await {
            Ok(Some(c)) => (c.host_port, c.host_ip.and_then(|ip| ip.parse().ok())),
            _ => (None, None),
        };
        let fallback = match &self.cell.record().request {
            OpRequest::Deploy(d)
                if d.network_mode.as_deref() == Some("host")
                    || d.spec.network_mode == Some(sluice_common::container::NetworkMode::Host) =>
            {
                d.container_port.get()
            }
            OpRequest::Deploy(d) => d.host_port.get(),
            OpRequest::Rollback(_) | OpRequest::Remove(_) => 0,
        };
        Target {
            // A container behind the proxy publishes on loopback, whatever the host address.
            ip: ip.unwrap_or(self.env.host_ip),
            port: published.unwrap_or(fallback),
        }
    }

    /// The health check `container` was deployed with (its label), if it carries one.
    pub async fn own_health(&self, container: &str) -> Option<HealthCheck> {
        match self.rt.inspect(container).await {
            Ok(Some(c)) => c.health_check,
            _ => None,
        }
    }
}
