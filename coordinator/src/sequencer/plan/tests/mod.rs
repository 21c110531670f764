//! The planner, driven through whole deployments with no I/O: a [`Sim`] applies each
//! proposed command to a real `Deployments` and lock table (as Raft would), and plays the
//! agents by writing what they would report into the record and into [`Observed`].

use std::time::Duration;

use super::*;
use sluice_common::api::{CreateDeploymentRequest, ServerStepState};
use sluice_common::deployment::{DeploymentState, SubState};
use sluice_common::locks::{Acquire, FencingToken};
use sluice_common::names::Holder;
use uuid::Uuid;

pub(super) mod sim;

use sim::*;

#[test]
fn a_deployment_to_three_servers_one_at_a_time() {
    let mut sim = Sim::new(3, serde_json::json!({}));
    assert_eq!(sim.sub(), (DeploymentState::Pending, SubState::Waiting));
    let a = to_first_batch(&mut sim);
    assert_eq!(deploy_batch(&a), vec![server(1)]);
    let Action::Deploy { deadline, .. } = a else {
        unreachable!()
    };
    assert_eq!(deadline, DEFAULT_PROGRESS_DEADLINE);
    for i in 1..=3 {
        sim.batch(&[(i, Ok(()))]);
        let a = sim.run();
        if i < 3 {
            assert_eq!(deploy_batch(&a), vec![server(i + 1)]);
        } else {
            assert_eq!(a, Action::Done);
        }
    }
    assert_eq!(sim.sub(), (DeploymentState::Success, SubState::Done));
    assert!(!sim.lock_held(), "the lock is released with the success");
}

#[test]
fn batches_follow_max_parallel_and_the_progress_deadline() {
    let mut sim = Sim::new(
        5,
        serde_json::json!({"max_parallel": 2, "progress_deadline": "90s"}),
    );
    let a = to_first_batch(&mut sim);
    assert_eq!(
        a,
        Action::Deploy {
            servers: vec![server(1), server(2)],
            deadline: Duration::from_secs(90)
        }
    );
    sim.batch(&[(1, Ok(())), (2, Ok(()))]);
    assert_eq!(deploy_batch(&sim.run()), vec![server(3), server(4)]);
}

#[test]
fn failure_on_server_k_of_n_rolls_back_the_servers_before_it() {
    let mut sim = Sim::new(4, serde_json::json!({}));
    sim.deps
        .services
        .entry(sim.d().request.service.clone())
        .or_default();
    // v1 ran everywhere before, with its own check.
    let v1 = Uuid::new_v4();
    for i in 1..=4 {
        let rec = sim
            .deps
            .services
            .get_mut(&sim.deps.all.get(&sim.id).unwrap().request.service)
            .unwrap();
        rec.servers.insert(
            server(i),
            crate::state::deployments::Placement {
                image: sluice_common::image::ImageRef::parse("app:v1").unwrap(),
                port: 20000,
                deployment: v1,
                health: Some(health("/v1")),
            },
        );
    }
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(()))]);
    sim.run();
    sim.batch(&[(2, Ok(()))]);
    sim.run();
    sim.batch(&[(3, Err("health check failed"))]);
    // StepFailed (touched: rollback due) → BeginRollback → the rollback plan.
    let a = sim.run();
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::RollingBack));
    assert_eq!(
        sim.d().failure.as_deref(),
        Some("web-3: health check failed")
    );
    assert!(sim.lock_held(), "the lock is kept for the rollback");
    let Action::RollBack { restore, failed } = a else {
        panic!("expected a rollback, got {a:?}")
    };
    // Server 3 was restored by its agent, server 4 never touched.
    let want = |i| {
        (
            server(i),
            Restore::Previous {
                health: health("/v1"),
                discard_replaced: true,
            },
        )
    };
    assert_eq!(restore, vec![want(1), want(2)]);
    assert!(failed.is_empty());
    sim.seen.rollback_failures = Some(Vec::new());
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::RolledBack, SubState::Done));
    assert!(!sim.lock_held());
}

#[test]
fn a_rollback_that_cannot_restore_gives_up_loudly() {
    let mut sim = Sim::new(2, serde_json::json!({"max_parallel": 2}));
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(())), (2, Err("boom"))]);
    let Action::RollBack { restore, .. } = sim.run() else {
        panic!()
    };
    // A first deployment: nothing ran before, so the servers are cleared.
    assert_eq!(restore, vec![(server(1), Restore::Remove)]);
    sim.seen.rollback_failures = Some(vec!["web-1: agent unreachable".into()]);
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::GaveUp));
    assert_eq!(
        sim.d().failure.as_deref(),
        Some("ROLLBACK FAILED: web-1: agent unreachable")
    );
    assert!(!sim.lock_held(), "an operator gets the lock back");
}

