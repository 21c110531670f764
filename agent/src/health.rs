//! Health checks of a started container: an HTTP GET expecting 2xx, a TCP connect, Docker's
//! own HEALTHCHECK, or none.
//!
//! HTTP and TCP probes go to the published host port on the agent's host address (what a
//! local proxy would dial), every `interval`, each bounded by `timeout`. Failures inside
//! `start_period` do not count; more than `retries` consecutive failures after it make the
//! container unhealthy. A container that exits is unhealthy at once, without waiting out the
//! retries.
//!
//! What is asked of Docker (is it running, has it restarted, its HEALTHCHECK status) goes
//! through the [`Runtime`], so the runners' tests script it; HTTP and TCP probes are real.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use sluice_common::api::HealthCheck;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Container, Runtime};

/// How a health check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Healthy; how it went.
    Healthy(String),
    /// Unhealthy; why.
    Unhealthy(String),
    /// The agent is shutting down; the check did not finish.
    Interrupted,
}

/// Where to probe.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The agent's host address (unspecified addresses are probed on loopback).
    pub ip: IpAddr,
    /// The port.
    pub port: u16,
}

impl Target {
    fn addr(self) -> SocketAddr {
        let ip = match self.ip {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.port)
    }
}

/// The HTTP client for probes: no proxy, no redirects followed (a 3xx is not 2xx).
pub fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("static client config")
}

async fn probe_http(
    client: &reqwest::Client,
    target: Target,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let url = format!("http://{}{}", target.addr(), path);
    match client.get(&url).timeout(timeout).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("GET {path} timed out after {timeout:?}")),
        Err(e) if e.is_connect() => Err(format!("GET {path}: connection refused")),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

/// A TCP connect that stays open. Docker's userland proxy accepts on the published port
/// even when nothing listens in the container, then closes the connection at once; so a
/// connection closed within a short grace time is a failure, not a success.
async fn probe_tcp(target: Target, timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut s =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target.addr())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Err(_) => return Err(format!("connect timed out after {timeout:?}")),
        };
    let grace = timeout.min(Duration::from_millis(200));
    let mut buf = [0u8; 1];
    match tokio::time::timeout(grace, s.read(&mut buf)).await {
        Err(_) | Ok(Ok(1..)) => Ok(()),
        Ok(Ok(0)) | Ok(Err(_)) => {
            Err("connection closed at once: nothing listens behind the published port".into())
        }
    }
}

