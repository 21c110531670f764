//! Deploys through the real agent binary against the real Docker daemon.
//!
//! Each test uses its own service names (and an agent named like its first service), cleans
//! their containers up at the start and the end, and gets host ports from the OS, so the
//! tests run in parallel without colliding.

use serde_json::{json, Value};
use sluice_tests::agent_support::*;

#[tokio::test]
async fn fresh_deploy_serves_and_is_reported() {
    images();
    let _c = Cleanup::new(&["t-fresh"]);
    let agent = Agent::start("t-fresh", "").await;
    let port = free_port();
    let id = op_id();
    let accepted = agent
        .deploy(&id, &deploy_body("t-fresh", &image("v1"), port, 1))
        .await;
    assert_eq!(accepted["id"], id.as_str());
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_eq!(
        steps(&op),
        [
            "ensure image",
            "create container",
            "start new container",
            "health check",
            "prune old containers"
        ]
    );
    assert!(
        !op.to_string().contains("hunter2"),
        "secrets never come back"
    );
    assert_serving(port, "v1").await;

    let (s, status) = agent.get("/agent/v1/services/t-fresh").await;
    assert_eq!(s, 200);
    let cs = status["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["current"], true);
    assert_eq!(cs[0]["host_port"], port);
    assert_eq!(cs[0]["deployment"], id.as_str());
    let (_, list) = agent.get("/agent/v1/services").await;
    assert_eq!(list["services"][0]["service"], "t-fresh");

    // The port table knows the port is ours.
    let (_, probe) = agent.get(&format!("/agent/v1/ports/{port}")).await;
    assert_eq!(
        probe,
        json!({"port": port, "bound": true, "service": "t-fresh"})
    );
    // The image check sees the local image; a missing one is reported absent.
    let (_, img) = agent.get("/agent/v1/images/sluice-testapp:v1").await;
    assert_eq!(img["present"], true);
    let (_, img) = agent.get("/agent/v1/images/sluice-testapp:nope").await;
    assert_eq!(img["present"], false);
    let (_, f) = agent.get("/agent/v1/fence/service/t-fresh").await;
    assert_eq!(f["highest"], 1);

    // Removing the service is fenced and removes its containers.
    let r = agent
        .http
        .delete(agent.url("/agent/v1/services/t-fresh"))
        .json(&json!({"fence": {"key": "service/t-fresh", "token": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a stale token cannot remove");
    assert_eq!(containers_of("t-fresh").len(), 1);
    let r = agent
        .http
        .delete(agent.url("/agent/v1/services/t-fresh"))
        .json(&json!({"fence": {"key": "service/t-fresh", "token": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(containers_of("t-fresh").is_empty());
}

#[tokio::test]
async fn upgrade_keeps_the_port_and_rollback_is_reversible() {
    images();
    let _c = Cleanup::new(&["t-upgrade"]);
    let agent = Agent::start("t-upgrade", "").await;
    let port = free_port();
    let v1 = agent
        .deploy_and_wait(&op_id(), &deploy_body("t-upgrade", &image("v1"), port, 3))
        .await;
    assert_eq!(v1["state"], "succeeded");
    let v2 = agent
        .deploy_and_wait(&op_id(), &deploy_body("t-upgrade", &image("v2"), port, 4))
        .await;
    assert_eq!(v2["state"], "succeeded", "{v2:#}");
    assert!(steps(&v2).contains(&"stop previous container".to_string()));
    assert_eq!(v2["previous_container"], v1["container"]);
    assert_serving(port, "v2").await;
    let (_, status) = agent.get("/agent/v1/services/t-upgrade").await;
    let cs = status["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 2, "one previous container is kept: {status:#}");
    let prev = cs.iter().find(|c| c["previous"] == true).unwrap();
    assert_eq!(prev["id"], v1["container"]);

    // Roll back to v1, then roll the rollback back to v2.
    let health = json!({"kind": "http", "path": "/health", "interval": "100ms"});
    let rb = json!({"fence": {"key": "service/t-upgrade", "token": 5}, "service": "t-upgrade", "health": health});
    let id = op_id();
    let (s, _) = agent
        .put(&format!("/agent/v1/operations/{id}/rollback"), &rb)
        .await;
    assert_eq!(s, 202);
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_eq!(op["kind"], "rollback");
    assert_eq!(op["container"], v1["container"]);
    assert_serving(port, "v1").await;
    let id = op_id();
    agent
        .put(&format!("/agent/v1/operations/{id}/rollback"), &rb)
        .await;
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_eq!(op["container"], v2["container"]);
    assert_serving(port, "v2").await;
    assert_eq!(containers_of("t-upgrade").len(), 2);
}

#[tokio::test]
async fn broken_version_is_rolled_back_with_its_log() {
    images();
    let _c = Cleanup::new(&["t-broken"]);
    let agent = Agent::start("t-broken", "").await;
    let port = free_port();
    let v1 = agent
        .deploy_and_wait(&op_id(), &deploy_body("t-broken", &image("v1"), port, 1))
        .await;
    assert_eq!(v1["state"], "succeeded");
    let op = agent
        .deploy_and_wait(
            &op_id(),
            &deploy_body("t-broken", &image("broken"), port, 2),
        )
        .await;
    assert_eq!(op["state"], "rolled_back", "{op:#}");
    let log = op["log_tail"].as_str().unwrap();
    assert!(log.contains("health check failing on purpose"), "{log}");
    assert!(log.contains("testapp starting version=broken"), "{log}");
    assert!(op["error"].as_str().unwrap().contains("500"), "{op:#}");
    let names = steps(&op);
    for s in [
        "health check",
        "capture log of failed container",
        "remove failed container",
        "start previous container",
        "health check previous container",
    ] {
        assert!(names.contains(&s.to_string()), "{names:?}");
    }
    assert_serving(port, "v1").await;
    assert_eq!(
        containers_of("t-broken"),
        vec![v1["container"].as_str().unwrap().to_string()]
    );
}

#[tokio::test]
async fn a_container_that_exits_fails_fast_and_is_rolled_back() {
    images();
    let _c = Cleanup::new(&["t-crash"]);
    let agent = Agent::start("t-crash", "").await;
    let port = free_port();
    agent
        .deploy_and_wait(&op_id(), &deploy_body("t-crash", &image("v1"), port, 1))
        .await;
    let mut body = deploy_body("t-crash", &image("v2"), port, 2);
    body["env"] = json!({"TESTAPP_START_DELAY_MS": "60000", "TESTAPP_EXIT_AFTER_MS": "300"});
    body["health"] = json!({"kind": "tcp", "interval": "100ms", "retries": 1000});
    let op = agent.deploy_and_wait(&op_id(), &body).await;
    assert_eq!(op["state"], "rolled_back", "{op:#}");
    assert!(
        op["log_tail"]
            .as_str()
            .unwrap()
            .contains("exiting on purpose"),
        "{op:#}"
    );
    assert_serving(port, "v1").await;
}

#[tokio::test]
async fn docker_healthcheck_and_first_deploy_failure() {
    images();
    let _c = Cleanup::new(&["t-dockerhc"]);
    let agent = Agent::start("t-dockerhc", "").await;
    let port = free_port();
    let mut body = deploy_body("t-dockerhc", &image("hc"), port, 1);
    body["health"] = json!({"kind": "docker", "deadline": "30s"});
    let op = agent.deploy_and_wait(&op_id(), &body).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert!(
        op["phase"]
            .as_str()
            .unwrap()
            .contains("docker reports healthy"),
        "{op:#}"
    );
    // An image without HEALTHCHECK cannot pass a docker check; with no previous container
    // running... here there is one, so it is restored.
    let mut body = deploy_body("t-dockerhc", &image("v1"), port, 2);
    body["health"] = json!({"kind": "docker", "deadline": "30s"});
    let op = agent.deploy_and_wait(&op_id(), &body).await;
    assert_eq!(op["state"], "rolled_back", "{op:#}");
    assert!(op["error"].as_str().unwrap().contains("no HEALTHCHECK"));
    assert_serving(port, "hc").await;
}

#[tokio::test]
async fn first_deploy_that_fails_reports_failed() {
    images();
    let _c = Cleanup::new(&["t-firstfail"]);
    let agent = Agent::start("t-firstfail", "").await;
    let port = free_port();
    let op = agent
        .deploy_and_wait(
            &op_id(),
            &deploy_body("t-firstfail", &image("broken"), port, 1),
        )
        .await;
    assert_eq!(op["state"], "failed", "{op:#}");
    assert!(op["phase"]
        .as_str()
        .unwrap()
        .contains("no previous container"));
    assert!(containers_of("t-firstfail").is_empty());
    // A missing image with no registry to pull from fails before anything is touched.
    let op = agent
        .deploy_and_wait(
            &op_id(),
            &deploy_body("t-firstfail", "127.0.0.1:1/sluice-nope:v1", port, 2),
        )
        .await;
    assert_eq!(op["state"], "failed", "{op:#}");
    assert!(op["error"]
        .as_str()
        .unwrap()
        .contains("nothing was changed"));
}

#[tokio::test]
async fn stale_token_is_refused_and_nothing_is_touched() {
    images();
    let _c = Cleanup::new(&["t-stale"]);
    let agent = Agent::start("t-stale", "").await;
    let port = free_port();
    let op = agent
        .deploy_and_wait(&op_id(), &deploy_body("t-stale", &image("v1"), port, 10))
        .await;
    assert_eq!(op["state"], "succeeded");
    let before = containers_of("t-stale");
    let id = op_id();
    let (s, p) = agent
        .put(
            &format!("/agent/v1/operations/{id}"),
            &deploy_body("t-stale", &image("v2"), port, 9),
        )
        .await;
    assert_eq!(s, 409, "{p}");
    assert_eq!(p["code"], "stale_fencing_token");
    assert_eq!(p["highest"], 10);
    assert_eq!(p["offered"], 9);
    let (s, _) = agent.get(&format!("/agent/v1/operations/{id}")).await;
    assert_eq!(s, 404, "no operation was created");
    assert_eq!(
        containers_of("t-stale"),
        before,
        "no container was created or removed"
    );
    assert_serving(port, "v1").await;
    // The fence survives a restart.
    let mut agent = agent;
    agent.kill9();
    agent.spawn().await;
    let (s, p) = agent
        .put(
            &format!("/agent/v1/operations/{id}"),
            &deploy_body("t-stale", &image("v2"), port, 9),
        )
        .await;
    assert_eq!(
        (s, p["code"].clone()),
        (409, Value::from("stale_fencing_token"))
    );
    let (_, f) = agent.get("/agent/v1/fence/service/t-stale").await;
    assert_eq!(f["highest"], 10);
}

#[tokio::test]
async fn the_same_request_twice_runs_once() {
    images();
    let _c = Cleanup::new(&["t-idem"]);
    let agent = Agent::start("t-idem", "").await;
    let port = free_port();
    let id = op_id();
    let body = deploy_body("t-idem", &image("v1"), port, 1);
    let path = format!("/agent/v1/operations/{id}");
    let (a, b) = tokio::join!(agent.put(&path, &body), agent.put(&path, &body));
    assert_eq!(a.1["id"], b.1["id"]);
    assert_eq!(a.1["started_at"], b.1["started_at"]);
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "succeeded");
    // Again after it finished: the same, finished operation; still one container.
    let (s, again) = agent.put(&path, &body).await;
    assert_eq!(s, 200);
    assert_eq!(again, op);
    assert_eq!(containers_of("t-idem").len(), 1);
    // A re-fenced retry (a new leader resuming the deployment) is the same operation too.
    let mut refenced = body.clone();
    refenced["fence"]["token"] = json!(2);
    let (s, again) = agent.put(&path, &refenced).await;
    assert_eq!((s, again["id"].clone()), (200, Value::from(id.as_str())));
    // The same id with another body is refused.
    let mut other = body.clone();
    other["image"] = json!(image("v2"));
    other["fence"]["token"] = json!(2);
    let (s, p) = agent.put(&path, &other).await;
    assert_eq!(s, 422);
    assert_eq!(p["code"], "idempotency_key_reused");
    assert_eq!(containers_of("t-idem").len(), 1);
}

#[tokio::test]
async fn prune_never_touches_another_service() {
    images();
    let _c = Cleanup::new(&["t-prune", "t-prune-b"]);
    let agent = Agent::start("t-prune", "").await;
    let (pa, pb) = (free_port(), free_port());
    for (tag, token) in [("v1", 1), ("v2", 2)] {
        let op = agent
            .deploy_and_wait(&op_id(), &deploy_body("t-prune-b", &image(tag), pb, token))
            .await;
        assert_eq!(op["state"], "succeeded");
    }
    let b_before = containers_of("t-prune-b");
    assert_eq!(b_before.len(), 2);
    let mut last = Value::Null;
    for (tag, token) in [("v1", 1), ("v2", 2), ("v1", 3), ("v2", 4)] {
        last = agent
            .deploy_and_wait(&op_id(), &deploy_body("t-prune", &image(tag), pa, token))
            .await;
        assert_eq!(last["state"], "succeeded", "{last:#}");
    }
    let prune = last["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prune old containers")
        .unwrap();
    assert!(
        prune["detail"].as_str().unwrap().starts_with("removed "),
        "{prune}"
    );
    assert_eq!(containers_of("t-prune").len(), 2, "current + one previous");
    assert_eq!(
        containers_of("t-prune-b"),
        b_before,
        "the other service is untouched"
    );
    assert_serving(pa, "v2").await;
    assert_serving(pb, "v2").await;
}

/// Deploys v1, then starts a slow-starting v2 and waits until its health check is under way.
async fn interrupted_upgrade(agent: &Agent, service: &str, port: u16) -> (Value, String) {
    let v1 = agent
        .deploy_and_wait(&op_id(), &deploy_body(service, &image("v1"), port, 1))
        .await;
    assert_eq!(v1["state"], "succeeded");
    let mut body = deploy_body(service, &image("v2"), port, 2);
    body["env"] = json!({"TESTAPP_START_DELAY_MS": "2500"});
    body["health"] =
        json!({"kind": "http", "path": "/health", "interval": "100ms", "retries": 200});
    let id = op_id();
    agent.deploy(&id, &body).await;
    sluice_tests::eventually::eventually(
        "the health check to be under way",
        std::time::Duration::from_secs(20),
        || async {
            let (_, v) = agent.get(&format!("/agent/v1/operations/{id}")).await;
            if v["phase"]
                .as_str()
                .unwrap_or("")
                .starts_with("health check")
            {
                Ok(())
            } else {
                Err(v["phase"].to_string())
            }
        },
    )
    .await;
    (v1, id)
}

#[tokio::test]
async fn killed_mid_health_check_then_restarted_finishes_the_check() {
    images();
    let _c = Cleanup::new(&["t-kill"]);
    let mut agent = Agent::start("t-kill", "").await;
    let port = free_port();
    let (v1, id) = interrupted_upgrade(&agent, "t-kill", port).await;
    agent.kill9();
    agent.spawn().await;
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_eq!(op["resumed"], 1);
    assert_eq!(op["previous_container"], v1["container"]);
    let names = steps(&op);
    assert!(
        names.contains(&"agent restarted; reconciling with Docker".to_string()),
        "{names:?}"
    );
    let interrupted = op["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["detail"] == "interrupted by an agent restart")
        .expect("the interrupted step is marked");
    assert_eq!(interrupted["name"], "health check");
    assert_serving(port, "v2").await;
    assert_eq!(containers_of("t-kill").len(), 2);
}

#[tokio::test]
async fn killed_mid_health_check_and_new_container_died_restores_previous() {
    images();
    let _c = Cleanup::new(&["t-killdie"]);
    let mut agent = Agent::start("t-killdie", "").await;
    let port = free_port();
    let (v1, id) = interrupted_upgrade(&agent, "t-killdie", port).await;
    let (_, running) = agent.get(&format!("/agent/v1/operations/{id}")).await;
    agent.kill9();
    // While the agent is down, the new container dies.
    docker(&["stop", "-t", "0", running["container"].as_str().unwrap()]);
    agent.spawn().await;
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "rolled_back", "{op:#}");
    assert_eq!(op["resumed"], 1);
    assert!(
        op["error"]
            .as_str()
            .unwrap()
            .contains("found after an agent restart"),
        "{op:#}"
    );
    assert!(
        op["log_tail"].as_str().unwrap().contains("version=v2"),
        "{op:#}"
    );
    assert_serving(port, "v1").await;
    assert_eq!(
        containers_of("t-killdie"),
        vec![v1["container"].as_str().unwrap().to_string()]
    );
}

#[tokio::test]
async fn sigterm_mid_deploy_persists_the_operation_and_restart_resumes_it() {
    images();
    let _c = Cleanup::new(&["t-term"]);
    let mut agent = Agent::start("t-term", "").await;
    let port = free_port();
    let (_, id) = interrupted_upgrade(&agent, "t-term", port).await;
    let status = agent.terminate();
    assert!(status.success(), "graceful exit: {status:?}");
    agent.spawn().await;
    let op = agent.wait_final(&id).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_eq!(op["resumed"], 1);
    assert_serving(port, "v2").await;
}