#[test]
fn a_server_that_failed_beyond_restoring_is_reported_not_retried() {
    let mut sim = Sim::new(2, serde_json::json!({"max_parallel": 2}));
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(()))]);
    let mut s2 = step_of(&sim.d(), &server(2));
    s2.state = ServerStepState::Failed;
    s2.detail = "previous would not start".into();
    sim.set_step(s2);
    sim.seen.batch_failures = Some(vec!["web-2: previous would not start".into()]);
    let Action::RollBack { restore, failed } = sim.run() else {
        panic!()
    };
    assert_eq!(restore, vec![(server(1), Restore::Remove)]);
    assert_eq!(failed, vec!["web-2: previous would not start".to_string()]);
}

#[test]
fn cancel_in_each_state() {
    // Pending: cancelled before it took the lock.
    let mut sim = Sim::new(1, serde_json::json!({}));
    sim.apply(DeploymentCommand::RequestCancel { id: sim.id })
        .unwrap();
    assert_eq!(
        sim.sub(),
        (DeploymentState::Pending, SubState::CancelRequested)
    );
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::Done));
    assert_eq!(sim.d().failure.as_deref(), Some("cancelled"));

    // Validating.
    let mut sim = Sim::new(1, serde_json::json!({}));
    assert_eq!(sim.run(), Action::Validate);
    sim.apply(DeploymentCommand::RequestCancel { id: sim.id })
        .unwrap();
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::Done));
    assert!(!sim.lock_held());

    // In progress, before any server was touched: nothing to roll back.
    let mut sim = Sim::new(2, serde_json::json!({}));
    to_first_batch(&mut sim);
    sim.apply(DeploymentCommand::RequestCancel { id: sim.id })
        .unwrap();
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::Done));

    // In progress, between batches: the touched server is rolled back.
    let mut sim = Sim::new(2, serde_json::json!({}));
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(()))]);
    sim.apply(DeploymentCommand::RequestCancel { id: sim.id })
        .unwrap();
    let a = sim.run();
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::RollingBack));
    assert!(matches!(a, Action::RollBack { .. }), "{a:?}");

    // Settled: a cancel is refused by the record, and the plan has nothing to do.
    let mut sim = Sim::new(1, serde_json::json!({}));
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(()))]);
    assert_eq!(sim.run(), Action::Done);
    assert!(sim
        .apply(DeploymentCommand::RequestCancel { id: sim.id })
        .is_err());
}

#[test]
fn a_deposed_leader_stops_at_every_step() {
    let mut sim = Sim::new(2, serde_json::json!({}));
    let mut stops = 0;
    // Before each step of a whole deployment, the plan of a deposed node is to stop.
    let mut check = |sim: &mut Sim| {
        sim.seen.deposed = true;
        let a = sim.plan();
        assert!(matches!(a, Action::Stop(_)), "{a:?}");
        sim.seen.deposed = false;
        stops += 1;
    };
    check(&mut sim);
    sim.run();
    check(&mut sim);
    sim.validated(&[], false);
    sim.run();
    check(&mut sim);
    sim.batch(&[(1, Ok(()))]);
    check(&mut sim);
    sim.run();
    sim.batch(&[(2, Err("boom"))]);
    check(&mut sim);
    sim.run();
    check(&mut sim);
    assert_eq!(stops, 6);
    // Settled: nothing to stop.
    sim.seen.rollback_failures = Some(Vec::new());
    sim.run();
    sim.seen.deposed = true;
    assert_eq!(sim.plan(), Action::Done);
}

#[test]
fn a_new_leader_refences_before_anything_reaches_an_agent() {
    let mut sim = Sim::new(2, serde_json::json!({}));
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(()))]);
    let before = sim.d().token.unwrap();
    sim.failover();
    assert_eq!(sim.plan(), Action::Refence);
    // After the refence, the same deployment continues where the record says.
    assert_eq!(deploy_batch(&sim.run()), vec![server(2)]);
    assert!(sim.d().token.unwrap() > before, "a larger token");

    // Mid-rollback too.
    sim.batch(&[(2, Err("boom"))]);
    assert!(matches!(sim.run(), Action::RollBack { .. }));
    sim.failover();
    assert_eq!(sim.plan(), Action::Refence);
    assert!(matches!(sim.run(), Action::RollBack { .. }));
}