/// Checks `container` until healthy, unhealthy, or `cancel`. `progress` gets phase strings
/// ("health check 3/10").
pub async fn check<R: Runtime>(
    docker: &R,
    client: &reqwest::Client,
    container: &str,
    target: Target,
    hc: &HealthCheck,
    cancel: &CancellationToken,
    mut progress: impl FnMut(String),
) -> Outcome {
    let (timeout, interval, retries, start_period) = match hc {
        HealthCheck::Http {
            timeout,
            interval,
            retries,
            start_period,
            ..
        }
        | HealthCheck::Tcp {
            timeout,
            interval,
            retries,
            start_period,
        } => (timeout.get(), interval.get(), *retries, start_period.get()),
        HealthCheck::Docker { deadline } => {
            return docker_health(docker, container, deadline.get(), cancel).await
        }
        HealthCheck::None {} => {
            return match docker.inspect(container).await {
                Ok(Some(c)) if c.running => Outcome::Healthy("running (no health check)".into()),
                Ok(Some(c)) => Outcome::Unhealthy(format!("container is {}", c.status)),
                Ok(None) => Outcome::Unhealthy("container is gone".into()),
                Err(e) => Outcome::Unhealthy(e.to_string()),
            }
        }
    };
    let started = Instant::now();
    let mut failures = 0u32;
    let mut attempts = 0u32;
    let mut restarts = None;
    loop {
        attempts += 1;
        match docker.inspect(container).await {
            Ok(Some(c)) => {
                let first = *restarts.get_or_insert(c.restart_count);
                if let Some(why) = exited(&c, first) {
                    return Outcome::Unhealthy(why);
                }
            }
            Ok(None) => return Outcome::Unhealthy("container is gone".into()),
            Err(_) => {}
        }
        let r = match hc {
            HealthCheck::Http { path, .. } => probe_http(client, target, path, timeout).await,
            _ => probe_tcp(target, timeout).await,
        };
        match r {
            Ok(()) => {
                return Outcome::Healthy(format!(
                    "healthy after {attempts} attempt(s), {} ms",
                    started.elapsed().as_millis()
                ))
            }
            Err(e) => {
                if started.elapsed() >= start_period {
                    failures += 1;
                }
                if failures > retries {
                    return Outcome::Unhealthy(format!(
                        "unhealthy: {failures} consecutive failed checks, last: {e}"
                    ));
                }
                progress(format!("health check {failures}/{retries}: {e}"));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Outcome::Interrupted,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Consecutive failed probes that end a watch period (one failed probe under load is not
/// yet a failed version; two in a row are).
pub const WATCH_FAILURES: u32 = 2;

/// Keeps checking a container that passed its health check, for `period` (the deploy's
/// `min_healthy`): unhealthy as soon as it stops or restarts, or [`WATCH_FAILURES`]
/// consecutive probes fail; healthy once `period` has passed without that.
#[allow(clippy::too_many_arguments)]
pub async fn watch<R: Runtime>(
    docker: &R,
    client: &reqwest::Client,
    container: &str,
    target: Target,
    hc: &HealthCheck,
    period: Duration,
    cancel: &CancellationToken,
    mut progress: impl FnMut(String),
) -> Outcome {
    let interval = match hc {
        HealthCheck::Http { interval, .. } | HealthCheck::Tcp { interval, .. } => interval.get(),
        HealthCheck::Docker { .. } | HealthCheck::None {} => Duration::from_millis(500),
    }
    .max(Duration::from_millis(50));
    let started = Instant::now();
    let (mut failures, mut probes, mut restarts) = (0u32, 0u32, None);
    loop {
        let mut docker_says = None;
        match docker.inspect(container).await {
            Ok(Some(c)) => {
                let first = *restarts.get_or_insert(c.restart_count);
                if let Some(why) = exited(&c, first) {
                    return Outcome::Unhealthy(format!(
                        "{why}, {} ms into the {period:?} watch",
                        started.elapsed().as_millis()
                    ));
                }
                docker_says = c.health;
            }
            Ok(None) => return Outcome::Unhealthy("container is gone".into()),
            Err(_) => {}
        }
        let r = match hc {
            HealthCheck::Http { path, timeout, .. } => {
                probe_http(client, target, path, timeout.get()).await
            }
            HealthCheck::Tcp { timeout, .. } => probe_tcp(target, timeout.get()).await,
            HealthCheck::Docker { .. } if docker_says.as_deref() == Some("unhealthy") => {
                Err("docker reports unhealthy".into())
            }
            HealthCheck::Docker { .. } | HealthCheck::None {} => Ok(()),
        };
        probes += 1;
        match r {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures >= WATCH_FAILURES {
                    return Outcome::Unhealthy(format!(
                        "unhealthy {} ms into the {period:?} watch: {failures} consecutive failed checks, last: {e}",
                        started.elapsed().as_millis()
                    ));
                }
            }
        }
        let elapsed = started.elapsed();
        if elapsed >= period {
            return Outcome::Healthy(format!("stayed healthy for {period:?} ({probes} checks)"));
        }
        progress(format!(
            "watching: healthy for {:.1} s of {period:?}",
            elapsed.as_secs_f64()
        ));
        tokio::select! {
            _ = cancel.cancelled() => return Outcome::Interrupted,
            _ = tokio::time::sleep(interval.min(period - elapsed)) => {}
        }
    }
}

/// Why `c` counts as having exited: it is stopped, or Docker restarted it (restart policy)
/// since the check began with `restarts_at_start`.
fn exited(c: &Container, restarts_at_start: i64) -> Option<String> {
    let code = c.exit_code.unwrap_or(-1);
    if matches!(c.status.as_str(), "exited" | "dead") {
        Some(format!("container exited with code {code}"))
    } else if c.status == "restarting" || c.restart_count > restarts_at_start {
        Some(format!(
            "container exited with code {code} (Docker's restart policy was restarting it)"
        ))
    } else {
        None
    }
}

async fn docker_health<R: Runtime>(
    docker: &R,
    container: &str,
    deadline: Duration,
    cancel: &CancellationToken,
) -> Outcome {
    let started = Instant::now();
    loop {
        match docker.inspect(container).await {
            Ok(Some(c)) => match c.health.as_deref() {
                _ if exited(&c, 0).is_some() => {
                    return Outcome::Unhealthy(exited(&c, 0).unwrap_or_default())
                }
                Some("healthy") => {
                    return Outcome::Healthy(format!(
                        "docker reports healthy after {} ms",
                        started.elapsed().as_millis()
                    ))
                }
                Some("unhealthy") => return Outcome::Unhealthy("docker reports unhealthy".into()),
                None => {
                    return Outcome::Unhealthy(
                        "the image has no HEALTHCHECK; use an http or tcp check".into(),
                    )
                }
                _ => {}
            },
            Ok(None) => return Outcome::Unhealthy("container is gone".into()),
            Err(e) => return Outcome::Unhealthy(e.to_string()),
        }
        if started.elapsed() > deadline {
            return Outcome::Unhealthy(format!("not healthy within {deadline:?}"));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Outcome::Interrupted,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
