use super::*;
use crate::time::DurationSpec;

#[test]
fn unknown_fields_are_refused() {
    let e =
        serde_json::from_str::<AcquireLockRequest>(r#"{"holder":"ci","tll":"5s"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `tll`"), "{e}");
}

#[test]
fn lock_request_defaults() {
    let r: AcquireLockRequest = serde_json::from_str(r#"{"holder":"ci-1"}"#).unwrap();
    assert_eq!(r.ttl, DurationSpec::secs(60));
    assert_eq!(r.wait, None);
}

#[test]
fn deployment_request_validates_every_field() {
    let ok = r#"{
        "service": "api", "image": "localhost:5000/api:v2", "servers": ["web-1"],
        "container_port": 8080,
        "env": {"DATABASE_URL": {"value": "postgres://x", "secret": true}},
        "health": {"kind": "http", "path": "/healthz"}
    }"#;
    let r: CreateDeploymentRequest = serde_json::from_str(ok).unwrap();
    assert_eq!(r.strategy, Strategy::BlueGreen);
    match r.health {
        HealthCheck::Http { retries, .. } => assert_eq!(retries, 10),
        other => panic!("{other:?}"),
    }
    for (bad, needle) in [
        (ok.replace("\"api\"", "\"API\""), "service name"),
        (ok.replace("v2\"", "v2 \""), "image reference"),
        (ok.replace("8080", "0"), "port"),
        (
            ok.replace("DATABASE_URL", "DATABASE-URL"),
            "environment variable",
        ),
        (ok.replace("\"http\"", "\"ftp\""), "unknown variant"),
    ] {
        let e = serde_json::from_str::<CreateDeploymentRequest>(&bad).unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}