#[test]
fn a_lost_lock_gives_the_deployment_up() {
    let mut sim = Sim::new(1, serde_json::json!({}));
    to_first_batch(&mut sim);
    // Our lease lapsed and someone else took the service lock.
    let key = sim.d().lock_key();
    let token = sim.d().token.unwrap();
    sim.locks.release(&key, token).unwrap();
    sim.locks
        .acquire(
            Acquire {
                key,
                holder: Holder::parse("human").unwrap(),
                reason: "migration".into(),
                ttl: Duration::from_secs(600),
            },
            FencingToken(10_000),
            sim.now(),
        )
        .unwrap();
    sim.failover();
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::GaveUp));
    assert!(sim
        .d()
        .failure
        .as_deref()
        .unwrap()
        .starts_with("lost the service lock"));
}

#[test]
fn a_held_lock_is_waited_for_until_the_lock_wait_runs_out() {
    let mut sim = Sim::new(1, serde_json::json!({"lock_wait": "30s"}));
    let lease = sim
        .locks
        .acquire(
            Acquire {
                key: sim.d().lock_key(),
                holder: Holder::parse("human").unwrap(),
                reason: "migration".into(),
                ttl: Duration::from_secs(600),
            },
            FencingToken(5),
            sim.now(),
        )
        .unwrap()
        .lease;
    sim.seen.lock_held = Some(lease.clone());
    let Action::WaitForLock(wait) = sim.plan() else {
        panic!()
    };
    assert!(
        wait <= Duration::from_secs(30) && wait > Duration::ZERO,
        "{wait:?}"
    );
    // 31 s later, still held: the lock wait ran out.
    sim.index += 31;
    let (event, failure) = proposed_event(&sim.plan());
    assert_eq!(event, DeploymentEvent::LockTimeout);
    assert!(failure.unwrap().contains("held by human (migration)"));
    // Without a wait, the first sight of a held lock ends it.
    let mut sim = Sim::new(1, serde_json::json!({}));
    sim.seen.lock_held = Some(lease);
    assert_eq!(proposed_event(&sim.plan()).0, DeploymentEvent::LockTimeout);
}

#[test]
fn failed_checks_end_it_with_every_failure() {
    let mut sim = Sim::new(2, serde_json::json!({}));
    assert_eq!(sim.run(), Action::Validate);
    sim.validated(
        &[
            "port_available on web-1: taken",
            "image_exists on web-2: missing",
        ],
        false,
    );
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Failed, SubState::Done));
    assert_eq!(
        sim.d().failure.as_deref(),
        Some("port_available on web-1: taken; image_exists on web-2: missing")
    );
    assert!(!sim.lock_held());
}

#[test]
fn a_redeploy_of_what_runs_is_a_no_op() {
    let mut sim = Sim::new(2, serde_json::json!({}));
    assert_eq!(sim.run(), Action::Validate);
    sim.validated(&[], true);
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::Success, SubState::Noop));
    assert!(!sim.d().touched());
    // A no-op has nothing to roll back.
    assert!(sim
        .apply(DeploymentCommand::RequestRollback { id: sim.id })
        .is_err());
}

#[test]
fn a_manual_rollback_restores_every_target_by_the_previous_check() {
    let mut sim = Sim::new(2, serde_json::json!({"max_parallel": 2}));
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(())), (2, Ok(()))]);
    assert_eq!(sim.run(), Action::Done);
    // A second deployment of the service, then its manual rollback.
    let first = sim.id;
    let request = sim.d().request.clone();
    let second = Uuid::new_v4();
    sim.apply(DeploymentCommand::Create {
        id: second,
        request: Box::new(CreateDeploymentRequest {
            image: sluice_common::image::ImageRef::parse("app:v3").unwrap(),
            health: health("/v3"),
            ..request
        }),
        targets: vec![server(1), server(2)],
        idempotency: None,
        actor: "ci".into(),
    })
    .unwrap();
    sim.id = second;
    sim.failover();
    to_first_batch(&mut sim);
    sim.batch(&[(1, Ok(())), (2, Ok(()))]);
    assert_eq!(sim.run(), Action::Done);
    sim.apply(DeploymentCommand::RequestRollback { id: second })
        .unwrap();
    assert_eq!(sim.sub(), (DeploymentState::Success, SubState::RollbackDue));
    sim.failover();
    // Re-fence (the lock was released at success), begin, plan.
    let Action::RollBack { restore, failed } = sim.run() else {
        panic!()
    };
    assert!(failed.is_empty());
    let want = |i| {
        (
            server(i),
            Restore::Previous {
                health: health("/v2"),
                discard_replaced: false,
            },
        )
    };
    assert_eq!(restore, vec![want(1), want(2)]);
    sim.seen.rollback_failures = Some(Vec::new());
    assert_eq!(sim.run(), Action::Done);
    assert_eq!(sim.sub(), (DeploymentState::RolledBack, SubState::Done));
    // The service runs the first deployment's version again.
    let rec = &sim.deps.services[&sim.d().request.service];
    assert!(rec.servers.values().all(|p| p.deployment == first));
}
