//! The blue_green plan, path by path: records and observations in, steps out (pure: no
//! Docker, no proxy, no sockets, no sleeps).

use std::net::SocketAddr;

use serde_json::json;
use sluice_common::agent_api::OperationState;
use uuid::Uuid;

use super::plan::next;
use crate::record::{Finish, OpRecord, OpRequest, Stage};
use crate::runner::steps::{Observed, Step};
use crate::runner::testkit::*;

const NEW: &str = "new000000000";
const OLD: &str = "old000000000";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn deploy_record(min_healthy: &str) -> OpRecord {
    let extra = json!({"strategy": "blue_green", "min_healthy": min_healthy});
    let req = deploy_request("api", "app:v2", 3, docker_check(), extra);
    OpRecord::new(
        Uuid::new_v4(),
        OpRequest::Deploy(Box::new(req)),
        crate::now(),
    )
}

fn rollback_record(discard: bool) -> OpRecord {
    let req = serde_json::from_value(json!({
        "fence": {"key": "service/api", "token": 3}, "service": "api",
        "health": {"kind": "tcp"}, "discard_replaced": discard, "strategy": "blue_green",
    }))
    .unwrap();
    OpRecord::new(Uuid::new_v4(), OpRequest::Rollback(req), crate::now())
}

/// The record once the new container was created (or the rollback's target chosen).
fn at(mut rec: OpRecord, stage: Stage, previous: Option<&str>, was_running: bool) -> OpRecord {
    rec.view.container = Some(NEW.into());
    rec.view.previous_container = previous.map(str::to_string);
    rec.previous_was_running = was_running;
    rec.stage = stage;
    rec
}

fn finished(step: Option<Step>) -> Finish {
    match step {
        Some(Step::Finish(f)) => f,
        other => panic!("expected a finish, got {other:?}"),
    }
}

/// Walks a started record to the switch: located at `port`, healthy.
fn healthy_and_located(rec: &OpRecord, obs: &mut Observed, port: u16) {
    assert_eq!(next(rec, obs), Some(Step::LocateNew));
    obs.new_addr = Some(Ok(addr(port)));
    assert_eq!(next(rec, obs), Some(Step::CheckNew));
    obs.health = Some(Ok("fine".into()));
}

#[test]
fn a_deploy_that_works_switches_drains_watches_then_retires_the_old_container() {
    let mut rec = deploy_record("10s");
    let mut obs = Observed::default();
    assert_eq!(next(&rec, &obs), Some(Step::EnsureImage));
    obs.image = Some(Ok(()));
    assert_eq!(next(&rec, &obs), Some(Step::CreateContainer));
    rec = at(rec, Stage::Switching, Some(OLD), true);
    obs.prepared = Some(Ok(()));
    // The old container is never stopped before the switch.
    assert_eq!(next(&rec, &obs), Some(Step::StartNew));
    obs.started = Some(Ok(()));
    rec.stage = Stage::Started;
    healthy_and_located(&rec, &mut obs, 41000);
    let route = Step::Route {
        container: NEW.into(),
        to: addr(41000),
    };
    assert_eq!(next(&rec, &obs), Some(route));
    obs.routed = Some(Ok(()));
    rec.stage = Stage::Routed;
    let drain_old = Step::Drain {
        container: OLD.into(),
    };
    assert_eq!(next(&rec, &obs), Some(drain_old));
    obs.drained = true;
    assert_eq!(next(&rec, &obs), Some(Step::Watch));
    obs.watched = Some(Ok(()));
    let stop_old = Step::ClearOld {
        container: OLD.into(),
        remove: false,
    };
    assert_eq!(next(&rec, &obs), Some(stop_old));
    obs.old_cleared = Some(Ok(()));
    assert_eq!(next(&rec, &obs), Some(Step::Prune));
    obs.pruned = true;
    let f = finished(next(&rec, &obs));
    assert_eq!(f.state, OperationState::Succeeded);
    assert!(f.phase.contains("sluice-proxy"), "{}", f.phase);
}

#[test]
fn without_min_healthy_there_is_no_watch_and_a_first_version_has_nothing_to_drain() {
    let mut rec = at(deploy_record("0s"), Stage::Started, None, false);
    let mut obs = Observed::default();
    healthy_and_located(&rec, &mut obs, 41000);
    obs.routed = Some(Ok(()));
    rec.stage = Stage::Routed;
    assert_eq!(next(&rec, &obs), Some(Step::Prune));
}

