//! What the runners' plans share: the observations a run collects ([`Observed`]), every
//! step a plan can name ([`Step`]; [`super::perform`] performs each), and the decisions
//! both deploy strategies make alike (preparing, the watch, clearing a failed version).
//! Pure: no I/O, no clock.

use std::net::SocketAddr;

use sluice_common::agent_api::OperationState;

use crate::record::{Finish, OpRecord, OpRequest};

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
    /// The watch period after the first good check (`min_healthy`): it held, or why not.
    pub watched: Option<Result<(), String>>,
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
    /// `blue_green`: the new (rollback: target) container's loopback address, once it runs,
    /// or what it is instead.
    pub new_addr: Option<Result<SocketAddr, String>>,
    /// `blue_green`: the proxy routes to the new container, or why not.
    pub routed: Option<Result<(), String>>,
    /// `blue_green`: the replaced container's target finished draining (or its drain
    /// timed out: the proxy closed what was left).
    pub drained: bool,
    /// `blue_green`: the replaced container was stopped (kept) or removed, or why not.
    pub old_cleared: Option<Result<(), String>>,
    /// `blue_green`, restoring: the previous container's loopback address once it runs.
    pub previous_addr: Option<Result<SocketAddr, String>>,
    /// `blue_green`, restoring: the proxy routes to the previous container again, or why not.
    pub routed_back: Option<Result<(), String>>,
    /// `blue_green`, restoring: the failed container's target finished draining.
    pub new_drained: bool,
    /// `canary`: the proxy splits by the weight asked for, or why not.
    pub weighed: Option<Result<(), String>>,
    /// `canary`: holding the weight ended: the coordinator asked for another (`Ok`), or the
    /// new version failed its watch or the operation was aborted (`Err`: why).
    pub held: Option<Result<(), String>>,
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
    /// Keep checking the new container for the request's `min_healthy` ("watch").
    Watch,
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
    /// `blue_green`: inspect the new (rollback: target) container for its address.
    LocateNew,
    /// `blue_green`: point the service's proxy route at the new container ("switch
    /// traffic"); persist [`crate::record::Stage::Routed`].
    Route {
        /// The new container.
        container: String,
        /// Its loopback address.
        to: SocketAddr,
    },
    /// `blue_green`: wait until the proxy has drained `container`'s target ("drain").
    Drain {
        /// The container whose target drains.
        container: String,
    },
    /// `blue_green`: stop (keep) or remove the replaced container once drained.
    ClearOld {
        /// The replaced container.
        container: String,
        /// Remove rather than stop (a rollback that discards a failed version).
        remove: bool,
    },
    /// `blue_green`, restoring: inspect the previous container (running? where?).
    LocatePrevious {
        /// The previous container.
        container: String,
    },
    /// `blue_green`, restoring: point the route back at the previous container ("switch
    /// traffic back").
    RouteBack {
        /// The previous container.
        container: String,
        /// Its loopback address.
        to: SocketAddr,
    },
    /// `blue_green`, restoring: the service never had a previous version; take its route
    /// away ("remove route").
    Unroute,
    /// `canary`: split the route between the new container (`weight` percent of new
    /// requests) and the old one ("set canary weight"); persist [`Stage::Canary`] and the
    /// weight applied.
    ///
    /// [`Stage::Canary`]: crate::record::Stage::Canary
    Weigh {
        /// The new container.
        container: String,
        /// Its loopback address.
        to: SocketAddr,
        /// Its share, percent (below 100).
        weight: u32,
    },
    /// `canary`: keep watching the new container while it holds its weight, until the
    /// coordinator asks for another weight, aborts, or the watch fails.
    Hold,
    /// Finish the operation.
    Finish(Finish),
}

pub(crate) fn finish(
    state: OperationState,
    phase: impl Into<String>,
    error: Option<String>,
) -> Step {
    Step::Finish(Finish {
        state,
        phase: phase.into(),
        error,
    })
}

/// Whether `rec` deploys (`Some(true)`) or rolls back (`Some(false)`): the two operations a
/// strategy's plan decides; a removal (`None`) has a runner of its own.
pub(crate) fn deploys(rec: &OpRecord) -> Option<bool> {
    match &rec.request {
        OpRequest::Deploy(_) => Some(true),
        OpRequest::Rollback(_) => Some(false),
        OpRequest::Remove(_) => None,
    }
}

/// A deploy watches its healthy new version for `min_healthy` (none when zero): the step
/// the watch still needs, or `None` once it passed (or there is none).
pub(crate) fn watch(rec: &OpRecord, obs: &Observed, deploy: bool) -> Option<Step> {
    if !deploy || rec.min_healthy().is_zero() {
        return None;
    }
    match &obs.watched {
        None => Some(Step::Watch),
        Some(Err(e)) => Some(Step::Restore { why: e.clone() }),
        Some(Ok(())) => None,
    }
}

/// Restoring: the failed version leaves its log tail in the record, then is removed
/// (deploy) or stopped (rollback). The step still needed, or `None` once done.
pub(crate) fn clear_failed(
    rec: &OpRecord,
    obs: &Observed,
    failed: String,
    deploy: bool,
) -> Option<Step> {
    if rec.view.log_tail.is_none() && !obs.log_captured {
        return Some(Step::CaptureLog { container: failed });
    }
    (!obs.failed_cleared).then_some(Step::ClearFailed {
        container: failed,
        remove: deploy,
    })
}

/// Nothing serves differently yet: a failure here changed nothing.
pub(crate) fn prepare(deploy: bool, obs: &Observed) -> Step {
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

/// A restore that has not begun in this run (an agent restarted in the middle of one)
/// begins again, with the error recorded when it first began: every step of it is
/// idempotent.
pub(crate) fn restore_again(rec: &OpRecord) -> Step {
    Step::Restore {
        why: rec
            .view
            .error
            .clone()
            .unwrap_or_else(|| "interrupted while rolling back".into()),
    }
}
