use serde_json::json;

use super::*;

fn req(extra: serde_json::Value) -> CreateDeploymentRequest {
    let mut v = json!({
        "service": "web", "image": "web:v1", "servers": ["a"], "container_port": 8080,
        "health": {"kind": "tcp"},
        "env": {"A": {"value": "1"}, "B": {"value": "s3cret", "secret": true}}
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn server() -> ServerName {
    ServerName::parse("a").unwrap()
}

fn running(r: &CreateDeploymentRequest, port: u16) -> Running<'_> {
    Running {
        image: &r.image,
        port,
        request: r,
    }
}

#[test]
fn nothing_running_is_a_create_listing_every_name() {
    let next = req(json!({"spec": {"command": ["x"]}}));
    let p = diff_server(&server(), None, &next, Some(20000));
    assert_eq!(p.action, PlanAction::Create);
    assert_eq!(p.image.unwrap().to.unwrap().to_string(), "web:v1");
    assert_eq!(p.port.unwrap().to, Some(20000));
    assert_eq!(p.env.added.len(), 2);
    assert_eq!(p.spec, ["command"]);
}

#[test]
fn the_same_request_changes_nothing() {
    let now = req(json!({}));
    let p = diff_server(&server(), Some(running(&now, 20000)), &now, Some(20000));
    assert_eq!(p.action, PlanAction::None);
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!({"server": "a", "action": "none"})
    );
}

#[test]
fn each_change_is_named_and_values_never_shown() {
    let now = req(json!({"spec": {"resources": {"memory": "64m"}}}));
    let next = req(json!({
        "image": "web:v2",
        "env": {"A": {"value": "2"}, "C": {"value": "new"}, "B": {"value": "other-s3cret", "secret": true}},
        "spec": {"resources": {"memory": "96m"}, "restart": "always"},
        "health": {"kind": "http", "path": "/health"}
    }));
    let p = diff_server(&server(), Some(running(&now, 20000)), &next, Some(20001));
    assert_eq!(p.action, PlanAction::Update);
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v,
        json!({
            "server": "a", "action": "update",
            "image": {"from": "web:v1", "to": "web:v2"},
            "port": {"from": 20000, "to": 20001},
            "env": {"added": ["C"], "removed": [], "changed": ["A", "B"]},
            "spec": ["resources", "restart"],
            "settings": ["health"]
        })
    );
    let text = v.to_string();
    assert!(
        !text.contains("s3cret") && !text.contains("\"new\""),
        "{text}"
    );
}

#[test]
fn a_spec_or_env_change_alone_is_an_update_and_health_alone_is_not() {
    let now = req(json!({}));
    let spec = req(json!({"spec": {"stop_grace": "5s"}}));
    let p = diff_server(&server(), Some(running(&now, 1)), &spec, None);
    assert_eq!(
        (p.action, p.spec.clone()),
        (PlanAction::Update, vec!["stop_grace".to_string()])
    );
    let removed = req(json!({"env": {"A": {"value": "1"}}}));
    let p = diff_server(&server(), Some(running(&now, 1)), &removed, None);
    assert_eq!(p.action, PlanAction::Update);
    assert_eq!(p.env.removed, [EnvName::parse("B").unwrap()]);
    let health = req(json!({"health": {"kind": "none"}}));
    let p = diff_server(&server(), Some(running(&now, 1)), &health, None);
    assert_eq!(
        (p.action, p.settings),
        (PlanAction::None, vec!["health".to_string()])
    );
}