#[test]
fn a_new_version_that_never_turns_healthy_never_gets_traffic() {
    let rec = at(deploy_record("10s"), Stage::Started, Some(OLD), true);
    let mut obs = Observed {
        new_addr: Some(Ok(addr(41000))),
        health: Some(Err("GET /health answered 500".into())),
        ..Default::default()
    };
    // No route step: its log is kept, it is removed, the old one kept serving.
    assert_eq!(
        next(&rec, &obs),
        Some(Step::CaptureLog {
            container: NEW.into()
        })
    );
    obs.log_captured = true;
    assert_eq!(next(&rec, &obs), Some(Step::RemoveNew));
    obs.new_removed = true;
    let f = finished(next(&rec, &obs));
    assert_eq!(f.state, OperationState::RolledBack);
    assert!(f.error.unwrap().contains("no traffic was switched"));
}

#[test]
fn a_new_container_that_dies_at_start_is_removed_without_traffic() {
    let rec = at(deploy_record("10s"), Stage::Started, Some(OLD), true);
    let obs = Observed {
        new_addr: Some(Err("exited".into())),
        log_captured: true,
        ..Default::default()
    };
    assert_eq!(next(&rec, &obs), Some(Step::RemoveNew));
}

#[test]
fn a_first_version_that_fails_before_the_switch_fails_with_nothing_served() {
    let rec = at(deploy_record("10s"), Stage::Started, None, false);
    let obs = Observed {
        new_addr: Some(Ok(addr(41000))),
        health: Some(Err("unhealthy".into())),
        new_removed: true,
        ..Default::default()
    };
    assert_eq!(finished(next(&rec, &obs)).state, OperationState::Failed);
}

#[test]
fn aborted_before_the_switch_removes_the_new_container_and_keeps_the_old() {
    let rec = at(deploy_record("10s"), Stage::Switching, Some(OLD), true);
    let mut obs = Observed {
        prepared: Some(Ok(())),
        halted: Some("aborted by the coordinator: deadline".into()),
        ..Default::default()
    };
    assert_eq!(next(&rec, &obs), Some(Step::RemoveNew));
    obs.new_removed = true;
    assert_eq!(finished(next(&rec, &obs)).state, OperationState::RolledBack);
}

#[test]
fn a_failure_in_the_watch_switches_back_to_the_old_container_still_running() {
    let mut rec = at(deploy_record("10s"), Stage::Routed, Some(OLD), true);
    let mut obs = Observed {
        new_addr: Some(Ok(addr(41000))),
        health: Some(Ok("fine".into())),
        routed: Some(Ok(())),
        drained: true,
        watched: Some(Err("unhealthy 5000 ms into the watch".into())),
        ..Default::default()
    };
    let why = "unhealthy 5000 ms into the watch".to_string();
    assert_eq!(next(&rec, &obs), Some(Step::Restore { why: why.clone() }));
    rec.stage = Stage::RollingBack;
    rec.view.error = Some(why);
    obs.restoring = true;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::LocatePrevious {
            container: OLD.into()
        })
    );
    obs.previous_addr = Some(Ok(addr(40999)));
    // Running: traffic goes back at once, no start, no check first.
    assert_eq!(
        next(&rec, &obs),
        Some(Step::RouteBack {
            container: OLD.into(),
            to: addr(40999)
        })
    );
    obs.routed_back = Some(Ok(()));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Drain {
            container: NEW.into()
        })
    );
    obs.new_drained = true;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::CaptureLog {
            container: NEW.into()
        })
    );
    obs.log_captured = true;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::ClearFailed {
            container: NEW.into(),
            remove: true
        })
    );
    obs.failed_cleared = true;
    assert_eq!(finished(next(&rec, &obs)).state, OperationState::RolledBack);
}

#[test]
fn an_abort_during_the_watch_rolls_back_too() {
    // The watch step itself returns the abort as its failure.
    let rec = at(deploy_record("10s"), Stage::Routed, Some(OLD), true);
    let obs = Observed {
        new_addr: Some(Ok(addr(41000))),
        health: Some(Ok("fine".into())),
        drained: true,
        watched: Some(Err("aborted by the coordinator: cancelled".into())),
        ..Default::default()
    };
    assert!(matches!(next(&rec, &obs), Some(Step::Restore { .. })));
}

#[test]
fn resumed_after_the_switch_the_new_container_is_checked_again_before_anything_else() {
    let rec = at(deploy_record("10s"), Stage::Routed, Some(OLD), true);
    let mut obs = Observed::default();
    assert_eq!(next(&rec, &obs), Some(Step::LocateNew));
    obs.new_addr = Some(Ok(addr(41000)));
    assert_eq!(next(&rec, &obs), Some(Step::CheckNew));
    // It died while the agent was down: switch back.
    let dead = Observed {
        new_addr: Some(Err("exited".into())),
        ..Default::default()
    };
    assert!(matches!(next(&rec, &dead), Some(Step::Restore { .. })));
}

