//! Canary analysis, decided without I/O: one measurement's outcome from a value and its conditions, and an
//! analysis's verdict from the outcomes so far and its limits.
//!
//! The rules are Argo Rollouts' (an `AnalysisRun`'s `count`, `failureLimit`,
//! `inconclusiveLimit`, `consecutiveErrorLimit`) with Flagger's one addition: **no data is a
//! failure**, so a query that matches nothing (a typo in a label, a scrape that stopped)
//! can never promote a canary.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod exposition;
pub mod window;

/// A comparison of a measured value with a threshold (`value < 0.05`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// How the value is compared.
    pub op: Cmp,
    /// With what.
    pub threshold: f64,
}

/// A comparison operator.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl Condition {
    /// Whether `value` meets the condition (NaN meets none).
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Cmp::Lt => value < self.threshold,
            Cmp::Le => value <= self.threshold,
            Cmp::Gt => value > self.threshold,
            Cmp::Ge => value >= self.threshold,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        };
        write!(f, "value {op} {}", self.threshold)
    }
}

/// What one query answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// A number.
    Value(f64),
    /// The query matched nothing (or answered NaN).
    NoData,
    /// The query could not be run (the metrics source is down, answered an error).
    Error(String),
}

/// One measurement's outcome.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The success condition held (and the failure condition did not).
    Successful,
    /// The failure condition held, the success condition did not, or there was no data.
    Failed,
    /// Both conditions are set and neither held: a human decides.
    Inconclusive,
    /// The measurement could not be taken.
    Error,
}

/// The outcome of `sample` under `success` and `failure` (at least one of them set).
///
/// As in Argo Rollouts: a failure condition that holds fails, whatever the success
/// condition says; with only a success condition, not meeting it fails; with only a
/// failure condition, not meeting it succeeds; with both and neither met, inconclusive.
pub fn measure(
    sample: &Sample,
    success: Option<&Condition>,
    failure: Option<&Condition>,
) -> Outcome {
    let value = match sample {
        Sample::Error(_) => return Outcome::Error,
        Sample::NoData => return Outcome::Failed,
        Sample::Value(v) if v.is_nan() => return Outcome::Failed,
        Sample::Value(v) => *v,
    };
    let failed = failure.is_some_and(|c| c.holds(value));
    let succeeded = success.is_some_and(|c| c.holds(value));
    match (success.is_some(), failure.is_some()) {
        _ if failed => Outcome::Failed,
        (true, _) if succeeded => Outcome::Successful,
        (true, false) => Outcome::Failed,
        (false, _) => Outcome::Successful,
        (true, true) => Outcome::Inconclusive,
    }
}

/// How many measurements an analysis takes and how many of each kind it tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Measurements to take (at least 1).
    pub count: u32,
    /// Failed measurements tolerated (default 0: the first fails the analysis).
    #[serde(default)]
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated before the analysis is inconclusive.
    #[serde(default)]
    pub inconclusive_limit: u32,
    /// Consecutive errors tolerated (default 4, as Argo Rollouts).
    #[serde(default = "four")]
    pub consecutive_error_limit: u32,
}

fn four() -> u32 {
    4
}

/// Where an analysis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Take the next measurement.
    Running,
    /// Every measurement taken, within the limits: go on.
    Successful,
    /// More failures than `failure_limit`: abort.
    Failed,
    /// More inconclusive measurements than `inconclusive_limit`: pause and ask.
    Inconclusive,
    /// More consecutive errors than `consecutive_error_limit`: abort.
    Errored,
}

/// The verdict after `outcomes` (oldest first) under `limits`. Decided as soon as a limit
/// is crossed, without waiting for the remaining measurements.
pub fn judge(outcomes: &[Outcome], limits: &Limits) -> Verdict {
    let (mut failed, mut inconclusive, mut errors_in_a_row) = (0u32, 0u32, 0u32);
    for o in outcomes {
        match o {
            Outcome::Error => errors_in_a_row += 1,
            other => {
                errors_in_a_row = 0;
                match other {
                    Outcome::Failed => failed += 1,
                    Outcome::Inconclusive => inconclusive += 1,
                    _ => {}
                }
            }
        }
        if errors_in_a_row > limits.consecutive_error_limit {
            return Verdict::Errored;
        }
        if failed > limits.failure_limit {
            return Verdict::Failed;
        }
        if inconclusive > limits.inconclusive_limit {
            return Verdict::Inconclusive;
        }
    }
    // Errors do not count towards `count`: a measurement that could not be taken is taken
    // again.
    let taken = outcomes.iter().filter(|o| **o != Outcome::Error).count();
    if taken >= limits.count.max(1) as usize {
        Verdict::Successful
    } else {
        Verdict::Running
    }
}

#[cfg(test)]
mod tests;
