//! The recreate runner's decisions, as a pure function: [`next`] takes the persisted record
//! (its [`Stage`] above all) and what this run of the runner has observed so far, and names
//! the one step to perform next. No I/O, no clock: the executor performs the step, records
//! what it saw in [`Observed`], and asks again, until [`next`] has nothing left.
//!
//! The stage is persisted before every step that changes what serves, so after an agent
//! restart the executor starts over with an empty [`Observed`] at the persisted stage, and
//! the same function decides what that stage requires (redo the health check, restore the
//! previous container, ...).

use sluice_common::agent_api::OperationState;

use crate::record::{Finish, OpRecord, OpRequest, Stage};
use crate::runtime::short;

/// What this run of the runner has seen, step by step (empty after an agent restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Deploy: the image is present (found or pulled), or why not.
    pub image: Option<Result<(), String>>,
    /// The operation's containers were chosen and recorded (deploy: the new one created or
    /// found; rollback: the kept previous one chosen), or why not.
    pub prepared: Option<Result<(), String>>,
    /// Why the operation must stop going forward (aborted, or past its deadline), as seen
    /// right after preparing; it then abandons instead of switching.
    pub halted: Option<String>,
    /// Abandoning: the removal of the new container was attempted (its failure does not
    /// matter: nothing serves from it).
    pub new_removed: bool,
    /// The service's other running containers were stopped (kept), or why not.
    pub stopped: Option<Result<(), String>>,
    /// The new container was started, or why not.
    pub started: Option<Result<(), String>>,
    /// The new container, inspected once started: running, or what it is instead
    /// (`exited`, `gone`).
    pub new_state: Option<Result<(), String>>,
    /// The new container's health check: how it passed, or why it failed.
    pub health: Option<Result<String, String>>,
    /// The prune of older containers was attempted (a failed prune leaves extra stopped
    /// containers; the deploy itself worked).
    pub pruned: bool,
    /// A rollback that discards the replaced (failed) container: whether it was removed.
    pub discarded: Option<bool>,
    /// The restore began in this run (stage, error and phase persisted).
    pub restoring: bool,
    /// The failed container's log capture was attempted.
    pub log_captured: bool,
    /// The failed container's removal (deploy) or stop (rollback) was attempted.
    pub failed_cleared: bool,
    /// The previous container was started, or why not.
    pub previous_started: Option<Result<(), String>>,
    /// The previous container's health check: how it passed, or why it failed.
    pub previous_health: Option<Result<String, String>>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Deploy: make sure the image is present, pulling it if not ("ensure image").
    EnsureImage,
    /// Deploy: create the new container, or find the one a previous run created ("create
    /// container"); record it and the previous one; persist [`Stage::Switching`].
    CreateContainer,
    /// Rollback: choose the kept previous container as the target ("choose previous
    /// container"); persist [`Stage::Switching`].
    ChoosePrevious,
    /// Abandon: remove the new container, which never served ("remove new container").
    RemoveNew,
    /// Stop (keep) the service's other running containers ("stop previous container").
    StopPrevious,
    /// Start the new container ("start new container"); persist [`Stage::Started`].
    StartNew,
    /// Inspect the new container: is it running?
    InspectNew,
    /// Health-check the new container, by its own check if it carries one ("health check").
    CheckNew,
    /// Keep one previous container, remove the service's older ones ("prune old
    /// containers").
    Prune,
    /// Remove the container a rollback replaced, a failed version ("remove failed
    /// container").
    DiscardReplaced {
        /// The replaced container.
        container: String,
    },
    /// Begin restoring the previous version: persist [`Stage::RollingBack`] and `why`.
    Restore {
        /// What failed.
        why: String,
    },
    /// Keep the failed container's last log lines, if it still exists ("capture log of
    /// failed container").
    CaptureLog {
        /// The failed container.
        container: String,
    },
    /// Remove the failed container (deploy), or stop it (rollback: it is the only copy of
    /// that version): "remove failed container" / "stop failed container".
    ClearFailed {
        /// The failed container.
        container: String,
        /// Remove rather than stop.
        remove: bool,
    },
    /// Start the previous container ("start previous container").
    StartPrevious {
        /// The previous container.
        container: String,
    },
    /// Health-check the previous container by its own check ("health check previous
    /// container").
    CheckPrevious {
        /// The previous container.
        container: String,
    },
    /// Finish the operation.
    Finish(Finish),
}

fn finish(state: OperationState, phase: impl Into<String>, error: Option<String>) -> Step {
    Step::Finish(Finish {
        state,
        phase: phase.into(),
        error,
    })
}

/// The step after `rec` and `obs`; `None` once the operation has finished (or is not a
/// recreate deploy or rollback).
pub fn next(rec: &OpRecord, obs: &Observed) -> Option<Step> {
    let deploy = match &rec.request {
        OpRequest::Deploy(_) => true,
        OpRequest::Rollback(_) => false,
        OpRequest::Remove(_) => return None,
    };
    Some(match rec.stage {
        Stage::Start => prepare(deploy, obs),
        Stage::Switching => switching(rec, obs),
        Stage::Started => started(rec, obs, deploy),
        Stage::RollingBack => rolling_back(rec, obs, deploy),
        Stage::Removing | Stage::Done => return None,
    })
}

