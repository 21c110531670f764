//! The recreate runner, path by path: first the pure plan, then the executor over the
//! in-memory runtime (real persistence in a temporary store, no Docker, no sockets, no
//! sleeps: health outcomes are the fake's scripted Docker HEALTHCHECK statuses).

use serde_json::json;
use sluice_common::agent_api::OperationState;
use sluice_common::fence::FenceClaim;
use uuid::Uuid;

use super::plan::{next, Observed, Step};
use crate::record::{Finish, OpRecord, OpRequest, Stage};
use crate::runner::testkit::*;
use crate::runtime::fake::Call;
use crate::runtime::DockerError;

// ------------------------------------------------------------------ the plan

fn deploy_record() -> OpRecord {
    let req = deploy_request("api", "app:v2", 3, docker_check(), json!({}));
    OpRecord::new(
        Uuid::new_v4(),
        OpRequest::Deploy(Box::new(req)),
        crate::now(),
    )
}

fn rollback_record(discard: bool) -> OpRecord {
    let req = serde_json::from_value(json!({
        "fence": {"key": "service/api", "token": 3}, "service": "api",
        "health": {"kind": "none"}, "discard_replaced": discard,
    }))
    .unwrap();
    OpRecord::new(Uuid::new_v4(), OpRequest::Rollback(req), crate::now())
}

/// The record once the new container `new` was created, replacing `previous`.
fn switching(mut rec: OpRecord, previous: Option<&str>, was_running: bool) -> OpRecord {
    rec.view.container = Some("new000000000".into());
    rec.view.previous_container = previous.map(str::to_string);
    rec.previous_was_running = was_running;
    rec.stage = Stage::Switching;
    rec
}

fn finished(step: Option<Step>) -> Finish {
    match step {
        Some(Step::Finish(f)) => f,
        other => panic!("expected a finish, got {other:?}"),
    }
}

#[test]
fn plan_of_a_deploy_that_works() {
    let mut rec = deploy_record();
    let mut obs = Observed::default();
    assert_eq!(next(&rec, &obs), Some(Step::EnsureImage));
    obs.image = Some(Ok(()));
    assert_eq!(next(&rec, &obs), Some(Step::CreateContainer));
    obs.prepared = Some(Ok(()));
    rec = switching(rec, Some("old000000000"), true);
    assert_eq!(next(&rec, &obs), Some(Step::StopPrevious));
    obs.stopped = Some(Ok(()));
    assert_eq!(next(&rec, &obs), Some(Step::StartNew));
    obs.started = Some(Ok(()));
    rec.stage = Stage::Started;
    assert_eq!(next(&rec, &obs), Some(Step::InspectNew));
    obs.new_state = Some(Ok(()));
    assert_eq!(next(&rec, &obs), Some(Step::CheckNew));
    obs.health = Some(Ok("fine".into()));
    assert_eq!(next(&rec, &obs), Some(Step::Prune));
    obs.pruned = true;
    let f = finished(next(&rec, &obs));
    assert_eq!(f.state, OperationState::Succeeded);
    assert_eq!(f.phase, "app:v2 is running and healthy (fine)");
    assert_eq!(f.error, None);
    rec.conclude(f);
    assert_eq!(next(&rec, &obs), None);
}

#[test]
fn plan_fails_without_change_before_switching() {
    let rec = deploy_record();
    for obs in [
        Observed {
            image: Some(Err("pull refused".into())),
            ..Default::default()
        },
        Observed {
            image: Some(Ok(())),
            prepared: Some(Err("pull refused".into())),
            ..Default::default()
        },
    ] {
        let f = finished(next(&rec, &obs));
        assert_eq!(f.state, OperationState::Failed);
        assert_eq!(f.phase, "failed before anything was changed");
        assert_eq!(
            f.error.as_deref(),
            Some("pull refused (nothing was changed)")
        );
    }
    let rb = rollback_record(false);
    assert_eq!(next(&rb, &Observed::default()), Some(Step::ChoosePrevious));
}

