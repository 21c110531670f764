//! `POST /v1/deployments/plan` end to end (issue 20): a real coordinator, a real agent with
//! its `sluice-proxy`, the real Docker daemon. A plan runs the checks and shows per server
//! what would change while touching nothing — no Docker event, no audit record, no port —
//! and its index makes `check_index` refuse a deployment planned before another one.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_common::api::PlanAction;
use sluice_common::deployment::DeploymentState;
use sluice_common::names::ServerName;
use sluice_tests::cluster::refusal;

use support::proxied::*;

/// Now as Docker's `--since` reads it: seconds with a fraction (to the nanosecond, so the
/// events of a deployment that settled within the same second are not counted).
fn unix_now() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// Docker events of the service's containers between `since` and now.
fn docker_events(service: &str, since: String) -> String {
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since,
            "--until",
            &until.to_string(),
            "--filter",
            &format!("label=sluice.service={service}"),
            "--format",
            "{{.Type}} {{.Action}}",
        ])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_shows_the_changes_touches_nothing_and_its_index_guards_the_deploy() {
    let env = Env::start(&["plan1"], "plan-api").await;
    let server = ServerName::parse("plan1").unwrap();
    let api = env.api();

    // Nothing runs yet: a create, valid, at index 0, and nothing was touched.
    let audit_before = api.audit_export().await.unwrap().lines().count();
    let since = unix_now();
    let env_v1 = json!({"env": {"GREETING": {"value": "hello"}, "TOKEN": {"value": "pl4n-s3cret", "secret": true}}});
    let plan = api
        .plan_deployment(&env.request("v1", env_v1.clone()))
        .await
        .unwrap();
    assert!(plan.valid, "{plan:?}");
    assert!(plan.changes);
    assert_eq!(plan.index, 0);
    assert_eq!(plan.servers.len(), 1);
    assert_eq!(plan.servers[0].action, PlanAction::Create);
    assert!(
        plan.validation
            .iter()
            .any(|c| c.check == "port_available" && c.ok),
        "{:?}",
        plan.validation
    );
    assert!(!serde_json::to_string(&plan)
        .unwrap()
        .contains("pl4n-s3cret"));
    let ports = api.server_ports(&server).await.unwrap();
    assert!(
        ports.assignments.is_empty(),
        "a plan allocates no port: {ports:?}"
    );
    assert_eq!(
        api.audit_export().await.unwrap().lines().count(),
        audit_before,
        "a plan writes no audit record (no Raft entry)"
    );
    assert_eq!(
        docker_events("plan-api", since),
        "",
        "a plan touches no container"
    );

    // Deployed with the plan's index.
    let mut req = env.request("v1", env_v1.clone());
    req.check_index = Some(plan.index);
    let created = api.create_deployment(&req, None).await.unwrap();
    let d = env.settled(&created.deployment.id.to_string()).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");

    // The same request again: no change. Another: each change by name, values hidden.
    let same = api
        .plan_deployment(&env.request("v1", env_v1.clone()))
        .await
        .unwrap();
    assert!(same.valid && !same.changes, "{same:?}");
    assert_eq!(same.servers[0].action, PlanAction::None);
    assert!(same.index > 0);
    let since = unix_now();
    let audit_before = api.audit_export().await.unwrap().lines().count();
    let next = env.request(
        "v2",
        json!({"env": {"TOKEN": {"value": "an0ther-s3cret", "secret": true}, "NEW": {"value": "x"}},
               "spec": {"resources": {"memory": "64m"}}}),
    );
    let plan = api.plan_deployment(&next).await.unwrap();
    let s = &plan.servers[0];
    assert_eq!(s.action, PlanAction::Update);
    assert_eq!(
        s.image.as_ref().unwrap().to.as_ref().unwrap().to_string(),
        sluice_tests::testapp_image::image("v2")
    );
    let names = |v: &Vec<sluice_common::names::EnvName>| {
        v.iter().map(|n| n.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names(&s.env.added), ["NEW"]);
    assert_eq!(names(&s.env.removed), ["GREETING"]);
    assert_eq!(names(&s.env.changed), ["TOKEN"]);
    assert_eq!(s.spec, ["resources"]);
    let text = serde_json::to_string(&plan).unwrap();
    assert!(
        !text.contains("s3cret") && !text.contains("hello"),
        "{text}"
    );
    assert_eq!(
        api.audit_export().await.unwrap().lines().count(),
        audit_before
    );
    assert_eq!(
        docker_events("plan-api", since),
        "",
        "a plan touches no container"
    );

    // A deployment accepted after the plan: the planned one is refused by its index.
    let d = env.deploy("v2", json!({})).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");
    let mut stale = next.clone();
    stale.check_index = Some(plan.index);
    let (status, p) = refusal(api.create_deployment(&stale, None).await);
    assert_eq!((status, p.code.as_str()), (409, "service_changed"), "{p:?}");
    // Re-planned, it goes through.
    let fresh = api.plan_deployment(&next).await.unwrap();
    assert!(fresh.index > plan.index);
    stale.check_index = Some(fresh.index);
    let created = api.create_deployment(&stale, None).await.unwrap();
    let d = env.settled(&created.deployment.id.to_string()).await;
    assert_eq!(d.state, DeploymentState::Success, "{d:?}");

    // A plan of what a policy forbids is invalid, and says why.
    let bad = env.request("v2", json!({"spec": {"privileged": true}}));
    let plan = api.plan_deployment(&bad).await.unwrap();
    assert!(!plan.valid, "{plan:?}");
    assert!(plan
        .validation
        .iter()
        .any(|c| c.check == "container_policy" && !c.ok && c.detail.contains("spec.privileged")));
}
