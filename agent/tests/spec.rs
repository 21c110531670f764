//! The container spec at the agent: a field its policy forbids is refused whatever the
//! coordinator says, and what it allows reaches the container (the real agent binary, the
//! real Docker daemon).

use serde_json::{json, Value};
use sluice_tests::agent_support::*;

fn inspect(id: &str) -> Value {
    let text = docker(&["inspect", id]);
    serde_json::from_str::<Value>(&text).expect("docker inspect is JSON")[0].clone()
}

#[tokio::test]
async fn a_forbidden_spec_field_sent_directly_is_refused_by_the_agent() {
    images();
    let _c = Cleanup::new(&["t-spec-deny"]);
    let agent = Agent::start("t-spec-deny", "").await;
    let (s, h) = agent.get("/agent/v1/health").await;
    assert_eq!(s, 200);
    assert_eq!(
        h["policy"],
        json!({"allow_privileged": false, "allow_host_network": false, "allow_host_pid": false,
               "allow_cap_add": false, "allow_host_mounts": false}),
        "the agent reports its policy"
    );
    let port = free_port();
    let id = op_id();
    let body = with(
        deploy_body("t-spec-deny", &image("v1"), port, 1),
        json!({"spec": {"privileged": true, "network_mode": "host", "cap_add": ["NET_ADMIN"],
                        "volumes": ["data:/data", "/etc:/host-etc:ro"]}}),
    );
    let (s, p) = agent
        .put(&format!("/agent/v1/operations/{id}"), &body)
        .await;
    assert_eq!(s, 403, "{p}");
    assert_eq!(p["code"], "forbidden", "{p}");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.privileged",
            "spec.network_mode",
            "spec.cap_add",
            "spec.volumes.1"
        ],
        "{p}"
    );
    let (s, _) = agent.get(&format!("/agent/v1/operations/{id}")).await;
    assert_eq!(s, 404, "no operation was created");
    assert!(
        containers_of("t-spec-deny").is_empty(),
        "nothing was created"
    );

    // A spec that breaks a rule its types cannot state is a 400 naming the field; one with
    // a reserved label does not even parse.
    let bad = with(
        deploy_body("t-spec-deny", &image("v1"), port, 1),
        json!({"spec": {"resources": {"memory": "1m"}}}),
    );
    let (s, p) = agent.put(&format!("/agent/v1/operations/{id}"), &bad).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("invalid_request")),
        "{p}"
    );
    assert_eq!(p["errors"][0]["field"], "spec.resources.memory", "{p}");
    let reserved = with(
        deploy_body("t-spec-deny", &image("v1"), port, 1),
        json!({"spec": {"labels": {"sluice.service": "other"}}}),
    );
    let (s, p) = agent
        .put(&format!("/agent/v1/operations/{id}"), &reserved)
        .await;
    assert_eq!(s, 400, "{p}");
    assert!(p.to_string().contains("reserved"), "{p}");
    assert!(
        containers_of("t-spec-deny").is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn what_the_policy_allows_reaches_the_container() {
    images();
    let _c = Cleanup::new(&["t-spec-allow"]);
    let agent = Agent::start("t-spec-allow", "[policy]\nallow_host_mounts = true\n").await;
    let port = free_port();
    let host_dir = tempfile::tempdir().unwrap();
    let bind = format!("{}:/host-dir:ro", host_dir.path().display());
    let body = with(
        deploy_body("t-spec-allow", &image("v1"), port, 1),
        json!({"spec": {"volumes": [bind], "resources": {"memory": "48m"},
                        "command": ["--ignored-arg"], "stop_grace": "2s"}}),
    );
    let op = agent.deploy_and_wait(&op_id(), &body).await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    assert_serving(port, "v1").await;
    let ids = containers_of("t-spec-allow");
    assert_eq!(ids.len(), 1);
    let c = inspect(&ids[0]);
    assert_eq!(c["HostConfig"]["Binds"], json!([bind]), "{c:#}");
    assert_eq!(c["HostConfig"]["Memory"], 48 << 20);
    assert_eq!(c["Config"]["Cmd"], json!(["--ignored-arg"]));
    assert_eq!(c["Config"]["StopTimeout"], 2);
    assert_eq!(
        c["HostConfig"]["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}),
        "log rotation is bounded by default"
    );
}
