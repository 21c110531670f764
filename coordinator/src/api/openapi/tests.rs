//! The generated document against the router and the wire types.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Value};
use sluice_common::api::*;
use sluice_common::deployment::DeploymentState;
use sluice_common::locks::{FencingToken, Lease, LockError};
use sluice_common::names::{Holder, LockKey, ServerName, ServiceName};
use sluice_common::ports::{PortError, PortRange};
use sluice_common::problem::{ErrorCode, Problem};
use sluice_common::time::Timestamp;

use super::document_json;
use crate::api::error::ApiError;
use sluice_common::api::TokenRole;

use sluice_tests::openapi::{collect_refs, misfits, resolve, METHODS};

pub(super) fn doc() -> Value {
    serde_json::from_str(document_json()).expect("the document is JSON")
}

#[test]
fn document_is_openapi_3_1_shaped() {
    let d = doc();
    assert!(d["openapi"].as_str().unwrap().starts_with("3.1."));
    assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
    let schemes = d["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["mutualTLS"]["type"], "mutualTLS");
    let paths = d["paths"].as_object().unwrap();
    let mut ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let declared: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success response"
            );
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()));
            let params: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(params, declared, "path parameters of {method} {path}");
            if let Some(sec) = op.get("security") {
                for req in sec.as_array().unwrap() {
                    for name in req.as_object().unwrap().keys() {
                        assert!(schemes.contains_key(name), "{name}");
                    }
                }
            }
        }
    }
    // No `null` where the specification wants a value (an absent member is absent).
    fn no_nulls(v: &Value, at: &str) {
        match v {
            Value::Null => panic!("null at {at}"),
            Value::Object(m) => {
                for (k, x) in m {
                    if !matches!(
                        k.as_str(),
                        "default" | "example" | "examples" | "enum" | "const"
                    ) {
                        no_nulls(x, &format!("{at}/{k}"));
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| no_nulls(x, at)),
            _ => {}
        }
    }
    no_nulls(&d, "");
    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(&d, &mut refs);
    assert!(refs.len() > 100, "{}", refs.len());
    for r in refs {
        assert!(resolve(&d, &r).is_some(), "dangling $ref {r}");
    }
}

/// The routes come from the router's own registrations (`super::documented`, which
/// takes only `routes!` entries, each a handler's `#[utoipa::path]`): the served document
/// lists exactly those (method, path) pairs, every operation names the path's parameters
/// (`document_is_openapi_3_1_shaped`), and `coordinator/tests/openapi.rs` calls each of
/// them on a running coordinator to see that the router serves it.
#[test]
fn document_lists_exactly_the_routes_of_the_router() {
    let (_, registered) = crate::api::documented().into_parts();
    let mut routes = BTreeSet::new();
    for (path, item) in &registered.paths.paths {
        let path = path.replace("{*", "{");
        for (method, op) in [
            ("get", &item.get),
            ("put", &item.put),
            ("post", &item.post),
            ("delete", &item.delete),
            ("patch", &item.patch),
            ("head", &item.head),
            ("options", &item.options),
            ("trace", &item.trace),
        ] {
            if op.is_some() {
                routes.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert_eq!(routes.len(), 48, "{routes:?}");
    assert_eq!(sluice_tests::openapi::documented_routes(&doc()), routes);
}

pub(super) fn assert_fits(schema: &str, v: &impl Serialize) {
    let d = doc();
    let v = serde_json::to_value(v).unwrap();
    let mut out = Vec::new();
    let s = json!({ "$ref": format!("#/components/schemas/{schema}") });
    misfits(&d, &s, &v, schema, &mut out);
    assert!(
        out.is_empty(),
        "{schema} does not describe {v}:\n{}",
        out.join("\n")
    );
}

fn assert_misfits(schema: &str, v: Value) {
    let d = doc();
    let mut out = Vec::new();
    let s = json!({ "$ref": format!("#/components/schemas/{schema}") });
    misfits(&d, &s, &v, schema, &mut out);
    assert!(!out.is_empty(), "{schema} should refuse {v}");
}

pub(super) fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

pub(super) fn lease() -> Lease {
    Lease {
        key: LockKey::parse("service/web").unwrap(),
        holder: Holder::parse("ci-4711").unwrap(),
        reason: "deploy".into(),
        token: FencingToken(17),
        acquired_at: ts("2026-11-25T10:30:00.000Z"),
        expires_at: ts("2026-11-25T10:31:00.000Z"),
    }
}

/// The README's deploy (`sluice deploy --service web --image registry.example.com/web:1.4.2
/// --selector env=prod --allow-label env=prod --container-port 8080 --health /health`)
/// as the JSON the CLI sends, plus every optional field.
const README_DEPLOY: &str = r#"{
    "service": "web", "image": "registry.example.com/web:1.4.2",
    "selector": ["env=prod"], "allow_labels": ["env=prod"], "container_port": 8080,
    "env": {"DATABASE_URL": {"value": "postgres://x", "secret": true}},
    "health": {"kind": "http", "path": "/health"}
}"#;

#[test]
fn request_schemas_describe_what_serde_accepts_and_emits() {
    let d = doc();
    let input: Value = serde_json::from_str(README_DEPLOY).unwrap();
    let mut out = Vec::new();
    let s = json!({"$ref": "#/components/schemas/CreateDeploymentRequest"});
    misfits(&d, &s, &input, "input", &mut out);
    assert!(out.is_empty(), "{out:?}");
    let req: CreateDeploymentRequest = serde_json::from_str(README_DEPLOY).unwrap();
    assert_fits("CreateDeploymentRequest", &req);
    let mut full = req.clone();
    full.port = Some(sluice_common::ports::Port::new(20001).unwrap());
    full.lock_wait = Some(sluice_common::time::DurationSpec::secs(30));
    full.max_parallel = Some(2);
    full.progress_deadline = Some(sluice_common::time::DurationSpec::secs(600));
    full.servers = vec![ServerName::parse("web-1").unwrap()];
    assert_fits("CreateDeploymentRequest", &full);
    for h in [
        json!({"kind": "http", "path": "/h"}),
        json!({"kind": "tcp"}),
        json!({"kind": "docker"}),
        json!({"kind": "none"}),
    ] {
        let h: HealthCheck = serde_json::from_value(h).unwrap();
        assert_fits("HealthCheck", &h);
    }
    assert_misfits("HealthCheck", json!({"kind": "ftp"}));
    assert_misfits("HealthCheck", json!({"kind": "tcp", "path": "/"}));
    assert_misfits("CreateDeploymentRequest", json!({"service": "web"}));

    let acquire: AcquireLockRequest = serde_json::from_str(r#"{"holder":"ci"}"#).unwrap();
    assert_fits("AcquireLockRequest", &acquire);
    let renew: RenewLockRequest = serde_json::from_str(r#"{"token":3}"#).unwrap();
    assert_fits("RenewLockRequest", &renew);
    assert_fits("AllocatePortRequest", &AllocatePortRequest::default());
    let put: PutServerRequest =
        serde_json::from_str(r#"{"agent_addr":"10.0.0.1:7100","labels":["env=prod"]}"#).unwrap();
    assert_fits("PutServerRequest", &put);
    let labels: SetLabelsRequest = serde_json::from_str(r#"{"labels":[]}"#).unwrap();
    assert_fits("SetLabelsRequest", &labels);
    let add: AddMemberRequest = serde_json::from_str(r#"{"id":2,"addr":"10.0.0.2:7000"}"#).unwrap();
    assert_fits("AddMemberRequest", &add);
    assert_fits("Policy", &Policy::default());
    let reg: sluice_common::agent_api::AgentRegistration = serde_json::from_value(json!({
        "server": "web-1", "agent_addr": "10.0.0.1:7100", "port_range": "20000-32000",
        "agent_version": "0.1.0", "docker_version": "27.0"
    }))
    .unwrap();
    assert_fits("AgentRegistration", &reg);
    let hb: sluice_common::agent_api::AgentHeartbeat = serde_json::from_value(json!({
        "server": "web-1", "docker_reachable": true, "bound_ports": [22], "containers_running": 1
    }))
    .unwrap();
    assert_fits("AgentHeartbeat", &hb);
}

#[test]
fn problem_schema_describes_the_problems_the_api_sends() {
    let problems = [
        ApiError::from(LockError::Held {
            lease: Box::new(lease()),
        }),
        ApiError::from(LockError::TokenMismatch {
            key: LockKey::parse("a").unwrap(),
            offered: FencingToken(1),
            current: FencingToken(2),
        }),
        ApiError::from(PortError::Exhausted {
            server: ServerName::parse("web-1").unwrap(),
            range: PortRange::parse("20000-20001").unwrap(),
        }),
        ApiError::from(ServiceName::parse("API").unwrap_err()),
        ApiError::from(
            Problem::new(ErrorCode::Unavailable, "timed out")
                .with_extension("outcome_unknown", true),
        ),
        ApiError::from(
            Problem::new(ErrorCode::IdempotencyKeyReused, "reused")
                .with_extension("deployment", uuid::Uuid::new_v4()),
        ),
        ApiError::from(Problem::new(ErrorCode::NotFound, "no route for /x").with_instance("/x")),
        ApiError::new(ErrorCode::Internal, ""),
    ];
    for p in problems {
        assert_fits("Problem", &*p.0);
    }
    assert_misfits("Problem", json!({"type": "x", "title": "t", "status": 400}));
}

fn doc_enum(d: &Value, schema: &str) -> Vec<Value> {
    d["components"]["schemas"][schema]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema} has no enum"))
        .clone()
}

#[test]
fn enums_match_the_rust_types() {
    let d = doc();
    // `ErrorCode::ALL` comes from the same table as the enum: it lists every variant.
    let codes: Vec<ErrorCode> = doc_enum(&d, "ErrorCode")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(codes, ErrorCode::ALL, "every ErrorCode is documented");

    fn same<T: Serialize + serde::de::DeserializeOwned>(d: &Value, schema: &str, all: &[T]) {
        let documented = doc_enum(d, schema);
        let rust: Vec<Value> = all
            .iter()
            .map(|v| serde_json::to_value(v).unwrap())
            .collect();
        assert_eq!(documented, rust, "{schema}");
        for v in documented {
            serde_json::from_value::<T>(v).unwrap();
        }
    }
    same(&d, "DeploymentState", &DeploymentState::ALL);
    same(
        &d,
        "ServerStepState",
        &[
            ServerStepState::Pending,
            ServerStepState::Deploying,
            ServerStepState::Succeeded,
            ServerStepState::RestoredByAgent,
            ServerStepState::Failed,
            ServerStepState::RollingBack,
            ServerStepState::RolledBack,
            ServerStepState::RollbackFailed,
        ],
    );
    same(
        &d,
        "TokenRole",
        &[TokenRole::Viewer, TokenRole::Deployer, TokenRole::Admin],
    );
    same(
        &d,
        "Strategy",
        &[Strategy::Recreate, Strategy::BlueGreen, Strategy::Canary],
    );
}

/// The agent's (hand-written) document and this generated one describe the wire types they
/// share with the same shape: the same properties, the same required ones, the same enum
/// values. (Descriptions and stated constraints may differ in wording.)
#[test]
fn the_agents_shared_schemas_have_the_coordinators_shape() {
    let ours = doc();
    let agent: Value = serde_json::from_str(include_str!("../../../../agent/src/openapi.json"))
        .expect("the agent's document is JSON");
    let shape = |s: &Value| {
        let keys = |v: &Value| -> Vec<String> {
            v.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut required: Vec<String> = s["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        required.sort();
        (keys(&s["properties"]), required, s["enum"].clone())
    };
    let mut shared = 0;
    for (name, schema) in agent["components"]["schemas"].as_object().unwrap() {
        if let Some(other) = ours["components"]["schemas"].get(name) {
            assert_eq!(
                shape(schema),
                shape(other),
                "schema {name}: the agent's document and the coordinator's disagree on its shape"
            );
            shared += 1;
        }
    }
    assert!(shared >= 10, "only {shared} shared schemas");
}
