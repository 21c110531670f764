//! The canary plan, path by path (pure: no Docker, no proxy, no sockets, no sleeps).

use std::net::SocketAddr;

use serde_json::json;
use uuid::Uuid;

use super::plan::next;
use crate::record::{OpRecord, OpRequest, Stage};
use crate::runner::steps::{Observed, Step};
use crate::runner::testkit::*;

const NEW: &str = "new000000000";
const OLD: &str = "old000000000";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A canary deploy asking for `weight`, its new container started beside a running old
/// one (`previous`: whether there is one).
fn started(weight: u32, previous: bool) -> OpRecord {
    let extra = json!({"strategy": "canary", "min_healthy": "5s", "canary_weight": weight});
    let req = deploy_request("api", "app:v2", 3, docker_check(), extra);
    let mut rec = OpRecord::new(
        Uuid::new_v4(),
        OpRequest::Deploy(Box::new(req)),
        crate::now(),
    );
    rec.view.container = Some(NEW.into());
    rec.view.previous_container = previous.then(|| OLD.to_string());
    rec.previous_was_running = previous;
    rec.stage = Stage::Started;
    rec
}

fn healthy(obs: &mut Observed) {
    obs.new_addr = Some(Ok(addr(41000)));
    obs.health = Some(Ok("fine".into()));
}

fn weigh(weight: u32) -> Option<Step> {
    Some(Step::Weigh {
        container: NEW.into(),
        to: addr(41000),
        weight,
    })
}

#[test]
fn a_healthy_canary_gets_its_weight_then_holds_it() {
    let mut rec = started(10, true);
    assert_eq!(rec.canary_want, Some(10));
    let mut obs = Observed::default();
    assert_eq!(next(&rec, &obs), Some(Step::LocateNew));
    healthy(&mut obs);
    // Instead of blue_green's full switch: a split.
    assert_eq!(next(&rec, &obs), weigh(10));
    rec.stage = Stage::Canary;
    rec.view.canary_weight = Some(10);
    obs.weighed = Some(Ok(()));
    assert_eq!(next(&rec, &obs), Some(Step::Hold));
    // The coordinator asks for 50: held ends, the new weight is set.
    rec.canary_want = Some(50);
    assert_eq!(next(&rec, &obs), weigh(50));
    rec.view.canary_weight = Some(50);
    assert_eq!(next(&rec, &obs), Some(Step::Hold));
}

#[test]
fn at_100_it_finishes_as_blue_green_does() {
    let mut rec = started(10, true);
    rec.stage = Stage::Canary;
    rec.view.canary_weight = Some(10);
    rec.canary_want = Some(100);
    let mut obs = Observed::default();
    healthy(&mut obs);
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Route {
            container: NEW.into(),
            to: addr(41000)
        })
    );
    obs.routed = Some(Ok(()));
    rec.stage = Stage::Routed;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Drain {
            container: OLD.into()
        })
    );
    obs.drained = true;
    assert_eq!(next(&rec, &obs), Some(Step::Watch));
}

#[test]
fn a_failed_watch_or_an_abort_while_holding_goes_back_at_once() {
    let mut rec = started(10, true);
    rec.stage = Stage::Canary;
    rec.view.canary_weight = Some(10);
    let mut obs = Observed::default();
    healthy(&mut obs);
    obs.held = Some(Err("aborted by the coordinator: analysis failed".into()));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Restore {
            why: "aborted by the coordinator: analysis failed".into()
        })
    );
    // Restoring is blue_green's: traffic back to the old container, still running.
    rec.stage = Stage::RollingBack;
    obs.restoring = true;
    assert_eq!(
        next(&rec, &obs),
        Some(Step::LocatePrevious {
            container: OLD.into()
        })
    );
    obs.previous_addr = Some(Ok(addr(40000)));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::RouteBack {
            container: OLD.into(),
            to: addr(40000)
        })
    );
}

#[test]
fn after_an_agent_restart_it_finds_and_checks_the_new_container_before_holding() {
    let mut rec = started(10, true);
    rec.stage = Stage::Canary;
    rec.view.canary_weight = Some(10);
    let mut obs = Observed::default();
    assert_eq!(next(&rec, &obs), Some(Step::LocateNew));
    obs.new_addr = Some(Err("exited".into()));
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Restore {
            why: "the new container is exited".into()
        })
    );
    obs.new_addr = Some(Ok(addr(41000)));
    assert_eq!(next(&rec, &obs), Some(Step::CheckNew));
    obs.health = Some(Ok("fine".into()));
    // The proxy kept the weight: nothing to set, hold on.
    assert_eq!(next(&rec, &obs), Some(Step::Hold));
}

#[test]
fn a_first_version_has_nothing_to_share_traffic_with() {
    let rec = started(10, false);
    let mut obs = Observed::default();
    healthy(&mut obs);
    assert_eq!(
        next(&rec, &obs),
        Some(Step::Route {
            container: NEW.into(),
            to: addr(41000)
        })
    );
}

#[test]
fn a_rollback_of_a_canary_service_is_blue_greens() {
    let req = serde_json::from_value(json!({
        "fence": {"key": "service/api", "token": 3}, "service": "api",
        "health": {"kind": "tcp"}, "discard_replaced": false, "strategy": "canary",
    }))
    .unwrap();
    let rec = OpRecord::new(Uuid::new_v4(), OpRequest::Rollback(req), crate::now());
    assert_eq!(rec.canary_want, None);
    assert_eq!(
        next(&rec, &Observed::default()),
        crate::runner::blue_green::plan::next(&rec, &Observed::default())
    );
}
