//! The canary rollout, driven through whole deployments in the simulated world: steps,
//! measurements, pauses, promote, an analysis that fails or cannot decide, a failover.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_common::agent_api::{OperationTraffic, TargetTraffic};
use sluice_common::api::{ServerStepState, ServerStepView};
use sluice_common::deployment::{DeploymentState, SubState};

use super::super::tests::sim::*;
use super::super::{step_of, Action, Readings, Restore};
use crate::state::deployments::DeploymentCommand;

/// A canary of two steps (10 %, 50 %) over two servers, with `analysis` (or none).
fn canary(analysis: serde_json::Value, pause: &str) -> Sim {
    let mut spec = serde_json::json!({
        "steps": [{"weight": 10, "pause": pause}, {"weight": 50, "pause": pause}],
    });
    if !analysis.is_null() {
        spec["analysis"] = analysis;
    }
    Sim::new(2, serde_json::json!({"strategy": "canary", "canary": spec}))
}

fn error_ratio(count: u32) -> serde_json::Value {
    serde_json::json!({"interval": "2s", "count": count, "checks": [{"kind": "error_ratio", "max": 0.05}]})
}

/// The executor's part of a shift: every server holds the new version at the step's
/// weight (the last step: every server's deploy has ended).
fn shifted(sim: &mut Sim, step: u32, last: bool) {
    for i in 1..=2 {
        let mut s = step_of(&sim.d(), &server(i));
        s.operation = Some(sim.id);
        s.state = if last {
            ServerStepState::Succeeded
        } else {
            ServerStepState::Deploying
        };
        sim.set_step(s);
    }
    sim.seen.shifted = Some(step);
    sim.seen.batch_failures = Some(Vec::new());
}

/// The executor's part of a measurement: readings now, and (past the baseline) the
/// measurements of every check with `outcome`.
fn measure(sim: &mut Sim, step: u32, outcome: Option<sluice_common::analysis::Outcome>) {
    let traffic = OperationTraffic {
        new: Some(TargetTraffic::default()),
        previous: Some(TargetTraffic::default()),
    };
    sim.seen.readings = Some(Readings {
        step,
        at: sim.now(),
        servers: (1..=2)
            .map(|i| (server(i), Ok(traffic.clone())))
            .collect::<BTreeMap<_, _>>(),
    });
    if let Some(outcome) = outcome {
        let m = sluice_common::api::Measurement {
            step,
            check: "error_ratio".into(),
            at: sim.now(),
            value: Some(0.5),
            condition: "value <= 0.05".into(),
            outcome,
            detail: "20 of 40 requests failed".into(),
        };
        sim.apply(DeploymentCommand::CanaryMeasured {
            id: sim.id,
            step,
            measurements: vec![m],
        })
        .unwrap();
    }
}

fn expect_shift(a: &Action, step: u32, weight: u32, last: bool) {
    match a {
        Action::Shift {
            step: s,
            weight: w,
            last: l,
            ..
        } => assert_eq!((*s, *w, *l), (step, weight, last), "{a:?}"),
        other => panic!("expected a shift, got {other:?}"),
    }
}

#[test]
fn a_good_canary_walks_every_step_judged_then_switches_all_traffic() {
    use sluice_common::analysis::Outcome::Successful;
    let mut sim = canary(error_ratio(2), "0s");
    // Validation, then the first step is recorded before any agent is asked.
    let a = to_first_batch(&mut sim);
    expect_shift(&a, 0, 10, false);
    assert_eq!(sim.d().canary.as_ref().unwrap().step, 0);
    for (step, weight) in [(0, 10), (1, 50)] {
        shifted(&mut sim, step, false);
        // The baseline reading, then one measurement per interval.
        assert_eq!(sim.run(), Action::Measure { step });
        measure(&mut sim, step, None);
        assert_eq!(sim.run(), Action::Wait(Duration::from_secs(2)));
        for _ in 0..2 {
            sim.later += 2000;
            assert_eq!(sim.run(), Action::Measure { step });
            measure(&mut sim, step, Some(Successful));
        }
        // Judged successful: the next step (its weight set on every server next).
        let next = sim.run();
        if step == 0 {
            expect_shift(&next, 1, 50, false);
        } else {
            expect_shift(&next, 2, 100, true);
        }
        let _ = weight;
    }
    shifted(&mut sim, 2, true);
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Success, SubState::Done));
    assert!(!sim.lock_held());
    let view = sim.d().view().canary.unwrap();
    assert_eq!(
        (view.step, view.weight, view.measurements.len()),
        (2, 100, 4)
    );
}

#[test]
fn a_failed_measurement_fails_the_step_and_rolls_every_server_back() {
    use sluice_common::analysis::Outcome::Failed;
    let mut sim = canary(error_ratio(3), "0s");
    to_first_batch(&mut sim);
    shifted(&mut sim, 0, false);
    sim.run();
    measure(&mut sim, 0, None);
    sim.later += 2000;
    assert_eq!(sim.run(), Action::Measure { step: 0 });
    measure(&mut sim, 0, Some(Failed));
    let a = sim.run();
    let Action::RollBack { restore, failed } = a else {
        panic!("expected a rollback, got {a:?}")
    };
    // Both servers held the canary: both are restored (the executor aborts both at once).
    assert_eq!(restore.len(), 2);
    assert!(restore.iter().all(|(_, r)| *r == Restore::Remove));
    assert!(failed.is_empty());
    let failure = sim.d().failure.clone().unwrap();
    assert!(
        failure.starts_with("canary analysis failed at step 1: error_ratio: 0.5000"),
        "{failure}"
    );
    assert_eq!(sim.d().state(), DeploymentState::Failed);
}

