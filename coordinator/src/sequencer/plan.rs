//! The sequencer's decisions, as one pure function.
//!
//! [`plan`] looks at a deployment's replicated record and at what this driver has seen in
//! its leadership term ([`Observed`]) and says what to do next ([`Action`]): which command
//! to propose, which agents to ask for what, or to wait. It does no I/O; the executor
//! (`execute.rs`) performs the action, records what came of it in the record or in
//! [`Observed`], and asks again. A deployment is therefore driven the same way on its first
//! leader and on the one that takes over from it.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_common::agent_api::OperationTraffic;
use sluice_common::api::{HealthCheck, ServerStepState, ServerStepView, Strategy};
use sluice_common::deployment::{DeploymentEvent, Lifecycle, Rollback};
use sluice_common::locks::Lease;
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;

use crate::state::deployments::{Deployment, DeploymentCommand};

/// Default progress deadline (per server).
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// What this driver has seen since it took the deployment on. Starts empty.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// This node is no longer the leader (it may not propose).
    pub deposed: bool,
    /// The wall clock now.
    pub now: Timestamp,
    /// This driver took the service lock again with a fresh token (or had no need to).
    pub fenced: bool,
    /// Re-taking the lock was refused: someone else holds it now.
    pub lock_lost: Option<String>,
    /// Someone else holds the service lock (while pending).
    pub lock_held: Option<Lease>,
    /// What the pre-flight checks found, once this driver ran them.
    pub validated: Option<Validated>,
    /// The failures of the batch of servers this driver deployed last (empty: all healthy).
    pub batch_failures: Option<Vec<String>>,
    /// What the rollback this driver ran found: one line per server it could not restore.
    pub rollback_failures: Option<Vec<String>>,
    /// What ran on each target server before this deployment's version (for a rollback):
    /// absent when nothing of the service ran there.
    pub previous: BTreeMap<ServerName, HealthCheck>,
    /// `canary`: the step whose weight this driver has set on every target server.
    pub shifted: Option<u32>,
    /// `canary`: the proxies' counters as this driver last read them.
    pub readings: Option<Readings>,
}

/// The proxies' counters of a canary's versions on every target server, read at `at` for
/// step `step` (the baseline of the next measurement's window).
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// The step.
    pub step: u32,
    /// When.
    pub at: Timestamp,
    /// Per server: the new and the previous version's counters, or why they could not be
    /// read.
    pub servers: BTreeMap<ServerName, Result<OperationTraffic, String>>,
}

/// What validation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Failed checks, one line each.
    pub failures: Vec<String>,
    /// The same container already runs healthy on every target server.
    pub already_running: bool,
}

/// How to restore one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Nothing of the service ran there before: remove it.
    Remove,
    /// Switch back to the kept previous container, judged by its own check.
    Previous {
        /// The previous version's health check.
        health: HealthCheck,
        /// Remove the replaced (failed) container once the previous one is healthy.
        discard_replaced: bool,
    },
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing: the deployment needs no more driving.
    Done,
    /// This node may not act on it any more: the next leader takes over.
    Stop(String),
    /// Propose this command, then plan again.
    Propose(DeploymentCommand),
    /// Take the lock again with a fresh token before anything reaches an agent.
    Refence,
    /// Someone else holds the service lock: wait this long (or until something is applied).
    WaitForLock(Duration),
    /// Run the pre-flight checks.
    Validate,
    /// Deploy on these servers, concurrently, each within `deadline`.
    Deploy {
        /// The batch.
        servers: Vec<ServerName>,
        /// The progress deadline per server.
        deadline: Duration,
    },
    /// Wait this long, or until something is applied (a promote, a resume, a cancel).
    Wait(Duration),
    /// `canary`: set step `step`'s weight on every target server (deploying the new
    /// version beside the old where it is not yet), each within `deadline`; the `last`
    /// step (100 %) waits for every server's deploy to end.
    Shift {
        /// The step.
        step: u32,
        /// The new version's weight.
        weight: u32,
        /// The final switch.
        last: bool,
        /// The progress deadline per server.
        deadline: Duration,
    },
    /// `canary`: read the proxies' counters and measure every check of the analysis.
    Measure {
        /// The step judged.
        step: u32,
    },
    /// Restore these servers; `failed` were beyond restoring before it started.
    RollBack {
        /// What to do per server.
        restore: Vec<(ServerName, Restore)>,
        /// Servers already lost (failed without a restore), one line each.
        failed: Vec<String>,
    },
}

mod canary;

pub use canary::verdict;

fn event(d: &Deployment, event: DeploymentEvent, reason: &str, failure: Option<String>) -> Action {
    Action::Propose(DeploymentCommand::Event {
        id: d.id,
        event,
        reason: reason.to_string(),
        failure,
        noop: false,
    })
}

fn cancelled(d: &Deployment, event: DeploymentEvent) -> Action {
    self::event(d, event, "cancelled", Some("cancelled".into()))
}

/// The next step for `d`.
pub fn plan(d: &Deployment, seen: &Observed) -> Action {
    if !d.needs_driving() {
        return Action::Done;
    }
    if seen.deposed {
        return Action::Stop("no longer the leader".into());
    }
    if d.lifecycle.wants_lock() && d.token.is_some() && !seen.fenced {
        return match &seen.lock_lost {
            // No longer ours: this deployment can no longer act on its servers.
            Some(why) => Action::Propose(DeploymentCommand::GiveUp {
                id: d.id,
                failure: format!("lost the service lock: {why}"),
            }),
            None => Action::Refence,
        };
    }
    match d.lifecycle {
        Lifecycle::Pending { cancel_requested } => pending(d, seen, cancel_requested),
        Lifecycle::Validating { cancel_requested } => validating(d, seen, cancel_requested),
        Lifecycle::InProgress { cancel_requested } => in_progress(d, seen, cancel_requested),
        Lifecycle::Failed { rollback } => roll_back(d, seen, rollback, false),
        Lifecycle::Success { rollback, .. } => roll_back(d, seen, rollback, true),
        Lifecycle::RolledBack => Action::Done,
    }
}

