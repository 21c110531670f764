//! Operations resumed after an agent restart, at each persisted stage.

use super::*;

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