#[test]
fn plan_abandons_when_halted_before_switching() {
    let obs = Observed {
        image: Some(Ok(())),
        prepared: Some(Ok(())),
        halted: Some("aborted by the coordinator: late".into()),
        ..Default::default()
    };
    let rec = switching(deploy_record(), Some("old000000000"), true);
    assert_eq!(next(&rec, &obs), Some(Step::RemoveNew));
    let removed = Observed {
        new_removed: true,
        ..obs.clone()
    };
    let f = finished(next(&rec, &removed));
    assert_eq!(f.state, OperationState::RolledBack);
    assert_eq!(
        f.phase,
        "stopped before switching: the previous container kept serving"
    );
    assert_eq!(
        f.error.as_deref(),
        Some("aborted by the coordinator: late (nothing that serves was changed)")
    );
    for rec in [
        switching(deploy_record(), None, false),
        switching(deploy_record(), Some("old000000000"), false),
    ] {
        let f = finished(next(&rec, &removed));
        assert_eq!(f.state, OperationState::Failed);
        assert_eq!(f.phase, "stopped before anything was changed");
    }
}

#[test]
fn plan_restores_when_switching_or_the_new_version_fails() {
    let rec = switching(deploy_record(), Some("old000000000"), true);
    let stop_failed = Observed {
        stopped: Some(Err("stop refused".into())),
        ..Default::default()
    };
    assert_eq!(
        next(&rec, &stop_failed),
        Some(Step::Restore {
            why: "stop refused".into()
        })
    );
    let start_failed = Observed {
        stopped: Some(Ok(())),
        started: Some(Err("port taken".into())),
        ..Default::default()
    };
    assert_eq!(
        next(&rec, &start_failed),
        Some(Step::Restore {
            why: "port taken".into()
        })
    );
    let mut started = rec.clone();
    started.stage = Stage::Started;
    let exited = Observed {
        new_state: Some(Err("exited".into())),
        ..Default::default()
    };
    assert_eq!(
        next(&started, &exited),
        Some(Step::Restore {
            why: "the new container is exited (found after an agent restart)".into()
        })
    );
    let unhealthy = Observed {
        new_state: Some(Ok(())),
        health: Some(Err("docker reports unhealthy".into())),
        ..Default::default()
    };
    assert_eq!(
        next(&started, &unhealthy),
        Some(Step::Restore {
            why: "docker reports unhealthy".into()
        })
    );
}

#[test]
fn plan_of_a_restore() {
    let mut rec = switching(deploy_record(), Some("old000000000"), true);
    rec.stage = Stage::RollingBack;
    rec.view.error = Some("unhealthy".into());
    // Resumed: the restore begins again with the error it recorded.
    let mut obs = Observed::default();
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Restore {
            why: "unhealthy".into()
        })
    );
    let mut no_error = rec.clone();
    no_error.view.error = None;
    assert_eq!(
        next(&no_error, &obs),
        Some(Step::Restore {
            why: "interrupted while rolling back".into()
        })
    );
    obs.restoring = true;
    let new = "new000000000".to_string();
    assert_eq!(
        next(&rec, &obs),
        Some(Step::CaptureLog {
            container: new.clone()
        })
    );
    obs.log_captured = true;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::ClearFailed {
            container: new.clone(),
            remove: true
        })
    );
    obs.failed_cleared = true;
    let old = "old000000000".to_string();
    assert_eq!(
        next(&rec, &obs),
        Some(Step::StartPrevious {
            container: old.clone()
        })
    );
    obs.previous_started = Some(Ok(()));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::CheckPrevious { container: old })
    );
    let mut healthy = obs.clone();
    healthy.previous_health = Some(Ok("ok".into()));
    let f = finished(next(&rec, &healthy));
    assert_eq!(f.state, OperationState::RolledBack);
    assert_eq!(
        f.phase,
        "rolled back: the previous container is running and healthy"
    );
    let mut sick = obs.clone();
    sick.previous_health = Some(Err("docker reports unhealthy".into()));
    let f = finished(next(&rec, &sick));
    assert_eq!(f.state, OperationState::Failed);
    assert_eq!(
        f.phase,
        "FAILED: the new version failed and the previous one could not be restored"
    );
    assert_eq!(
        f.error.as_deref(),
        Some("unhealthy; restoring the previous container failed too: docker reports unhealthy")
    );
    let mut not_started = obs.clone();
    not_started.previous_started = Some(Err("refused".into()));
    assert_eq!(
        finished(next(&rec, &not_started)).state,
        OperationState::Failed
    );
    // A log already captured (before a restart) is not captured again.
    let mut captured = rec.clone();
    captured.view.log_tail = Some("...".into());
    let fresh = Observed {
        restoring: true,
        ..Default::default()
    };
    assert!(matches!(
        next(&captured, &fresh),
        Some(Step::ClearFailed { remove: true, .. })
    ));
}