#[test]
fn switching_back_to_a_previous_container_that_stopped_starts_and_checks_it_first() {
    let mut rec = at(deploy_record("10s"), Stage::RollingBack, Some(OLD), true);
    rec.view.error = Some("watch failed".into());
    let mut obs = Observed {
        restoring: true,
        previous_addr: Some(Err("exited".into())),
        ..Default::default()
    };
    let old = || OLD.to_string();
    assert_eq!(
        next(&rec, &obs),
        Some(Step::StartPrevious { container: old() })
    );
    // A successful start forgets the address (Docker picks a new port).
    obs.previous_started = Some(Ok(()));
    obs.previous_addr = None;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::LocatePrevious { container: old() })
    );
    obs.previous_addr = Some(Ok(addr(40123)));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::CheckPrevious { container: old() })
    );
    obs.previous_health = Some(Ok("fine".into()));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::RouteBack {
            container: old(),
            to: addr(40123)
        })
    );
    // And when that check fails, the record says so loudly.
    obs.previous_health = Some(Err("unhealthy".into()));
    let f = finished(next(&rec, &obs));
    assert_eq!(f.state, OperationState::Failed);
    assert!(f.phase.starts_with("FAILED"), "{}", f.phase);
}

#[test]
fn a_first_version_that_fails_its_watch_loses_its_route() {
    let mut rec = at(deploy_record("10s"), Stage::RollingBack, None, false);
    rec.view.error = Some("watch failed".into());
    let mut obs = Observed {
        restoring: true,
        ..Default::default()
    };
    assert_eq!(next(&rec, &obs), Some(Step::Unroute));
    obs.routed_back = Some(Ok(()));
    // Nothing to drain towards: log, remove, failed.
    assert_eq!(
        next(&rec, &obs),
        Some(Step::CaptureLog {
            container: NEW.into()
        })
    );
    obs.log_captured = true;
    obs.failed_cleared = true;
    assert_eq!(finished(next(&rec, &obs)).state, OperationState::Failed);
}

#[test]
fn a_failed_switch_back_is_reported_as_a_failure_that_needs_a_human() {
    let mut rec = at(deploy_record("10s"), Stage::RollingBack, Some(OLD), true);
    rec.view.error = Some("watch failed".into());
    let obs = Observed {
        restoring: true,
        previous_addr: Some(Ok(addr(40999))),
        routed_back: Some(Err("sluice-proxy: unreachable".into())),
        ..Default::default()
    };
    let f = finished(next(&rec, &obs));
    assert_eq!(f.state, OperationState::Failed);
    assert!(f.error.unwrap().contains("switching back failed too"));
}

#[test]
fn a_refused_switch_leaves_traffic_on_the_old_container() {
    let rec = at(deploy_record("10s"), Stage::Started, Some(OLD), true);
    let obs = Observed {
        new_addr: Some(Ok(addr(41000))),
        health: Some(Ok("fine".into())),
        routed: Some(Err("sluice-proxy: target_unreachable".into())),
        log_captured: true,
        ..Default::default()
    };
    assert_eq!(next(&rec, &obs), Some(Step::RemoveNew));
}

#[test]
fn a_rollback_starts_the_kept_container_checks_it_switches_then_stops_the_current_one() {
    for discard in [false, true] {
        let mut rec = rollback_record(discard);
        let mut obs = Observed::default();
        assert_eq!(next(&rec, &obs), Some(Step::ChoosePrevious));
        rec = at(rec, Stage::Switching, Some(OLD), true);
        obs.prepared = Some(Ok(()));
        assert_eq!(next(&rec, &obs), Some(Step::StartNew));
        obs.started = Some(Ok(()));
        rec.stage = Stage::Started;
        healthy_and_located(&rec, &mut obs, 41001);
        assert!(matches!(next(&rec, &obs), Some(Step::Route { .. })));
        obs.routed = Some(Ok(()));
        rec.stage = Stage::Routed;
        assert_eq!(
            next(&rec, &obs),
            Some(Step::Drain {
                container: OLD.into()
            })
        );
        obs.drained = true;
        // No watch and no prune for a rollback.
        assert_eq!(
            next(&rec, &obs),
            Some(Step::ClearOld {
                container: OLD.into(),
                remove: discard
            })
        );
        obs.old_cleared = Some(Ok(()));
        assert_eq!(finished(next(&rec, &obs)).state, OperationState::Succeeded);
    }
}

#[test]
fn a_rollback_to_an_unhealthy_container_stops_it_again_and_keeps_traffic() {
    let rec = at(rollback_record(false), Stage::Started, Some(OLD), true);
    let mut obs = Observed {
        new_addr: Some(Ok(addr(41001))),
        health: Some(Err("unhealthy".into())),
        ..Default::default()
    };
    assert_eq!(
        next(&rec, &obs),
        Some(Step::ClearFailed {
            container: NEW.into(),
            remove: false
        })
    );
    obs.failed_cleared = true;
    assert_eq!(finished(next(&rec, &obs)).state, OperationState::Failed);
}
