use std::time::Duration;

use sluice_common::analysis::Outcome;
use sluice_common::api::{CanaryControl, CreateDeploymentRequest, Measurement};
use sluice_common::deployment::DeploymentEvent;
use sluice_common::locks::LockTable;
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::super::{DeploymentCommand, DeploymentError, Deployments};

struct World {
    d: Deployments,
    locks: LockTable,
    index: u64,
}

impl World {
    fn apply(&mut self, cmd: DeploymentCommand) -> Result<(), DeploymentError> {
        self.index += 1;
        let now = Timestamp(self.index * 1000);
        self.d
            .apply(&mut self.locks, &cmd, self.index, now)
            .map(|_| ())
    }

    /// A deployment of `strategy` taken to `in_progress`.
    fn running(strategy: &str) -> (Self, Uuid) {
        let mut w = Self {
            d: Deployments::default(),
            locks: LockTable::default(),
            index: 0,
        };
        let request: CreateDeploymentRequest = serde_json::from_value(serde_json::json!({
            "service": "web", "image": "web:2", "servers": ["a"], "container_port": 8080,
            "health": {"kind": "tcp"}, "strategy": strategy,
            "canary": if strategy == "canary" {
                serde_json::json!({"steps": [{"weight": 10}, {"weight": 50}]})
            } else {
                serde_json::Value::Null
            },
        }))
        .unwrap();
        let id = Uuid::new_v4();
        w.apply(DeploymentCommand::Create {
            id,
            request: Box::new(request),
            targets: vec![ServerName::parse("a").unwrap()],
            idempotency: None,
            actor: "ci".into(),
        })
        .unwrap();
        w.apply(DeploymentCommand::Start {
            id,
            lock_ttl: Duration::from_secs(60),
        })
        .unwrap();
        w.apply(DeploymentCommand::Event {
            id,
            event: DeploymentEvent::ChecksPassed,
            reason: "ok".into(),
            failure: None,
            noop: false,
        })
        .unwrap();
        (w, id)
    }

    fn step(&mut self, id: Uuid, step: u32) -> Result<(), DeploymentError> {
        self.apply(DeploymentCommand::CanaryStep { id, step })
    }

    fn control(&mut self, id: Uuid, control: CanaryControl) -> Result<(), DeploymentError> {
        self.apply(DeploymentCommand::CanaryControl {
            id,
            control,
            reason: "because".into(),
        })
    }

    fn measured(&mut self, id: Uuid, step: u32, n: usize) -> Result<(), DeploymentError> {
        let m = Measurement {
            step,
            check: "error_ratio".into(),
            at: Timestamp(1),
            value: Some(0.0),
            condition: "value <= 0.05".into(),
            outcome: Outcome::Successful,
            detail: String::new(),
        };
        self.apply(DeploymentCommand::CanaryMeasured {
            id,
            step,
            measurements: vec![m; n],
        })
    }

    fn progress(&self, id: Uuid) -> super::CanaryProgress {
        self.d
            .all
            .get(&id)
            .unwrap()
            .into_owned()
            .canary
            .expect("a canary")
    }
}

#[test]
fn steps_only_go_forward_and_end_at_the_final_switch() {
    let (mut w, id) = World::running("canary");
    w.step(id, 0).unwrap();
    let v = w.d.all.get(&id).unwrap().view().canary.unwrap();
    assert_eq!((v.step, v.steps, v.weight), (0, 2, 10));
    assert_eq!(
        w.d.all.get(&id).unwrap().phase.as_str(),
        "canary step 1/2: 10% of requests"
    );
    // A deposed leader's late proposal of the same or an earlier step changes nothing.
    assert!(matches!(
        w.step(id, 0),
        Err(DeploymentError::Conflict { .. })
    ));
    w.step(id, 1).unwrap();
    assert!(w.step(id, 0).is_err());
    // The final switch is step 2 (100 %); nothing lies past it.
    assert!(w.step(id, 3).is_err());
    w.step(id, 2).unwrap();
    assert_eq!(w.d.all.get(&id).unwrap().view().canary.unwrap().weight, 100);
}

