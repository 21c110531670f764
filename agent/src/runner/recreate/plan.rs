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

use crate::record::{OpRecord, OpRequest, Stage};
use crate::runner::steps::{clear_failed, deploys, finish, prepare, restore_again, watch};
pub use crate::runner::steps::{Observed, Step};
use crate::runtime::short;

/// The step after `rec` and `obs`; `None` once the operation has finished (or is not a
/// recreate deploy or rollback).
pub fn next(rec: &OpRecord, obs: &Observed) -> Option<Step> {
    let deploy = deploys(rec)?;
    Some(match rec.stage {
        Stage::Start => prepare(deploy, obs),
        Stage::Switching => switching(rec, obs),
        Stage::Started => started(rec, obs, deploy),
        Stage::RollingBack => rolling_back(rec, obs, deploy),
        // (`Routed` is blue_green's, `Canary` the canary runner's.)
        Stage::Routed | Stage::Canary | Stage::Removing | Stage::Done => return None,
    })
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
    if let Some(step) = watch(rec, obs, deploy) {
        return step;
    }
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
        return restore_again(rec);
    }
    if let Some(failed) = rec.view.container.clone().filter(|c| !c.is_empty()) {
        if let Some(step) = clear_failed(rec, obs, failed, deploy) {
            return step;
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
