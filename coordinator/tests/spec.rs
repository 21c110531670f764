//! The container spec end to end (issue 20): a real coordinator, a real agent with its
//! `sluice-proxy`, the real Docker daemon. What the spec asks reaches the container
//! (`docker inspect`), a spec-only change is a real deployment, and what the server's
//! policy forbids fails validation beside every other failed check, touching nothing.

mod support;

use serde_json::{json, Value};
use sluice_common::deployment::DeploymentState;
use sluice_tests::cluster::refusal;

use support::proxied::*;

const NET: &str = "sluice-spec-test-net";
const VOLUME: &str = "sluice-spec-test-data";

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker inspect` of the running container deployment `id` created.
fn running_container_of(id: &str) -> Value {
    let f = format!("label=sluice.deployment={id}");
    let ids = docker(&["ps", "-q", "--no-trunc", "--filter", &f]);
    let first = ids
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no running container of {id}"));
    serde_json::from_str::<Value>(&docker(&["inspect", first])).expect("JSON")[0].clone()
}

fn spec(memory: &str) -> Value {
    json!({
        "command": ["--spec-test"], "working_dir": "/work", "user": "1000:1000",
        "volumes": [format!("{VOLUME}:/data")], "tmpfs": ["/scratch:size=16m"],
        "resources": {"memory": memory, "memory_reservation": "32m", "cpus": 0.5, "pids_limit": 100},
        "restart": "on-failure:3",
        "networks": [{"name": NET, "aliases": ["spec-api"]}],
        "labels": {"com.example.team": "web"}, "stop_signal": "SIGQUIT", "stop_grace": "3s",
        "log": {"driver": "json-file", "options": {"max-size": "1m"}}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_fields_reach_the_container_and_a_spec_only_change_redeploys() {
    let env = Env::start(&["spec1"], "spec-api").await;
    let d = env.deploy("v1", json!({"spec": spec("64m")})).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    assert!(!d.noop);
    let shown = env.api().deployment(&d.id.to_string()).await.unwrap();
    assert_eq!(
        serde_json::to_value(&shown.spec).unwrap(),
        spec("64m"),
        "GET shows the spec"
    );
    let check = d.validation.iter().find(|c| c.check == "container_policy");
    assert!(check.is_some_and(|c| c.ok), "{:?}", d.validation);

    let c = running_container_of(&d.id.to_string());
    let (cfg, host) = (&c["Config"], &c["HostConfig"]);
    assert_eq!(cfg["Cmd"], json!(["--spec-test"]));
    assert_eq!(cfg["WorkingDir"], "/work");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["StopSignal"], "SIGQUIT");
    assert_eq!(cfg["StopTimeout"], 3);
    assert_eq!(cfg["Labels"]["com.example.team"], "web");
    assert_eq!(cfg["Labels"]["sluice.service"], "spec-api");
    assert_eq!(host["Memory"], 64 << 20);
    assert_eq!(host["MemoryReservation"], 32 << 20);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["PidsLimit"], 100);
    assert_eq!(
        host["RestartPolicy"],
        json!({"Name": "on-failure", "MaximumRetryCount": 3})
    );
    assert_eq!(host["Tmpfs"], json!({"/scratch": "size=16m"}));
    assert_eq!(
        host["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-file": "3", "max-size": "1m"}})
    );
    let mounts = c["Mounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["Type"] == "volume" && m["Name"] == VOLUME && m["Destination"] == "/data"),
        "{mounts:?}"
    );
    let net = &c["NetworkSettings"]["Networks"][NET];
    assert!(
        net["Aliases"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("spec-api"))),
        "{:#}",
        c["NetworkSettings"]
    );

    // The same image with another spec is a real deployment; the same spec again is not.
    let d2 = env.deploy("v1", json!({"spec": spec("96m")})).await;
    assert_eq!(d2.state, DeploymentState::Success, "{d2:?}");
    assert!(!d2.noop, "a spec-only change redeploys");
    assert_eq!(
        running_container_of(&d2.id.to_string())["HostConfig"]["Memory"],
        96 << 20
    );
    let d3 = env.deploy("v1", json!({"spec": spec("96m")})).await;
    assert!(d3.noop, "the same image and spec again is a no-op: {d3:?}");

    drop(env);
    docker(&["network", "rm", NET]);
    docker(&["volume", "rm", VOLUME]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_violation_fails_validation_with_every_other_failure_and_touches_nothing() {
    let env = Env::start(&["spec2"], "spec-deny").await;
    // Rules the schema cannot state are a 400 naming each field.
    let bad = env.request(
        "v1",
        json!({"spec": {"resources": {"memory": "64m", "memory_reservation": "128m"},
                        "volumes": ["a:/data", "b:/data"]}}),
    );
    let (status, p) = refusal(env.api().create_deployment(&bad, None).await);
    assert_eq!((status, p.code.as_str()), (400, "invalid_request"), "{p:?}");
    let fields: Vec<&str> = p.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.resources.memory_reservation", "spec.volumes.1"]
    );

    // A host bind and a privileged container on a server whose policy forbids both, and an
    // image that does not exist: every failure at once.
    let d = env
        .deploy(
            "does-not-exist",
            json!({"spec": {"privileged": true, "volumes": ["/etc:/host-etc:ro"]}}),
        )
        .await;
    assert_eq!(d.state, DeploymentState::Failed, "{d:?}");
    let failed: Vec<(&str, &str)> = d
        .validation
        .iter()
        .filter(|c| !c.ok)
        .map(|c| (c.check.as_str(), c.detail.as_str()))
        .collect();
    let names: Vec<&str> = failed.iter().map(|(c, _)| *c).collect();
    assert!(names.contains(&"image_exists"), "{failed:?}");
    let policy = failed
        .iter()
        .find(|(c, _)| *c == "container_policy")
        .unwrap_or_else(|| panic!("no container_policy failure: {failed:?}"));
    assert!(
        policy.1.contains("spec.privileged") && policy.1.contains("spec.volumes.0"),
        "{policy:?}"
    );
    assert!(d.servers.iter().all(|s| s.operation.is_none()), "{d:?}");
    let f = "label=sluice.service=spec-deny";
    assert_eq!(
        docker(&["ps", "-aq", "--filter", f]),
        "",
        "no container was created"
    );
}
