//! The `blue_green` runner's decisions, as a pure function (see [`crate::runner::steps`]).
//!
//! Deploy: ensure the image → create the new container (loopback, a port Docker picks) →
//! start it → find its address → health-check it directly (it has no user traffic yet) →
//! switch the proxy route to it (persist [`Stage::Routed`]) → drain the old one → watch the
//! new one for `min_healthy` → stop (keep) the old one → prune → `succeeded`.
//! A failure before the switch removes the new container: the old one never stopped
//! serving (`rolled_back`). A failure after it (the watch, an abort) switches traffic back
//! to the old container, still running, drains the new one and removes it (`rolled_back`).
//!
//! Rollback: the kept previous container is started, checked, switched to; the current one
//! drains and is stopped (kept), or removed when it is a failed version. A previous one
//! that is unhealthy is stopped again and traffic stays where it was (`failed`).

use sluice_common::agent_api::OperationState;

use crate::record::{OpRecord, OpRequest, Stage};
use crate::runner::steps::{
    clear_failed, deploys, finish, prepare, restore_again, watch, Observed, Step,
};
use crate::runtime::short;

/// The step after `rec` and `obs`; `None` once the operation has finished.
pub fn next(rec: &OpRecord, obs: &Observed) -> Option<Step> {
    let deploy = deploys(rec)?;
    Some(match rec.stage {
        Stage::Start => prepare(deploy, obs),
        Stage::Switching => switching(rec, obs, deploy),
        Stage::Started => started(rec, obs, deploy),
        // (`Canary` is the canary runner's, which hands its records here only once they
        // leave it.)
        Stage::Routed | Stage::Canary => routed(rec, obs, deploy),
        Stage::RollingBack => rolling_back(rec, obs, deploy),
        Stage::Removing | Stage::Done => return None,
    })
}

fn new_container(rec: &OpRecord) -> String {
    rec.view.container.clone().unwrap_or_default()
}

/// Created (deploy) or chosen (rollback), not started: nothing that serves changed.
fn switching(rec: &OpRecord, obs: &Observed, deploy: bool) -> Step {
    if let Some(why) = &obs.halted {
        return abandon(rec, obs, deploy, why);
    }
    match &obs.started {
        Some(Err(e)) => abandon(rec, obs, deploy, e),
        // (A successful start persists `Started` with it.)
        _ => Step::StartNew,
    }
}

/// Before the switch the old container kept serving: take the new one away (deploy) or
/// stop the target again (rollback), and say so.
fn abandon(rec: &OpRecord, obs: &Observed, deploy: bool, why: &str) -> Step {
    let new = new_container(rec);
    let cleared = if deploy {
        obs.new_removed
    } else {
        obs.failed_cleared
    };
    if !cleared && !new.is_empty() {
        // A version that ran and failed leaves its last log lines in the record (one that
        // was aborted before it started has none to leave).
        let ran = rec.stage == Stage::Started || obs.started.is_some();
        if deploy && ran && rec.view.log_tail.is_none() && !obs.log_captured {
            return Step::CaptureLog { container: new };
        }
        return if deploy {
            Step::RemoveNew
        } else {
            Step::ClearFailed {
                container: new,
                remove: false,
            }
        };
    }
    let error = Some(format!("{why} (no traffic was switched)"));
    match (deploy, rec.previous_was_running) {
        (true, true) => finish(
            OperationState::RolledBack,
            "the new version never got traffic: the previous container kept serving",
            error,
        ),
        (true, false) => finish(
            OperationState::Failed,
            "failed; the new version never got traffic",
            error,
        ),
        (false, _) => finish(
            OperationState::Failed,
            "rollback failed; traffic stays on the current container",
            error,
        ),
    }
}

/// Started: find it, check it directly, then switch traffic to it.
fn started(rec: &OpRecord, obs: &Observed, deploy: bool) -> Step {
    if let Some(why) = &obs.halted {
        return abandon(rec, obs, deploy, why);
    }
    let to = match &obs.new_addr {
        None => return Step::LocateNew,
        Some(Err(state)) => {
            return abandon(rec, obs, deploy, &format!("the new container is {state}"))
        }
        Some(Ok(addr)) => *addr,
    };
    match &obs.health {
        None => return Step::CheckNew,
        Some(Err(e)) => return abandon(rec, obs, deploy, e),
        Some(Ok(_)) => {}
    }
    match &obs.routed {
        Some(Err(e)) => abandon(rec, obs, deploy, e),
        // (A successful switch persists `Routed` with it.)
        _ => Step::Route {
            container: new_container(rec),
            to,
        },
    }
}

