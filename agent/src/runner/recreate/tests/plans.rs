//! The plan alone: records and observations in, steps out.

use super::*;

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