#[test]
fn an_inconclusive_analysis_pauses_until_resumed_and_resume_judges_afresh() {
    use sluice_common::analysis::Outcome::{Inconclusive, Successful};
    let mut sim = canary(error_ratio(1), "0s");
    to_first_batch(&mut sim);
    shifted(&mut sim, 0, false);
    sim.run();
    measure(&mut sim, 0, None);
    sim.later += 2000;
    sim.run();
    measure(&mut sim, 0, Some(Inconclusive));
    assert!(matches!(sim.run(), Action::Wait(_)));
    let paused = sim.d().canary.as_ref().unwrap().paused.clone().unwrap();
    assert!(
        paused.starts_with("analysis inconclusive at step 1"),
        "{paused}"
    );
    assert_eq!(sim.d().state(), DeploymentState::InProgress);
    sim.apply(DeploymentCommand::CanaryControl {
        id: sim.id,
        control: sluice_common::api::CanaryControl::Resume,
        reason: String::new(),
    })
    .unwrap();
    // A fresh baseline: readings from before the resume do not count.
    assert_eq!(sim.run(), Action::Measure { step: 0 });
    measure(&mut sim, 0, None);
    sim.later += 2000;
    sim.run();
    measure(&mut sim, 0, Some(Successful));
    expect_shift(&sim.run(), 1, 50, false);
}

#[test]
fn pauses_hold_a_step_and_promote_skips_to_the_final_switch() {
    let mut sim = canary(serde_json::Value::Null, "1m");
    to_first_batch(&mut sim);
    shifted(&mut sim, 0, false);
    match sim.run() {
        Action::Wait(d) => assert!(d > Duration::from_secs(55), "{d:?}"),
        other => panic!("expected the pause, got {other:?}"),
    }
    sim.later += 60_000;
    expect_shift(&sim.run(), 1, 50, false);
    shifted(&mut sim, 1, false);
    assert!(matches!(sim.run(), Action::Wait(_)));
    sim.apply(DeploymentCommand::CanaryControl {
        id: sim.id,
        control: sluice_common::api::CanaryControl::Promote,
        reason: String::new(),
    })
    .unwrap();
    expect_shift(&sim.run(), 2, 100, true);
}

#[test]
fn a_step_held_until_promoted_waits_for_the_promote() {
    let mut sim = Sim::new(
        1,
        serde_json::json!({"strategy": "canary", "canary": {"steps": [{"weight": 20, "until_promoted": true}]}}),
    );
    to_first_batch(&mut sim);
    let mut s = step_of(&sim.d(), &server(1));
    s.state = ServerStepState::Deploying;
    sim.set_step(s);
    sim.seen.shifted = Some(0);
    sim.later += 3_600_000;
    assert!(matches!(sim.run(), Action::Wait(_)));
    sim.apply(DeploymentCommand::CanaryControl {
        id: sim.id,
        control: sluice_common::api::CanaryControl::Promote,
        reason: String::new(),
    })
    .unwrap();
    expect_shift(&sim.run(), 1, 100, true);
}

#[test]
fn a_new_leader_refences_then_sets_the_same_steps_weight_again() {
    let mut sim = canary(serde_json::Value::Null, "1m");
    to_first_batch(&mut sim);
    shifted(&mut sim, 0, false);
    let token = sim.d().token.unwrap();
    sim.failover();
    // Nothing reaches an agent before the lock is taken again with a larger token.
    let a = sim.run();
    assert!(sim.d().token.unwrap() > token);
    expect_shift(&a, 0, 10, false);
    assert_eq!(sim.d().canary.as_ref().unwrap().step, 0, "no step replayed");
}

#[test]
fn a_cancel_mid_step_aborts_the_canary_as_one_unit() {
    let mut sim = canary(serde_json::Value::Null, "1m");
    to_first_batch(&mut sim);
    shifted(&mut sim, 0, false);
    assert!(matches!(sim.run(), Action::Wait(_)));
    sim.apply(DeploymentCommand::RequestCancel { id: sim.id })
        .unwrap();
    let a = sim.run();
    assert!(
        matches!(&a, Action::RollBack { restore, .. } if restore.len() == 2),
        "{a:?}"
    );
    assert_eq!(sim.d().failure.as_deref(), Some("cancelled"));
    // A server that failed its shift (its agent restored it) is not restored again.
    let mut sim = canary(serde_json::Value::Null, "1m");
    to_first_batch(&mut sim);
    let mut s: ServerStepView = step_of(&sim.d(), &server(2));
    s.state = ServerStepState::RestoredByAgent;
    sim.set_step(s);
    let mut s = step_of(&sim.d(), &server(1));
    s.state = ServerStepState::Deploying;
    sim.set_step(s);
    sim.seen.batch_failures = Some(vec!["web-2: health check failed".into()]);
    let Action::RollBack { restore, .. } = sim.run() else {
        panic!()
    };
    assert_eq!(restore.len(), 1);
    assert_eq!(restore[0].0, server(1));
}