/// Traffic goes to the new container: drain the old, watch the new, retire the old.
fn routed(rec: &OpRecord, obs: &Observed, deploy: bool) -> Step {
    let old = rec.view.previous_container.clone();
    // Resumed after an agent restart: redo the health check (the new container may have
    // died meanwhile) before trusting it; the proxy kept serving whichever was live.
    let Some(health) = &obs.health else {
        return match &obs.new_addr {
            None => Step::LocateNew,
            Some(Err(state)) => Step::Restore {
                why: format!("the new container is {state} (found after an agent restart)"),
            },
            Some(Ok(_)) => Step::CheckNew,
        };
    };
    if let Err(e) = health {
        return Step::Restore { why: e.clone() };
    }
    if let (Some(old), false, true) = (&old, obs.drained, rec.previous_was_running) {
        return Step::Drain {
            container: old.clone(),
        };
    }
    if let Some(step) = watch(rec, obs, deploy) {
        return step;
    }
    let discard = matches!(&rec.request, OpRequest::Rollback(r) if r.discard_replaced);
    if let (Some(old), None) = (&old, &obs.old_cleared) {
        return Step::ClearOld {
            container: old.clone(),
            remove: discard,
        };
    }
    if deploy && !obs.pruned {
        return Step::Prune;
    }
    let phase = match (&rec.view.image, deploy, &old) {
        (Some(i), true, _) => format!("{i} serves through sluice-proxy, healthy"),
        (_, false, Some(replaced)) if discard => format!(
            "previous container serves again; the failed one ({}) was removed",
            short(replaced)
        ),
        _ => "previous container serves again through sluice-proxy, healthy".to_string(),
    };
    finish(OperationState::Succeeded, phase, None)
}

/// The new version failed after traffic reached it (or during a rollback's switch):
/// switch back to the previous container — started and checked again if it is not
/// running — then drain and remove the failed one.
fn rolling_back(rec: &OpRecord, obs: &Observed, deploy: bool) -> Step {
    if !obs.restoring {
        return restore_again(rec);
    }
    let failed = new_container(rec);
    let failed_too = |e: &str| {
        let first = rec.view.error.clone().unwrap_or_default();
        finish(
            OperationState::Failed,
            "FAILED: the new version failed and traffic could not be switched back",
            Some(format!("{first}; switching back failed too: {e}")),
        )
    };
    if obs.routed_back.is_none() {
        let Some(previous) = rec.view.previous_container.clone() else {
            // A first version: nothing to go back to; the route goes.
            return Step::Unroute;
        };
        let container = previous;
        // A previous container that still runs (the usual case: it was never stopped)
        // takes traffic back at once; one that stopped is started and checked first
        // (starting it forgets its old address: Docker picks a new port).
        return match (
            &obs.previous_addr,
            &obs.previous_started,
            &obs.previous_health,
        ) {
            (_, Some(Err(e)), _) | (_, _, Some(Err(e))) => failed_too(e),
            (None, _, _) => Step::LocatePrevious { container },
            (Some(Err(_)), None, _) => Step::StartPrevious { container },
            (Some(Err(state)), Some(Ok(())), _) => failed_too(&format!(
                "the previous container is {state} after its start"
            )),
            (Some(Ok(_)), Some(Ok(())), None) => Step::CheckPrevious { container },
            (Some(Ok(to)), _, _) => Step::RouteBack { container, to: *to },
        };
    }
    if let Some(Err(e)) = &obs.routed_back {
        return failed_too(e);
    }
    if !failed.is_empty() {
        if !obs.new_drained && rec.view.previous_container.is_some() {
            return Step::Drain { container: failed };
        }
        if let Some(step) = clear_failed(rec, obs, failed, deploy) {
            return step;
        }
    }
    if rec.view.previous_container.is_none() {
        return finish(
            OperationState::Failed,
            "failed; there was no previous version to switch back to (the route was removed)",
            None,
        );
    }
    finish(
        OperationState::RolledBack,
        "rolled back: traffic is on the previous container again",
        None,
    )
}