#[test]
fn plan_does_not_restart_what_did_not_run() {
    let obs = Observed {
        restoring: true,
        log_captured: true,
        failed_cleared: true,
        ..Default::default()
    };
    for (previous, running, phase) in [
        (
            Some("old000000000"),
            false,
            "failed; the previous container was not running before, so it was left stopped",
        ),
        (
            None,
            false,
            "failed; there was no previous container to restore",
        ),
    ] {
        let mut rec = switching(deploy_record(), previous, running);
        rec.stage = Stage::RollingBack;
        let f = finished(next(&rec, &obs));
        assert_eq!((f.state, f.phase.as_str()), (OperationState::Failed, phase));
    }
}

#[test]
fn plan_of_a_rollback_stops_the_failed_target_and_may_discard_the_replaced() {
    let mut rec = switching(rollback_record(false), Some("cur000000000"), true);
    rec.stage = Stage::RollingBack;
    let obs = Observed {
        restoring: true,
        log_captured: true,
        ..Default::default()
    };
    assert!(matches!(
        next(&rec, &obs),
        Some(Step::ClearFailed { remove: false, .. })
    ));
    let healthy = Observed {
        new_state: Some(Ok(())),
        health: Some(Ok("ok".into())),
        ..Default::default()
    };
    let mut kept = switching(rollback_record(false), Some("cur000000000"), true);
    kept.stage = Stage::Started;
    let f = finished(next(&kept, &healthy));
    assert_eq!(f.phase, "previous container is running and healthy (ok)");
    let mut discard = switching(rollback_record(true), Some("cur000000000"), true);
    discard.stage = Stage::Started;
    assert_eq!(
        next(&discard, &healthy),
        Some(Step::DiscardReplaced {
            container: "cur000000000".into()
        })
    );
    let removed = Observed {
        discarded: Some(true),
        ..healthy.clone()
    };
    assert_eq!(
        finished(next(&discard, &removed)).phase,
        "previous container is running and healthy (ok); the failed one (cur000000000) was removed"
    );
    let kept_anyway = Observed {
        discarded: Some(false),
        ..healthy
    };
    assert_eq!(
        finished(next(&discard, &kept_anyway)).phase,
        "previous container is running and healthy (ok)"
    );
}

#[test]
fn plan_leaves_removals_to_their_runner() {
    let k = Kit::new();
    let rec = k.admit_remove("api", 1).record();
    assert_eq!(next(&rec, &Observed::default()), None);
}

// ------------------------------------------------------------ the executor

fn deploy(k: &Kit, image: &str, extra: serde_json::Value) -> std::sync::Arc<crate::ops::OpCell> {
    k.admit_deploy(deploy_request("api", image, 3, docker_check(), extra))
}

