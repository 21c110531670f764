//! A canary's progress in the replicated record: the step it has reached (one entry per
//! step), its measurements, and an operator's promote, pause and resume. Applied only to a
//! `canary` deployment that is `in_progress`; anything else is refused and changes nothing.

use serde::{Deserialize, Serialize};
use sluice_common::api::{
    CanaryControl, CanarySpec, CanaryView, Measurement, ServerStepState, Strategy, MAX_MEASUREMENTS,
};
use sluice_common::deployment::Lifecycle;
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::{Deployment, DeploymentError, DeploymentOutcome, Deployments};

/// Where a canary stands (see [`CanaryView`], which adds what the request says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryProgress {
    /// The step reached (0-based); the number of steps means the final switch to 100 %.
    pub step: u32,
    /// When it was reached.
    pub step_at: Timestamp,
    /// Why it holds, when paused.
    pub paused: Option<String>,
    /// Promote was asked for.
    pub promoted: bool,
    /// Measurements, oldest first (at most [`MAX_MEASUREMENTS`]).
    pub measurements: Vec<Measurement>,
    /// Where the current step's analysis begins in `measurements`: a new step and a resume
    /// start it afresh.
    pub analysis_start: usize,
}

impl CanaryProgress {
    /// The measurements the current step's verdict is made of.
    pub fn judged(&self) -> &[Measurement] {
        &self.measurements[self.analysis_start.min(self.measurements.len())..]
    }
}

impl Deployment {
    /// The canary's steps and analysis (the default when the request gave none).
    pub fn canary_spec(&self) -> std::borrow::Cow<'_, CanarySpec> {
        match &self.request.canary {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(CanarySpec::default()),
        }
    }

    /// The number of steps, the final switch not counted.
    pub fn canary_steps(&self) -> u32 {
        self.canary_spec().steps.len() as u32
    }

    /// The new version's weight at `step` (100 from the final switch on).
    pub fn canary_weight(&self, step: u32) -> u32 {
        self.canary_spec()
            .steps
            .get(step as usize)
            .map_or(100, |s| s.weight.min(100))
    }

    /// What each target server runs at `step`: `Some(weight)` for the new version, or
    /// `None` to be left as it is (a server outside the step's share that holds no canary
    /// yet). From the final switch on, every server takes all traffic.
    pub fn canary_weights(&self, step: u32) -> Vec<(ServerName, Option<u32>)> {
        let weight = self.canary_weight(step);
        let share = self
            .canary_spec()
            .steps
            .get(step as usize)
            .and_then(|s| s.servers)
            .unwrap_or(100)
            .clamp(1, 100) as usize;
        let n = self.targets.len();
        let included = (n * share).div_ceil(100).max(1);
        self.targets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let holds = self
                    .servers
                    .get(s)
                    .is_some_and(|st| st.state != ServerStepState::Pending);
                let w = match (i < included, holds) {
                    (true, _) => Some(weight),
                    (false, true) => Some(0),
                    (false, false) => None,
                };
                (s.clone(), w)
            })
            .collect()
    }

    /// The API view of the canary, once it has reached a step.
    pub fn canary_view(&self) -> Option<CanaryView> {
        let c = self.canary.as_ref()?;
        Some(CanaryView {
            step: c.step,
            steps: self.canary_steps(),
            weight: self.canary_weight(c.step),
            step_at: c.step_at,
            paused: c.paused.clone(),
            promoted: c.promoted,
            measurements: c.measurements.clone(),
        })
    }
}

fn conflict(message: String) -> DeploymentError {
    DeploymentError::Conflict { message }
}

/// The deployment, if it is a canary in progress.
fn running_canary(all: &mut Deployments, id: Uuid) -> Result<&mut Deployment, DeploymentError> {
    let d = all.get_mut(id)?;
    if d.request.strategy != Strategy::Canary {
        return Err(conflict(format!(
            "deployment {id} is not a canary (strategy {:?})",
            d.request.strategy
        )));
    }
    if !matches!(d.lifecycle, Lifecycle::InProgress { .. }) {
        return Err(conflict(format!(
            "deployment {id} is {}, not a canary in progress",
            d.state()
        )));
    }
    Ok(d)
}

fn done(id: Uuid) -> Result<DeploymentOutcome, DeploymentError> {
    Ok(DeploymentOutcome { id, created: false })
}

impl Deployments {
    /// The canary reached `step` (forward only: a deposed leader's late step is refused).
    pub(super) fn canary_step(
        &mut self,
        id: Uuid,
        step: u32,
        now: Timestamp,
    ) -> Result<DeploymentOutcome, DeploymentError> {
        let d = running_canary(self, id)?;
        let steps = d.canary_steps();
        if step > steps {
            return Err(conflict(format!(
                "a canary of {steps} step(s) has no step {step}"
            )));
        }
        match &mut d.canary {
            Some(c) if step <= c.step => {
                return Err(conflict(format!(
                    "the canary is at step {} already",
                    c.step + 1
                )))
            }
            Some(c) => {
                c.step = step;
                c.step_at = now;
                c.paused = None;
                c.analysis_start = c.measurements.len();
            }
            None => {
                d.canary = Some(CanaryProgress {
                    step,
                    step_at: now,
                    paused: None,
                    promoted: false,
                    measurements: Vec::new(),
                    analysis_start: 0,
                })
            }
        }
        let weight = d.canary_weight(step);
        d.phase = super::apply::phase(&if step >= steps {
            "canary: switching all traffic to the new version".to_string()
        } else {
            format!("canary step {}/{steps}: {weight}% of requests", step + 1)
        });
        d.updated_at = now;
        done(id)
    }

    /// Measurements taken at `step` (refused once the canary has moved on).
    pub(super) fn canary_measured(
        &mut self,
        id: Uuid,
        step: u32,
        measurements: &[Measurement],
        now: Timestamp,
    ) -> Result<DeploymentOutcome, DeploymentError> {
        let d = running_canary(self, id)?;
        let Some(c) = d.canary.as_mut().filter(|c| c.step == step) else {
            return Err(conflict(format!(
                "the canary is not at step {} (any more)",
                step + 1
            )));
        };
        c.measurements.extend(measurements.iter().cloned());
        let over = c.measurements.len().saturating_sub(MAX_MEASUREMENTS);
        c.measurements.drain(..over);
        c.analysis_start = c.analysis_start.saturating_sub(over);
        d.updated_at = now;
        done(id)
    }

    /// An operator's (or the analysis's) promote, pause or resume.
    pub(super) fn canary_control(
        &mut self,
        id: Uuid,
        control: CanaryControl,
        reason: &str,
        now: Timestamp,
    ) -> Result<DeploymentOutcome, DeploymentError> {
        let d = running_canary(self, id)?;
        let Some(c) = d.canary.as_mut() else {
            return Err(conflict(format!(
                "the canary of deployment {id} has not reached its first step yet"
            )));
        };
        match control {
            CanaryControl::Promote => {
                c.promoted = true;
                c.paused = None;
            }
            CanaryControl::Pause => {
                if c.paused.is_none() {
                    c.paused = Some(reason.to_string());
                }
            }
            // The step starts afresh: its pause and analysis again from now (an
            // inconclusive verdict would otherwise pause it again at once).
            CanaryControl::Resume if c.paused.is_some() => {
                c.paused = None;
                c.step_at = now;
                c.analysis_start = c.measurements.len();
            }
            CanaryControl::Resume => {}
        }
        d.updated_at = now;
        done(id)
    }
}

#[cfg(test)]
mod tests;