/// Nothing serves differently yet: a failure here changed nothing.
fn prepare(deploy: bool, obs: &Observed) -> Step {
    let unchanged = |e: &str| {
        finish(
            OperationState::Failed,
            "failed before anything was changed",
            Some(format!("{e} (nothing was changed)")),
        )
    };
    if deploy {
        match &obs.image {
            None => return Step::EnsureImage,
            Some(Err(e)) => return unchanged(e),
            Some(Ok(())) => {}
        }
    }
    match &obs.prepared {
        Some(Err(e)) => unchanged(e),
        // (A successful preparation persists `Switching` with it: `Some(Ok)` is not seen
        // here; preparing again would be harmless.)
        _ if deploy => Step::CreateContainer,
        _ => Step::ChoosePrevious,
    }
}

fn switching(rec: &OpRecord, obs: &Observed) -> Step {
    // Aborted, or out of time, before anything that serves was touched: take the new
    // container away again and stop there.
    if let Some(why) = &obs.halted {
        if rec.view.container.is_some() && !obs.new_removed {
            return Step::RemoveNew;
        }
        let error = Some(format!("{why} (nothing that serves was changed)"));
        // The previous container was never stopped: if it served, it still does.
        return if rec.view.previous_container.is_some() && rec.previous_was_running {
            finish(
                OperationState::RolledBack,
                "stopped before switching: the previous container kept serving",
                error,
            )
        } else {
            finish(
                OperationState::Failed,
                "stopped before anything was changed",
                error,
            )
        };
    }
    match &obs.stopped {
        None => return Step::StopPrevious,
        Some(Err(e)) => return Step::Restore { why: e.clone() },
        Some(Ok(())) => {}
    }
    match &obs.started {
        Some(Err(e)) => Step::Restore { why: e.clone() },
        // (A successful start persists `Started` with it.)
        _ => Step::StartNew,
    }
}

fn started(rec: &OpRecord, obs: &Observed, deploy: bool) -> Step {
    match &obs.new_state {
        None => return Step::InspectNew,
        Some(Err(state)) => {
            return Step::Restore {
                why: format!("the new container is {state} (found after an agent restart)"),
            }
        }
        Some(Ok(())) => {}
    }
    let detail = match &obs.health {
        None => return Step::CheckNew,
        Some(Err(e)) => return Step::Restore { why: e.clone() },
        Some(Ok(detail)) => detail,
    };
    if deploy && !obs.pruned {
        return Step::Prune;
    }
    let discard = match &rec.request {
        OpRequest::Rollback(r) if r.discard_replaced => rec.view.previous_container.clone(),
        _ => None,
    };
    if let (Some(container), None) = (&discard, obs.discarded) {
        return Step::DiscardReplaced {
            container: container.clone(),
        };
    }
    let removed = discard.filter(|_| obs.discarded == Some(true));
    let phase = match (&rec.view.image, deploy, &removed) {
        (Some(i), true, _) => format!("{i} is running and healthy ({detail})"),
        (_, _, Some(failed)) => format!(
            "previous container is running and healthy ({detail}); the failed one ({}) was removed",
            short(failed)
        ),
        _ => format!("previous container is running and healthy ({detail})"),
    };
    finish(OperationState::Succeeded, phase, None)
}

/// The new (deploy) or target (rollback) container failed: keep its log tail, remove it
/// (deploy) or stop it (rollback), restart the one it replaced and check it.
fn rolling_back(rec: &OpRecord, obs: &Observed, deploy: bool) -> Step {
    if !obs.restoring {
        // Resumed after an agent restart: the restore starts over (every step of it is
        // idempotent), with the error recorded when it first began.
        return Step::Restore {
            why: rec
                .view
                .error
                .clone()
                .unwrap_or_else(|| "interrupted while rolling back".into()),
        };
    }
    if let Some(failed) = rec.view.container.clone().filter(|c| !c.is_empty()) {
        if rec.view.log_tail.is_none() && !obs.log_captured {
            return Step::CaptureLog { container: failed };
        }
        if !obs.failed_cleared {
            return Step::ClearFailed {
                container: failed,
                remove: deploy,
            };
        }
    }
    let previous = match (&rec.view.previous_container, rec.previous_was_running) {
        (Some(p), true) => p.clone(),
        (Some(_), false) => {
            return finish(
                OperationState::Failed,
                "failed; the previous container was not running before, so it was left stopped",
                None,
            )
        }
        (None, _) => {
            return finish(
                OperationState::Failed,
                "failed; there was no previous container to restore",
                None,
            )
        }
    };
    let failed_too = |e: &str| {
        let first = rec.view.error.clone().unwrap_or_default();
        finish(
            OperationState::Failed,
            "FAILED: the new version failed and the previous one could not be restored",
            Some(format!(
                "{first}; restoring the previous container failed too: {e}"
            )),
        )
    };
    match &obs.previous_started {
        None => {
            return Step::StartPrevious {
                container: previous,
            }
        }
        Some(Err(e)) => return failed_too(e),
        Some(Ok(())) => {}
    }
    match &obs.previous_health {
        None => Step::CheckPrevious {
            container: previous,
        },
        Some(Err(e)) => failed_too(e),
        Some(Ok(_)) => finish(
            OperationState::RolledBack,
            "rolled back: the previous container is running and healthy",
            None,
        ),
    }
}
