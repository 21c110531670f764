//! The `canary` runner's decisions, as a pure function (see [`crate::runner::steps`]).
//!
//! Before the first weight and after the last (100), this is `blue_green`'s plan; only its
//! full switch becomes a weighted one while the weight asked for is below 100 and an old
//! version serves (with none, there is nothing to share traffic with: the new version takes
//! it all, as in `blue_green`). In [`Stage::Canary`] the runner holds the weight, sets a new
//! one when asked, and restores the old version at once when the new one fails its watch
//! or the operation is aborted.

use crate::record::{OpRecord, OpRequest, Stage};
use crate::runner::blue_green;
use crate::runner::steps::{Observed, Step};

/// The step after `rec` and `obs`; `None` once the operation has finished.
pub fn next(rec: &OpRecord, obs: &Observed) -> Option<Step> {
    let want = match (&rec.request, rec.canary_want) {
        (OpRequest::Deploy(_), Some(w)) => w,
        // A rollback (or a deploy that is no canary) is blue_green's.
        _ => return blue_green::plan::next(rec, obs),
    };
    if rec.stage == Stage::Canary {
        return Some(holding(rec, obs, want));
    }
    Some(match blue_green::plan::next(rec, obs)? {
        Step::Route { container, to } if want < 100 && rec.previous_was_running => Step::Weigh {
            container,
            to,
            weight: want,
        },
        step => step,
    })
}

/// Both versions serve: hold, re-weigh, finish, or go back.
fn holding(rec: &OpRecord, obs: &Observed, want: u32) -> Step {
    let container = rec.view.container.clone().unwrap_or_default();
    // Resumed after an agent restart: the proxy kept splitting; find the new container and
    // check it again before trusting it.
    let to = match &obs.new_addr {
        None => return Step::LocateNew,
        Some(Err(state)) => {
            return Step::Restore {
                why: format!("the new container is {state}"),
            }
        }
        Some(Ok(addr)) => *addr,
    };
    match &obs.health {
        None => return Step::CheckNew,
        Some(Err(e)) => return Step::Restore { why: e.clone() },
        Some(Ok(_)) => {}
    }
    if let Some(Err(why)) = &obs.held {
        return Step::Restore { why: why.clone() };
    }
    if let Some(Err(e)) = &obs.weighed {
        return Step::Restore {
            why: format!("setting the canary weight failed: {e}"),
        };
    }
    if want >= 100 {
        // The last step: all traffic to the new version; `Routed` goes on as blue_green.
        return Step::Route { container, to };
    }
    if rec.view.canary_weight != Some(want) {
        return Step::Weigh {
            container,
            to,
            weight: want,
        };
    }
    Step::Hold
}
