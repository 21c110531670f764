//! Strategy `canary`: the steps a deployment moves traffic in, the analysis that judges each
//! step, and what the deployment records of both.
//!
//! A canary runs the new version beside the old one on every target server, behind the
//! host's `sluice-proxy`, and gives it each step's `weight` (percent of new requests) on
//! every server at once. After the last step the new version takes all traffic and the old
//! one drains and is kept for a rollback, as with `blue_green`. The analysis runs at every
//! step: a failed one (or a failed health check, the progress deadline, `sluice abort`)
//! sets every server's weight back to 0 at once and the deployment ends `rolled_back`.

use serde::{Deserialize, Serialize};

use crate::analysis::{Condition, Outcome};
use crate::time::{DurationSpec, Timestamp};

/// How a canary moves traffic.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// The steps, in order (1 to 20). After the last one the new version takes all traffic
    /// and the old one drains and is kept. Default: 10 % for 1 minute, then 50 % for 1
    /// minute.
    #[serde(default = "default_steps")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20))]
    pub steps: Vec<CanaryStep>,
    /// Judges every step; none: steps advance on their pauses alone.
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
}

impl Default for CanarySpec {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            analysis: None,
        }
    }
}

fn default_steps() -> Vec<CanaryStep> {
    [10, 50]
        .into_iter()
        .map(|weight| CanaryStep {
            weight,
            servers: None,
            pause: Some(DurationSpec::secs(60)),
            until_promoted: false,
        })
        .collect()
}

/// One step of a canary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    /// Percent of new requests (and TCP connections) that go to the new version on every
    /// target server, 0 to 100.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub weight: u32,
    /// The share of the target servers (percent, rounded up to whole servers; default 100)
    /// that run the new version at this weight; the others are not deployed to yet, or
    /// send it nothing (weight 0) if an earlier step reached them.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, default = 100))]
    pub servers: Option<u32>,
    /// How long to hold this step once its weight is set everywhere (default 0 s: as soon
    /// as its analysis has passed). The analysis runs meanwhile; the step ends when both are
    /// over.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "0s"))]
    pub pause: Option<DurationSpec>,
    /// Hold this step until `sluice promote` (or `resume`), after its pause and analysis.
    #[serde(default)]
    pub until_promoted: bool,
}

/// How every step is judged: `count` measurements, one each `interval`, of every check.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// Between measurements; each built-in check looks at the requests of the last interval
    /// (default 10 s).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "10s"))]
    pub interval: Option<DurationSpec>,
    /// Measurements per check and step (default 3).
    #[serde(default = "three")]
    #[cfg_attr(feature = "openapi", schema(default = 3, minimum = 1, maximum = 100))]
    pub count: u32,
    /// Failed measurements of a check tolerated in a step (default 0: the first fails it).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated before the canary pauses for a human (default 0).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub inconclusive_limit: u32,
    /// Measurements in a row that could not be taken (Prometheus down, an agent
    /// unreachable) tolerated before the step fails (default 4).
    #[serde(default = "four")]
    #[cfg_attr(feature = "openapi", schema(default = 4, maximum = 100))]
    pub consecutive_error_limit: u32,
    /// What is measured (1 to 10 checks).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10))]
    pub checks: Vec<AnalysisCheck>,
}

fn three() -> u32 {
    3
}
fn four() -> u32 {
    4
}

impl AnalysisSpec {
    /// The interval between measurements.
    pub fn interval(&self) -> std::time::Duration {
        self.interval
            .map_or(std::time::Duration::from_secs(10), |d| d.get())
            .max(std::time::Duration::from_millis(100))
    }

    /// The limits of [`crate::analysis::judge`].
    pub fn limits(&self) -> crate::analysis::Limits {
        crate::analysis::Limits {
            count: self.count.max(1),
            failure_limit: self.failure_limit,
            inconclusive_limit: self.inconclusive_limit,
            consecutive_error_limit: self.consecutive_error_limit,
        }
    }
}

