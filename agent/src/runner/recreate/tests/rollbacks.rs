//! Rollbacks: the kept previous container back, and back again.

use super::*;

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