fn pending(d: &Deployment, seen: &Observed, cancel: bool) -> Action {
    if cancel {
        return cancelled(d, DeploymentEvent::Cancel);
    }
    let Some(lease) = &seen.lock_held else {
        return Action::Propose(DeploymentCommand::Start {
            id: d.id,
            lock_ttl: super::LOCK_TTL,
        });
    };
    let wait = d.request.lock_wait.map_or(Duration::ZERO, |w| w.get());
    let waited = seen.now.since(d.created_at);
    if waited >= wait {
        let why = format!(
            "the service lock is held by {} ({}) until {}",
            lease.holder, lease.reason, lease.expires_at
        );
        return event(d, DeploymentEvent::LockTimeout, &why.clone(), Some(why));
    }
    // Wake when the lease would lapse or the wait runs out, whichever comes first.
    let until = (wait - waited)
        .min(lease.expires_at.since(seen.now) + Duration::from_millis(5))
        .max(Duration::from_millis(5));
    Action::WaitForLock(until)
}

fn validating(d: &Deployment, seen: &Observed, cancel: bool) -> Action {
    if cancel {
        return cancelled(d, DeploymentEvent::ChecksFailed);
    }
    match &seen.validated {
        None => Action::Validate,
        Some(v) if !v.failures.is_empty() => event(
            d,
            DeploymentEvent::ChecksFailed,
            &format!("{} check(s) failed", v.failures.len()),
            Some(v.failures.join("; ")),
        ),
        Some(_) => event(d, DeploymentEvent::ChecksPassed, "every check passed", None),
    }
}

fn in_progress(d: &Deployment, seen: &Observed, cancel: bool) -> Action {
    // Checked between batches: a cancel never cuts a server's deploy short.
    if cancel {
        return cancelled(d, DeploymentEvent::StepFailed);
    }
    if let Some(failures) = seen.batch_failures.as_ref().filter(|f| !f.is_empty()) {
        return event(
            d,
            DeploymentEvent::StepFailed,
            "a server failed",
            Some(failures.join("; ")),
        );
    }
    if seen.validated.as_ref().is_some_and(|v| v.already_running) && !d.touched() {
        return Action::Propose(DeploymentCommand::Event {
            id: d.id,
            event: DeploymentEvent::AllHealthy,
            reason: "no-op: this image already runs on every target server".into(),
            failure: None,
            noop: true,
        });
    }
    match d.request.strategy {
        // Each strategy plans its own rollout here; the agent runs the matching runner.
        Strategy::Recreate | Strategy::BlueGreen => in_batches(d),
        Strategy::Canary => canary::plan(d, seen),
    }
}

/// The next batch of `max_parallel` servers not yet healthy, or the end.
fn in_batches(d: &Deployment) -> Action {
    let batch = d.request.max_parallel.unwrap_or(1).max(1) as usize;
    let todo: Vec<ServerName> = d
        .targets
        .iter()
        .filter(|s| step_of(d, s).state != ServerStepState::Succeeded)
        .take(batch)
        .cloned()
        .collect();
    if todo.is_empty() {
        return event(
            d,
            DeploymentEvent::AllHealthy,
            "every server runs the new version healthy",
            None,
        );
    }
    Action::Deploy {
        servers: todo,
        deadline: d
            .request
            .progress_deadline
            .map_or(DEFAULT_PROGRESS_DEADLINE, |p| p.get()),
    }
}

fn roll_back(d: &Deployment, seen: &Observed, rollback: Rollback, manual: bool) -> Action {
    match rollback {
        Rollback::None | Rollback::GaveUp => return Action::Done,
        Rollback::Due => return Action::Propose(DeploymentCommand::BeginRollback { id: d.id }),
        Rollback::Running => {}
    }
    match &seen.rollback_failures {
        Some(failures) if failures.is_empty() => {
            let why = if manual {
                "manual rollback: the previous version runs healthy again"
            } else {
                "the previous version runs healthy again on every server touched"
            };
            event(d, DeploymentEvent::RollbackCompleted, why, None)
        }
        Some(failures) => Action::Propose(DeploymentCommand::GiveUp {
            id: d.id,
            failure: format!("ROLLBACK FAILED: {}", failures.join("; ")),
        }),
        None => {
            let mut restore = Vec::new();
            let mut failed = Vec::new();
            for server in &d.targets {
                let step = step_of(d, server);
                match step.state {
                    // Untouched, already back, or restored by the agent itself (with no
                    // previous version the agent removed the failed container).
                    ServerStepState::Pending
                    | ServerStepState::RolledBack
                    | ServerStepState::RestoredByAgent => continue,
                    ServerStepState::Failed | ServerStepState::RollbackFailed if !manual => {
                        failed.push(format!("{server}: {}", step.detail));
                        continue;
                    }
                    _ => {}
                }
                let how = match seen.previous.get(server) {
                    None => Restore::Remove,
                    Some(health) => Restore::Previous {
                        health: health.clone(),
                        discard_replaced: !manual,
                    },
                };
                restore.push((server.clone(), how));
            }
            Action::RollBack { restore, failed }
        }
    }
}

/// A server's step, `pending` when the record has none.
pub fn step_of(d: &Deployment, server: &ServerName) -> ServerStepView {
    d.servers
        .get(server)
        .cloned()
        .unwrap_or_else(|| ServerStepView::pending(server))
}

#[cfg(test)]
mod tests;