/// One check of an analysis. The built-in ones read the proxies' own counters of the
/// service on every target server over the last interval; no request in it is no data,
/// which fails the measurement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AnalysisCheck {
    /// The new version's share of failed requests (5xx answers and proxy failures): fails
    /// above `max` (0.05: 5 %).
    ErrorRatio {
        /// The highest share that passes, 0 to 1.
        #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1.0))]
        max: f64,
    },
    /// The new version's error ratio minus the old version's over the same interval: fails
    /// above `max` (0.01: one point worse).
    ErrorRatioIncrease {
        /// The highest increase that passes, 0 to 1.
        #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 1.0))]
        max: f64,
    },
    /// The new version's 99th percentile latency through the proxy, in milliseconds: fails
    /// above `max_ms`.
    LatencyP99 {
        /// The highest p99 that passes.
        #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 3600000.0))]
        max_ms: f64,
    },
    /// The new version's p99 minus the old version's, in milliseconds: fails above `max_ms`.
    LatencyP99Increase {
        /// The highest increase that passes.
        #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 3600000.0))]
        max_ms: f64,
    },
    /// A PromQL query against the coordinator's configured Prometheus (`[analysis]
    /// prometheus_url`), evaluated at the measurement's time; its first sample is the value.
    /// An empty answer is no data (a failure); an error counts towards
    /// `consecutive_error_limit`.
    Prometheus {
        /// A name for the measurements (default `prometheus`).
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(max_length = 64))]
        name: Option<String>,
        /// The query.
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
        query: String,
        /// The value passes when this holds.
        success: Condition,
        /// The value fails when this holds, whatever `success` says; with both set and
        /// neither holding, the measurement is inconclusive.
        #[serde(default)]
        failure: Option<Condition>,
    },
}

impl AnalysisCheck {
    /// The name its measurements are recorded under.
    pub fn name(&self) -> &str {
        match self {
            Self::ErrorRatio { .. } => "error_ratio",
            Self::ErrorRatioIncrease { .. } => "error_ratio_increase",
            Self::LatencyP99 { .. } => "latency_p99",
            Self::LatencyP99Increase { .. } => "latency_p99_increase",
            Self::Prometheus { name, .. } => name.as_deref().unwrap_or("prometheus"),
        }
    }

    /// The success and failure conditions of its measurements.
    pub fn conditions(&self) -> (Option<Condition>, Option<Condition>) {
        use crate::analysis::Cmp;
        let at_most = |max: f64| {
            (
                Some(Condition {
                    op: Cmp::Le,
                    threshold: max,
                }),
                None,
            )
        };
        match self {
            Self::ErrorRatio { max } | Self::ErrorRatioIncrease { max } => at_most(*max),
            Self::LatencyP99 { max_ms } | Self::LatencyP99Increase { max_ms } => at_most(*max_ms),
            Self::Prometheus {
                success, failure, ..
            } => (Some(*success), *failure),
        }
    }

    /// Whether it needs the coordinator's Prometheus.
    pub fn needs_prometheus(&self) -> bool {
        matches!(self, Self::Prometheus { .. })
    }
}

/// What a check found once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The step (0-based) it judged.
    pub step: u32,
    /// The check's name.
    pub check: String,
    /// When it was taken.
    pub at: Timestamp,
    /// The value, when there was one (no data and errors have none).
    pub value: Option<f64>,
    /// The condition(s) it was judged by (`value <= 0.05`).
    pub condition: String,
    /// The verdict.
    pub outcome: Outcome,
    /// What it saw: the requests counted, or the error.
    pub detail: String,
}

/// How many measurements a deployment keeps (the oldest go first); a step's verdict needs
/// at most `checks × (count + limits)` of its own, far fewer.
pub const MAX_MEASUREMENTS: usize = 500;

/// Where a canary stands, as the deployment records it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryView {
    /// The step reached (0-based); `steps` (one past the last) is the final switch to 100 %.
    pub step: u32,
    /// The steps in all, the final switch not counted.
    pub steps: u32,
    /// The new version's weight at this step.
    pub weight: u32,
    /// When the step was reached.
    pub step_at: Timestamp,
    /// Why it holds, when paused (`sluice pause`, or an inconclusive analysis); `sluice
    /// resume` goes on.
    pub paused: Option<String>,
    /// `sluice promote` was asked: the remaining pauses and analyses are skipped.
    pub promoted: bool,
    /// Every measurement so far, oldest first.
    pub measurements: Vec<Measurement>,
}

/// What `POST /v1/deployments/{id}/promote|pause|resume` asks of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryControl {
    /// Skip the remaining pauses and analyses: go to 100 %.
    Promote,
    /// Hold the current step (its analysis stops) until resumed or promoted.
    Pause,
    /// Go on after a pause.
    Resume,
}

/// What `sluice promote|pause|resume|abort` asks (`abort` is the deployment's `cancel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryAction {
    /// `promote`.
    Promote,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `abort`: `cancel` (any active deployment).
    Abort,
}

impl CanaryAction {
    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort => "abort",
        }
    }

    /// The path segment under `/v1/deployments/{id}/`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Abort => "cancel",
            other => other.as_str(),
        }
    }
}