#[tokio::test]
async fn first_deploy_with_no_previous() {
    let k = Kit::new();
    k.rt.add_image("app:v1");
    k.rt.health_of("app:v1", "healthy");
    let cell = deploy(&k, "app:v1", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    assert!(v
        .phase
        .starts_with("app:v1 is running and healthy (docker reports healthy"));
    assert_eq!(
        steps(&cell),
        [
            "ensure image",
            "create container",
            "start new container",
            "health check",
            "prune old containers"
        ]
    );
    assert_eq!(v.previous_container, None);
    let new = v.container.unwrap();
    assert!(k.rt.get(&new).unwrap().running);
    assert_eq!(v.steps[1].detail, new);
    assert_eq!(v.steps[4].detail, "nothing to prune");
    // Persisted as it is seen.
    let stored = k.ops.store().get_op(v.id).unwrap().unwrap();
    assert_eq!(stored.view, cell.view());
    assert_eq!(stored.stage, Stage::Done);
}

#[tokio::test]
async fn the_new_container_is_created_as_the_coordinator_asked() {
    let k = Kit::new();
    k.rt.add_image("app:v1");
    k.rt.health_of("app:v1", "healthy");
    let cell = deploy(&k, "app:v1", json!({"strategy": "recreate"}));
    k.run(&cell).await;
    let c = k.rt.get(&cell.view().container.unwrap()).unwrap();
    assert_eq!(c.deployment, Some(cell.view().id));
    assert_eq!(c.host_port, Some(20000));
    assert_eq!(
        serde_json::to_value(c.health_check).unwrap(),
        docker_check()
    );
}

#[tokio::test]
async fn replacing_a_running_previous_keeps_exactly_one() {
    let k = Kit::new();
    let v0 = k.rt.existing("api", "app:v0", false);
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.add_image("app:v2");
    k.rt.health_of("app:v2", "healthy");
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    assert_eq!(v.previous_container.as_deref(), Some(v1.as_str()));
    assert!(cell.record().previous_was_running);
    assert_eq!(
        steps(&cell),
        [
            "ensure image",
            "create container",
            "stop previous container",
            "start new container",
            "health check",
            "prune old containers"
        ]
    );
    assert_eq!(v.steps[2].detail, format!("stopped {v1} (kept)"));
    assert_eq!(v.steps[5].detail, format!("removed {v0}"));
    let left = k.rt.of("api");
    assert_eq!(left.len(), 2, "the new one and one previous: {left:?}");
    let kept = k.rt.get(&v1).unwrap();
    assert!(!kept.running, "the previous one is stopped, and kept");
    assert!(k.rt.get(&v.container.unwrap()).unwrap().running);
}

#[tokio::test]
async fn replacing_a_stopped_previous_stops_nothing() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", false);
    k.rt.add_image("app:v2");
    k.rt.health_of("app:v2", "healthy");
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    assert_eq!(cell.view().state, OperationState::Succeeded);
    assert_eq!(cell.view().previous_container, Some(v1));
    assert!(!cell.record().previous_was_running);
    assert!(!steps(&cell).contains(&"stop previous container".to_string()));
}

#[tokio::test]
async fn a_missing_image_is_pulled() {
    let k = Kit::new();
    k.rt.publish("app:v2");
    k.rt.health_of("app:v2", "healthy");
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    assert_eq!(cell.view().state, OperationState::Succeeded);
    assert_eq!(cell.view().steps[0].detail, "pulled");
    assert_eq!(k.rt.changes()[0], "pull app:v2");
}

#[tokio::test]
async fn a_failed_pull_changes_nothing() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", true);
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(v.phase, "failed before anything was changed");
    assert_eq!(
        v.error.as_deref(),
        Some("not found: manifest for app:v2 not found (nothing was changed)")
    );
    assert_eq!(v.steps[0].ok, Some(false));
    assert!(k.rt.changes().is_empty(), "{:?}", k.rt.changes());
    assert!(k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn a_failed_create_changes_nothing() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.add_image("app:v2");
    k.rt.fail(Call::Create, None, DockerError::Refused("no space".into()));
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(
        v.error.as_deref(),
        Some("docker refused: no space (nothing was changed)")
    );
    assert_eq!(steps(&cell), ["ensure image", "create container"]);
    assert!(k.rt.changes().is_empty());
    assert!(k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn a_failed_start_restores_the_previous() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.health_of("app:v1", "healthy");
    k.rt.add_image("app:v2");
    k.rt.fail(
        Call::Start,
        Some("app:v2"),
        DockerError::Refused("port is already allocated".into()),
    );
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert_eq!(
        v.phase,
        "rolled back: the previous container is running and healthy"
    );
    assert_eq!(
        v.error.as_deref(),
        Some("docker refused: port is already allocated")
    );
    assert_eq!(
        steps(&cell),
        [
            "ensure image",
            "create container",
            "stop previous container",
            "start new container",
            "capture log of failed container",
            "remove failed container",
            "start previous container",
            "health check previous container"
        ]
    );
    assert!(k.rt.get(&v1).unwrap().running);
    assert_eq!(k.rt.of("api").len(), 1, "the failed container is gone");
}

#[tokio::test]
async fn an_unhealthy_version_is_replaced_by_the_healthy_previous() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.health_of("app:v1", "healthy");
    k.rt.add_image("app:v2");
    k.rt.health_of("app:v2", "unhealthy");
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert_eq!(v.error.as_deref(), Some("docker reports unhealthy"));
    assert_eq!(
        v.log_tail.as_deref(),
        Some("app:v2 line 1\napp:v2 line 2\napp:v2 line 3\n")
    );
    assert!(k.rt.get(&v1).unwrap().running);
    assert!(k.rt.get(&v.container.unwrap()).is_none());
    assert_eq!(cell.record().stage, Stage::Done);
}