#[test]
fn only_a_canary_in_progress_takes_canary_commands() {
    let (mut w, id) = World::running("blue_green");
    assert!(matches!(
        w.step(id, 0),
        Err(DeploymentError::Conflict { .. })
    ));
    let (mut w, id) = World::running("canary");
    // Not at a step yet: nothing to pause.
    assert!(w.control(id, CanaryControl::Pause).is_err());
    w.step(id, 0).unwrap();
    w.apply(DeploymentCommand::Event {
        id,
        event: DeploymentEvent::StepFailed,
        reason: "analysis failed".into(),
        failure: None,
        noop: false,
    })
    .unwrap();
    assert!(w.control(id, CanaryControl::Promote).is_err());
    assert!(w.step(id, 1).is_err());
    assert!(w.measured(id, 0, 1).is_err());
}

#[test]
fn a_resume_starts_the_steps_analysis_afresh_and_promote_clears_a_pause() {
    let (mut w, id) = World::running("canary");
    w.step(id, 0).unwrap();
    w.measured(id, 0, 2).unwrap();
    assert_eq!(w.progress(id).judged().len(), 2);
    // Measurements of a step the canary has left are refused.
    w.step(id, 1).unwrap();
    assert!(w.measured(id, 0, 1).is_err());
    assert!(w.progress(id).judged().is_empty());
    w.measured(id, 1, 1).unwrap();
    w.control(id, CanaryControl::Pause).unwrap();
    assert_eq!(w.progress(id).paused.as_deref(), Some("because"));
    let before = w.progress(id).step_at;
    w.control(id, CanaryControl::Resume).unwrap();
    assert!(w.progress(id).paused.is_none());
    assert!(w.progress(id).judged().is_empty());
    assert!(w.progress(id).step_at > before);
    assert_eq!(w.progress(id).measurements.len(), 3);
    w.control(id, CanaryControl::Pause).unwrap();
    w.control(id, CanaryControl::Promote).unwrap();
    assert!(w.progress(id).promoted && w.progress(id).paused.is_none());
}

#[test]
fn measurements_are_bounded() {
    let (mut w, id) = World::running("canary");
    w.step(id, 0).unwrap();
    w.measured(id, 0, 400).unwrap();
    w.measured(id, 0, 400).unwrap();
    let c = w.progress(id);
    assert_eq!(c.measurements.len(), sluice_common::api::MAX_MEASUREMENTS);
    assert_eq!(c.judged().len(), sluice_common::api::MAX_MEASUREMENTS);
}

#[test]
fn a_step_with_a_share_of_the_servers_weighs_only_those() {
    let (mut w, id) = World::running("canary");
    let d = w.d.all.get_mut(&id).unwrap();
    d.targets = ["a", "b", "c"]
        .iter()
        .map(|s| ServerName::parse(s).unwrap())
        .collect();
    d.request.canary = Some(
        serde_json::from_value(serde_json::json!({"steps": [
            {"weight": 100, "servers": 34}, {"weight": 20, "servers": 50}, {"weight": 50}
        ]}))
        .unwrap(),
    );
    let weights = |w: &World| -> Vec<Option<u32>> {
        w.d.all
            .get(&id)
            .unwrap()
            .canary_weights(0)
            .into_iter()
            .map(|(_, x)| x)
            .collect()
    };
    // 34 % of three servers is two (rounded up); the third is not deployed to.
    assert_eq!(weights(&w), [Some(100), Some(100), None]);
    let d = &w.d.all.get(&id).unwrap();
    let at = |k| {
        d.canary_weights(k)
            .into_iter()
            .map(|(_, x)| x)
            .collect::<Vec<_>>()
    };
    assert_eq!(at(1), [Some(20), Some(20), None]);
    assert_eq!(at(2), [Some(50), Some(50), Some(50)]);
    assert_eq!(at(3), [Some(100), Some(100), Some(100)], "the final switch");
    // A server an earlier step reached, outside a later step's share, gets nothing new.
    let mut step = sluice_common::api::ServerStepView::pending(&ServerName::parse("c").unwrap());
    step.state = sluice_common::api::ServerStepState::Deploying;
    w.apply(DeploymentCommand::Progress {
        id,
        phase: None,
        validation: None,
        server: Some(step),
    })
    .unwrap();
    assert_eq!(w.d.all.get(&id).unwrap().canary_weights(1)[2].1, Some(0));
}