/// Refusals of a canary spec that its schema cannot state, as `(field, why)`.
pub fn spec_problems(spec: &CanarySpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if spec.steps.is_empty() || spec.steps.len() > 20 {
        out.push(("canary.steps".into(), "give 1 to 20 steps".into()));
    }
    for (i, s) in spec.steps.iter().enumerate() {
        if s.weight > 100 {
            out.push((
                format!("canary.steps.{i}.weight"),
                "must be 0 to 100".into(),
            ));
        }
        if s.servers.is_some_and(|p| p == 0 || p > 100) {
            out.push((
                format!("canary.steps.{i}.servers"),
                "must be 1 to 100".into(),
            ));
        }
    }
    if let Some(a) = &spec.analysis {
        if a.checks.is_empty() || a.checks.len() > 10 {
            out.push((
                "canary.analysis.checks".into(),
                "give 1 to 10 checks".into(),
            ));
        }
        if a.count == 0 || a.count > 100 {
            out.push(("canary.analysis.count".into(), "must be 1 to 100".into()));
        }
        for (f, v) in [
            ("failure_limit", a.failure_limit),
            ("inconclusive_limit", a.inconclusive_limit),
            ("consecutive_error_limit", a.consecutive_error_limit),
        ] {
            if v > 100 {
                out.push((format!("canary.analysis.{f}"), "must be 0 to 100".into()));
            }
        }
        if a.interval
            .is_some_and(|i| i.get() < std::time::Duration::from_millis(100))
        {
            out.push((
                "canary.analysis.interval".into(),
                "must be at least 100ms".into(),
            ));
        }
        for (i, c) in a.checks.iter().enumerate() {
            let at = format!("canary.analysis.checks.{i}");
            match c {
                AnalysisCheck::ErrorRatio { max } | AnalysisCheck::ErrorRatioIncrease { max } => {
                    if !(0.0..=1.0).contains(max) {
                        out.push((format!("{at}.max"), "must be 0 to 1".into()));
                    }
                }
                AnalysisCheck::LatencyP99 { max_ms }
                | AnalysisCheck::LatencyP99Increase { max_ms } => {
                    if !(0.0..=3_600_000.0).contains(max_ms) {
                        out.push((format!("{at}.max_ms"), "must be 0 to 3600000".into()));
                    }
                }
                AnalysisCheck::Prometheus {
                    name,
                    query,
                    success,
                    failure,
                } => {
                    if query.is_empty() || query.len() > 4096 {
                        out.push((format!("{at}.query"), "must be 1 to 4096 bytes".into()));
                    }
                    if name
                        .as_ref()
                        .is_some_and(|n| n.len() > 64 || n.chars().any(char::is_control))
                    {
                        out.push((
                            format!("{at}.name"),
                            "at most 64 bytes, no control characters".into(),
                        ));
                    }
                    for (f, c) in [("success", Some(success)), ("failure", failure.as_ref())] {
                        if c.is_some_and(|c| !c.threshold.is_finite()) {
                            out.push((format!("{at}.{f}.threshold"), "must be finite".into()));
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_valid_and_a_bare_object_gets_it() {
        let spec: CanarySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, CanarySpec::default());
        assert!(spec_problems(&spec).is_empty());
        assert_eq!(spec.steps.len(), 2);
    }

    #[test]
    fn checks_parse_with_their_conditions() {
        let a: AnalysisSpec = serde_json::from_value(serde_json::json!({
            "interval": "2s",
            "checks": [
                {"kind": "error_ratio", "max": 0.05},
                {"kind": "prometheus", "query": "up", "success": {"op": ">=", "threshold": 1.0}},
            ],
        }))
        .unwrap();
        assert_eq!(a.count, 3);
        assert_eq!(a.consecutive_error_limit, 4);
        assert_eq!(a.interval(), std::time::Duration::from_secs(2));
        assert_eq!(a.checks[0].name(), "error_ratio");
        assert_eq!(a.checks[1].name(), "prometheus");
        assert!(a.checks[1].needs_prometheus());
        let (ok, fail) = a.checks[0].conditions();
        assert!(ok.unwrap().holds(0.05) && !ok.unwrap().holds(0.06) && fail.is_none());
    }

    #[test]
    fn what_the_schema_cannot_say_is_refused_by_field() {
        let mut spec = CanarySpec::default();
        spec.steps.clear();
        let p = spec_problems(&spec);
        assert_eq!(p[0].0, "canary.steps");
        spec.steps = vec![CanaryStep {
            weight: 101,
            servers: None,
            pause: None,
            until_promoted: false,
        }];
        spec.analysis = Some(AnalysisSpec {
            interval: Some(DurationSpec(std::time::Duration::from_millis(10))),
            count: 0,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            checks: vec![AnalysisCheck::ErrorRatio { max: 2.0 }],
        });
        let fields: Vec<String> = spec_problems(&spec).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "canary.steps.0.weight",
                "canary.analysis.count",
                "canary.analysis.interval",
                "canary.analysis.checks.0.max"
            ]
        );
    }
}