#[tokio::test]
async fn a_crashing_version_is_replaced_by_the_previous() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.add_image("app:v2");
    k.rt.crashing("app:v2");
    let cell = k.admit_deploy(deploy_request(
        "api",
        "app:v2",
        3,
        json!({"kind": "none"}),
        json!({}),
    ));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert_eq!(
        v.error.as_deref(),
        Some("the new container is exited (found after an agent restart)")
    );
    assert!(k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn the_previous_is_judged_by_the_check_recorded_for_it() {
    let k = Kit::new();
    // v1 has no HEALTHCHECK: judged by the deploy's docker check it would fail; the
    // coordinator says it was deployed with no check.
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.add_image("app:v2");
    k.rt.health_of("app:v2", "unhealthy");
    let cell = deploy(&k, "app:v2", json!({"previous_health": {"kind": "none"}}));
    k.run(&cell).await;
    assert_eq!(cell.view().state, OperationState::RolledBack);
    assert!(k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn a_previous_that_fails_too_is_reported_loudly() {
    let k = Kit::new();
    k.rt.existing("api", "app:v1", true);
    k.rt.health_of("app:v1", "unhealthy");
    k.rt.add_image("app:v2");
    k.rt.health_of("app:v2", "unhealthy");
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(
        v.phase,
        "FAILED: the new version failed and the previous one could not be restored"
    );
    assert_eq!(
        v.error.as_deref(),
        Some("docker reports unhealthy; restoring the previous container failed too: docker reports unhealthy")
    );
}

#[tokio::test]
async fn a_failed_first_deploy_has_nothing_to_restore() {
    let k = Kit::new();
    k.rt.add_image("app:v1");
    k.rt.health_of("app:v1", "unhealthy");
    let cell = deploy(&k, "app:v1", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(
        v.phase,
        "failed; there was no previous container to restore"
    );
    assert!(
        k.rt.of("api").is_empty(),
        "the failed container was removed"
    );
}

#[tokio::test]
async fn a_stopped_previous_is_left_stopped() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", false);
    k.rt.add_image("app:v2");
    k.rt.health_of("app:v2", "unhealthy");
    let cell = deploy(&k, "app:v2", json!({}));
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(
        v.phase,
        "failed; the previous container was not running before, so it was left stopped"
    );
    assert!(!k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn aborted_before_switching_the_previous_keeps_serving() {
    let k = Kit::new();
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.add_image("app:v2");
    let cell = deploy(&k, "app:v2", json!({}));
    let claim = FenceClaim {
        key: sluice_common::names::LockKey::parse("service/api").unwrap(),
        token: sluice_common::locks::FencingToken(3),
    };
    k.ops.abort(cell.view().id, &claim, "too slow").unwrap();
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert_eq!(
        v.phase,
        "stopped before switching: the previous container kept serving"
    );
    assert_eq!(
        v.error.as_deref(),
        Some("aborted by the coordinator: too slow (nothing that serves was changed)")
    );
    assert_eq!(
        steps(&cell),
        ["ensure image", "create container", "remove new container"]
    );
    assert!(k.rt.get(&v1).unwrap().running);
    assert_eq!(k.rt.of("api").len(), 1);
    assert!(!k.rt.changes().iter().any(|c| c.starts_with("stop")));
}

#[tokio::test]
async fn past_its_deadline_before_switching_a_first_deploy_fails() {
    let k = Kit::new();
    k.rt.add_image("app:v1");
    let cell = deploy(&k, "app:v1", json!({"deadline": "10m"}));
    cell.update(|r| r.deadline_at = Some(r.view.started_at))
        .unwrap();
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(v.phase, "stopped before anything was changed");
    assert!(
        v.error
            .as_deref()
            .unwrap()
            .starts_with("the operation's deadline passed"),
        "{v:?}"
    );
    assert!(k.rt.of("api").is_empty());
}

#[tokio::test]
async fn shutdown_leaves_the_operation_to_resume() {
    let k = Kit::new();
    k.rt.add_image("app:v1");
    let cell = deploy(&k, "app:v1", json!({}));
    k.env.cancel.cancel();
    let x = crate::runner::exec::Exec {
        rt: &k.rt,
        env: &k.env,
        cell: &cell,
    };
    let r = crate::runner::run(&x).await;
    assert!(
        matches!(r, Err(crate::runner::exec::Halt::Interrupted)),
        "{r:?}"
    );
    let rec = k.ops.store().get_op(cell.view().id).unwrap().unwrap();
    assert_eq!(rec.view.state, OperationState::Running);
    assert_eq!(rec.stage, Stage::Start);
}

// --------------------------------------------------------------- resuming

/// A deploy of app:v2 over a running app:v1, interrupted with the new container created
/// and the stage at `Switching`.
fn interrupted_while_switching(k: &Kit) -> (std::sync::Arc<crate::ops::OpCell>, String, String) {
    let v1 = k.rt.existing("api", "app:v1", true);
    k.rt.health_of("app:v1", "healthy");
    k.rt.add_image("app:v2");
    let cell = deploy(k, "app:v2", json!({}));
    let new = k.rt.created_by("api", "app:v2", cell.view().id);
    cell.update(|r| {
        r.view.container = Some(new.clone());
        r.view.previous_container = Some(v1.clone());
        r.previous_was_running = true;
        r.stage = Stage::Switching;
    })
    .unwrap();
    (cell, v1, new)
}

#[tokio::test]
async fn resumed_while_switching_it_switches() {
    let k = Kit::new();
    let (cell, v1, new) = interrupted_while_switching(&k);
    k.rt.health_of("app:v2", "healthy");
    k.resume(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    assert_eq!(v.resumed, 1);
    assert_eq!(
        steps(&cell),
        [
            "agent restarted; reconciling with Docker",
            "stop previous container",
            "start new container",
            "health check",
            "prune old containers"
        ]
    );
    assert_eq!(v.steps[0].detail, "resuming at stage Switching");
    assert!(k.rt.get(&new).unwrap().running);
    assert!(!k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn resumed_when_started_and_running_it_checks_again() {
    let k = Kit::new();
    let (cell, v1, new) = interrupted_while_switching(&k);
    k.rt.health_of("app:v2", "healthy");
    k.rt.run_now(&new);
    cell.update(|r| {
        r.begin("health check");
        r.stage = Stage::Started;
    })
    .unwrap();
    k.resume(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    let names = steps(&cell);
    assert_eq!(
        names,
        [
            "health check",
            "agent restarted; reconciling with Docker",
            "health check",
            "prune old containers"
        ]
    );
    assert_eq!(v.steps[0].ok, Some(false));
    assert_eq!(v.steps[0].detail, "interrupted by an agent restart");
    assert!(k.rt.get(&new).unwrap().running);
    assert!(k.rt.get(&v1).is_some(), "kept");
}

#[tokio::test]
async fn resumed_when_started_and_gone_it_restores() {
    let k = Kit::new();
    let (cell, v1, new) = interrupted_while_switching(&k);
    k.rt.vanish(&new);
    cell.update(|r| r.stage = Stage::Started).unwrap();
    k.resume(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert_eq!(
        v.error.as_deref(),
        Some("the new container is gone (found after an agent restart)")
    );
    // Nothing left to capture a log from; the removal of a missing container is fine.
    assert!(!steps(&cell).contains(&"capture log of failed container".to_string()));
    assert!(k.rt.get(&v1).unwrap().running);
}

#[tokio::test]
async fn resumed_while_rolling_back_it_finishes_the_restore() {
    let k = Kit::new();
    let (cell, v1, new) = interrupted_while_switching(&k);
    k.rt.run_now(&new);
    cell.update(|r| {
        r.stage = Stage::RollingBack;
        r.view.error = Some("docker reports unhealthy".into());
    })
    .unwrap();
    // v1 had been stopped by the switch.
    k.rt.stop_now(&v1);
    k.resume(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert_eq!(v.error.as_deref(), Some("docker reports unhealthy"));
    assert!(v.log_tail.is_some());
    assert!(k.rt.get(&new).is_none());
    assert!(k.rt.get(&v1).unwrap().running);
}

// --------------------------------------------------------------- rollbacks

/// app:v1 then app:v2 deployed: v2 runs, v1 is kept stopped.
async fn two_versions(k: &Kit) -> (String, String) {
    for i in ["app:v1", "app:v2"] {
        k.rt.add_image(i);
        k.rt.health_of(i, "healthy");
    }
    let c1 = deploy(k, "app:v1", json!({}));
    k.run(&c1).await;
    let c2 = k.admit_deploy(deploy_request(
        "api",
        "app:v2",
        4,
        docker_check(),
        json!({}),
    ));
    k.run(&c2).await;
    assert_eq!(c2.view().state, OperationState::Succeeded);
    (c1.view().container.unwrap(), c2.view().container.unwrap())
}

#[tokio::test]
async fn a_rollback_makes_the_kept_container_current_and_keeps_the_replaced() {
    let k = Kit::new();
    let (v1, v2) = two_versions(&k).await;
    let cell = k.admit_rollback("api", 5, false);
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    assert_eq!(v.container.as_deref(), Some(v1.as_str()));
    assert_eq!(v.previous_container.as_deref(), Some(v2.as_str()));
    assert_eq!(
        v.image.as_ref().map(|i| i.to_string()).as_deref(),
        Some("app:v1")
    );
    assert!(v
        .phase
        .starts_with("previous container is running and healthy"));
    assert_eq!(
        steps(&cell),
        [
            "choose previous container",
            "stop previous container",
            "start new container",
            "health check"
        ]
    );
    assert!(k.rt.get(&v1).unwrap().running);
    assert!(
        !k.rt.get(&v2).unwrap().running,
        "kept, for a rollback of the rollback"
    );
}

#[tokio::test]
async fn an_unhealthy_rollback_target_is_stopped_and_the_replaced_restarted() {
    let k = Kit::new();
    let (v1, v2) = two_versions(&k).await;
    k.rt.health_of("app:v1", "unhealthy");
    let cell = k.admit_rollback("api", 5, false);
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::RolledBack, "{v:?}");
    assert!(steps(&cell).contains(&"stop failed container".to_string()));
    assert!(!k.rt.get(&v1).unwrap().running, "stopped, not removed");
    assert!(k.rt.get(&v2).unwrap().running);
}

#[tokio::test]
async fn a_rollback_without_a_kept_container_changes_nothing() {
    let k = Kit::new();
    k.rt.existing("api", "app:v1", true);
    let cell = k.admit_rollback("api", 5, false);
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Failed);
    assert_eq!(
        v.error.as_deref(),
        Some("service api has no kept previous container (nothing was changed)")
    );
    assert!(k.rt.changes().is_empty());
}

#[tokio::test]
async fn an_automatic_rollback_discards_the_failed_version() {
    let k = Kit::new();
    let (v1, v2) = two_versions(&k).await;
    let cell = k.admit_rollback("api", 5, true);
    k.run(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    assert!(
        v.phase
            .ends_with(&format!("the failed one ({v2}) was removed")),
        "{}",
        v.phase
    );
    assert!(k.rt.get(&v2).is_none());
    assert!(k.rt.get(&v1).unwrap().running);
}
