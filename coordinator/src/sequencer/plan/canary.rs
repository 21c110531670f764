//! The `canary` rollout, as part of the pure plan: reach each step in the record (one entry
//! per step), set its weight on every target server, judge it (measurements every interval
//! until the analysis decides), hold its pause, and go on; after the last step, switch every
//! server to the new version. A failed analysis fails the step (the rollback then sets
//! every server back at once); an inconclusive one pauses the canary for a human.

use std::time::Duration;

use sluice_common::analysis::{judge, Outcome, Verdict};
use sluice_common::api::{AnalysisSpec, CanaryControl, Measurement};
use sluice_common::deployment::DeploymentEvent;

use super::{event, Action, Observed, DEFAULT_PROGRESS_DEADLINE};
use crate::state::deployments::{Deployment, DeploymentCommand};

/// How long to wait for something to happen when nothing is due (a pause until promoted):
/// any applied entry (a promote, resume, cancel) wakes the driver earlier.
const IDLE: Duration = Duration::from_secs(30);

/// The step's verdict over `judged`: every check judged on its own measurements, the worst
/// one wins (failed and errored first, then inconclusive, then running).
pub fn verdict(a: &AnalysisSpec, judged: &[Measurement]) -> (Verdict, Option<String>) {
    let limits = a.limits();
    let mut worst = (Verdict::Successful, None);
    let rank = |v: Verdict| match v {
        Verdict::Failed | Verdict::Errored => 3,
        Verdict::Inconclusive => 2,
        Verdict::Running => 1,
        Verdict::Successful => 0,
    };
    for check in &a.checks {
        let name = check.name();
        let outcomes: Vec<Outcome> = judged
            .iter()
            .filter(|m| m.check == name)
            .map(|m| m.outcome)
            .collect();
        let v = judge(&outcomes, &limits);
        if rank(v) > rank(worst.0) {
            let last = judged.iter().rev().find(|m| m.check == name);
            let why = last.map(|m| {
                let value = m
                    .value
                    .map_or("no value".to_string(), |v| format!("{v:.4}"));
                format!("{name}: {value} ({}; {})", m.condition, m.detail)
            });
            worst = (v, why);
        }
    }
    worst
}

/// The next step of a canary in progress (cancel and failed batches are handled before).
pub(super) fn plan(d: &Deployment, seen: &Observed) -> Action {
    let Some(c) = &d.canary else {
        return Action::Propose(DeploymentCommand::CanaryStep { id: d.id, step: 0 });
    };
    let steps = d.canary_steps();
    let k = c.step;
    if seen.shifted != Some(k) {
        return Action::Shift {
            step: k,
            weight: d.canary_weight(k),
            last: k >= steps,
            deadline: d
                .request
                .progress_deadline
                .map_or(DEFAULT_PROGRESS_DEADLINE, |p| p.get()),
        };
    }
    if k >= steps {
        return event(
            d,
            DeploymentEvent::AllHealthy,
            "canary promoted: every server runs the new version healthy",
            None,
        );
    }
    if c.promoted {
        return Action::Propose(DeploymentCommand::CanaryStep {
            id: d.id,
            step: steps,
        });
    }
    if c.paused.is_some() {
        return Action::Wait(IDLE);
    }
    let spec = d.canary_spec();
    if let Some(a) = &spec.analysis {
        match verdict(a, c.judged()) {
            (Verdict::Failed | Verdict::Errored, why) => {
                let why = format!(
                    "canary analysis failed at step {}: {}",
                    k + 1,
                    why.unwrap_or_default()
                );
                return event(d, DeploymentEvent::StepFailed, &why.clone(), Some(why));
            }
            (Verdict::Inconclusive, why) => {
                return Action::Propose(DeploymentCommand::CanaryControl {
                    id: d.id,
                    control: CanaryControl::Pause,
                    reason: format!(
                        "analysis inconclusive at step {}: {}; resume or promote to go on, abort to roll back",
                        k + 1,
                        why.unwrap_or_default()
                    ),
                })
            }
            (Verdict::Running, _) => {
                // Each measurement looks at the interval since the previous reading; the
                // first reading of a step (or of a new leader) is only the baseline.
                let due = match &seen.readings {
                    Some(r) if r.step == k && r.at >= c.step_at => r.at.plus(a.interval()),
                    _ => return Action::Measure { step: k },
                };
                return if seen.now >= due {
                    Action::Measure { step: k }
                } else {
                    Action::Wait(due.since(seen.now))
                };
            }
            (Verdict::Successful, _) => {}
        }
    }
    let step = spec.steps[k as usize];
    let until = c
        .step_at
        .plus(step.pause.map_or(Duration::ZERO, |p| p.get()));
    if seen.now < until {
        return Action::Wait(until.since(seen.now));
    }
    if step.until_promoted {
        return Action::Wait(IDLE);
    }
    Action::Propose(DeploymentCommand::CanaryStep {
        id: d.id,
        step: k + 1,
    })
}

#[cfg(test)]
mod tests;
