//! Deploys, from first to failed, over the in-memory runtime.

use super::*;

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
async fn shutdown_leaves_the_operation_to_resume_and_the_next_start_finishes_it() {
    let k = Kit::new();
    k.rt.add_image("app:v1");
    k.rt.health_of("app:v1", "healthy");
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
    assert!(k.rt.changes().is_empty());
    // The next process resumes it.
    let next = Kit {
        env: crate::runner::exec::Env {
            cancel: tokio_util::sync::CancellationToken::new(),
            ..k.env.clone()
        },
        ..k
    };
    next.resume(&cell).await;
    let v = cell.view();
    assert_eq!(v.state, OperationState::Succeeded, "{v:?}");
    assert_eq!(v.steps[0].name, "ensure image");
    assert_eq!(v.steps[0].detail, "interrupted by an agent restart");
    assert_eq!(v.resumed, 1);
}
