//! Operation runners: one per deployment strategy, plus the removal of a service.
//!
//! Each runner is a pure plan (`next(&record, &observed) -> step`) and a thin executor
//! that performs its steps through the [`Runtime`], persisting the record before every
//! step that changes what serves. [`run`] picks the runner the request names; a new
//! strategy is a new runner module and one arm of the `match` there, nothing else.
//!
//! # Layout
//! - [`steps`]: the observations and steps the plans share;
//! - [`recreate`], [`blue_green`], [`canary`]: one plan per strategy (deploy and the switch back to the
//!   kept container);
//! - `perform`: performs every step; `routes`: the steps that talk to `sluice-proxy`;
//! - [`exec`]: what every step shares (recorded steps, shutdown, Docker patience,
//!   health-check and watch steps);
//! - [`remove`]: removing every container of a service.

pub mod blue_green;
pub mod canary;
pub mod exec;
mod perform;
pub mod recreate;
pub mod remove;
mod routes;
pub mod steps;
#[cfg(test)]
pub(crate) mod testkit;

use std::sync::Arc;

use sluice_common::api::Strategy;

use self::exec::{Env, Exec, Halt};
use self::steps::{Observed, Step};
use crate::ops::OpCell;
use crate::record::{OpRecord, OpRequest};
use crate::runtime::Runtime;
use crate::Agent;

/// A strategy's plan: the next step after the record and what this run observed.
type Plan = fn(&OpRecord, &Observed) -> Option<Step>;

/// The plan of `strategy` (a deploy's, or the rollback of a service it deployed).
fn plan_of(strategy: Strategy) -> Plan {
    match strategy {
        Strategy::Recreate => recreate::plan::next,
        Strategy::BlueGreen => blue_green::plan::next,
        Strategy::Canary => canary::plan::next,
    }
}

/// Runs the operation in `x` to its end (or to shutdown) with the runner its request
/// names: the strategy's plan, each step performed and observed, until the plan is done.
pub async fn run<R: Runtime>(x: &Exec<'_, R>) -> Result<(), Halt> {
    let next = match &x.cell.record().request {
        OpRequest::Deploy(d) => plan_of(d.strategy),
        OpRequest::Rollback(r) => plan_of(r.strategy),
        OpRequest::Remove(_) => return remove::run(x).await,
    };
    let mut obs = Observed::default();
    while let Some(step) = next(&x.record(), &obs) {
        perform::perform(x, step, &mut obs).await?;
    }
    Ok(())
}

/// Starts the runner of a newly admitted operation.
pub fn spawn(agent: Arc<Agent>, cell: Arc<OpCell>) {
    let a = agent.clone();
    agent.tasks.spawn(drive(a, cell));
}

/// Resumes an operation a previous agent process left running.
pub fn resume(agent: Arc<Agent>, cell: Arc<OpCell>) {
    mark_resumed(&cell);
    spawn(agent, cell);
}

/// Records, before a resumed runner starts, that the agent restarted under it.
pub(crate) fn mark_resumed(cell: &OpCell) {
    let stage = cell.record().stage;
    tracing::warn!(op = %cell.view().id, ?stage, "resuming an operation interrupted by an agent restart");
    let r = cell.update(|r| {
        r.view.resumed += 1;
        r.end(false, "interrupted by an agent restart");
        r.begin("agent restarted; reconciling with Docker");
        r.end(true, format!("resuming at stage {stage:?}"));
    });
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot persist the resume marker");
    }
}

async fn drive(agent: Arc<Agent>, cell: Arc<OpCell>) {
    let id = cell.view().id;
    let env = Env::of(&agent);
    let x = Exec {
        rt: &agent.engine,
        env: &env,
        cell: &cell,
    };
    match run(&x).await {
        Ok(()) => {
            let v = cell.view();
            tracing::info!(op = %id, service = %v.service, state = ?v.state, phase = %v.phase, "operation finished");
            agent.ops.retire(id);
        }
        Err(Halt::Interrupted) => {
            tracing::info!(op = %id, "operation interrupted by shutdown; it resumes on the next start");
        }
        Err(Halt::Store(e)) => {
            tracing::error!(op = %id, error = %e, "operation stopped: its record cannot be persisted");
        }
    }
}
