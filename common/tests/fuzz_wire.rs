//! Fuzzing the wire: every v1 API body and view, every agent API type, problem+json.
//!
//! Each type starts from a valid example (every optional field present) which the fuzzer
//! mutates a few nodes at a time: a value replaced by random JSON or by a value that is
//! valid somewhere else in the API (a duration where a name goes, a port out of range), a
//! field removed, an unknown or a real field name added. Most mutants stay close to valid,
//! so serde's checks are exercised one at a time instead of all failing at the first field.
//! Random JSON biased toward the real field names and raw bytes (random, and byte edits of
//! the examples) are thrown at every type too.
//!
//! What must hold: deserializing never panics; from text and from a `Value` agree; anything
//! accepted serializes, and that serialization deserializes to the same value and
//! serializes identically again.
//!
//! A bounded run is part of `cargo test`; `PROPTEST_CASES=100000 cargo test -p
//! sluice-common --test fuzz_wire --release` is the long run (see FUZZING.md).

use std::fmt::Debug;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use sluice_common::{agent_api, api, fence, problem};

/// `cases` unless `PROPTEST_CASES` asks for more (or fewer).
fn config(cases: u32) -> Config {
    let mut c = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// The round-trip contract. Returns whether `v` was accepted.
fn check<T>(v: &Value) -> Result<bool, TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let text = serde_json::to_vec(v).expect("a Value always serializes");
    let from_text = serde_json::from_slice::<T>(&text);
    let from_value = serde_json::from_value::<T>(v.clone());
    prop_assert_eq!(
        from_text.is_ok(),
        from_value.is_ok(),
        "text and Value disagree on {}: {:?} / {:?}",
        v,
        from_text.as_ref().err().map(ToString::to_string),
        from_value.as_ref().err().map(ToString::to_string)
    );
    let Ok(t) = from_text else {
        return Ok(false);
    };
    prop_assert_eq!(&from_value.unwrap(), &t);
    round_trip(&t)?;
    Ok(true)
}

fn round_trip<T>(t: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let out = serde_json::to_value(t);
    prop_assert!(out.is_ok(), "{:?} does not serialize: {:?}", t, out.err());
    let out = out.unwrap();
    let back = serde_json::from_value::<T>(out.clone());
    prop_assert!(
        back.is_ok(),
        "{} (serialized {:?}) is refused: {}",
        out,
        t,
        back.unwrap_err()
    );
    let back = back.unwrap();
    prop_assert_eq!(&back, t, "{}", out);
    prop_assert_eq!(serde_json::to_value(&back).unwrap(), out);
    Ok(())
}

/// Bytes: never panic; accepted bytes round-trip. Returns whether they were accepted.
fn check_bytes<T>(b: &[u8]) -> Result<bool, TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match serde_json::from_slice::<T>(b) {
        Ok(t) => {
            round_trip(&t)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// One wire type: its name, a valid example, and the contract instantiated for it.
struct Wire {
    name: &'static str,
    example: fn() -> Value,
    check: fn(&Value) -> Result<bool, TestCaseError>,
    check_bytes: fn(&[u8]) -> Result<bool, TestCaseError>,
}

macro_rules! wire {
    ($t:ty, $example:expr) => {
        Wire {
            name: stringify!($t),
            example: || $example,
            check: check::<$t>,
            check_bytes: check_bytes::<$t>,
        }
    };
}

const ID: &str = "0191d2a0-7c4e-7b3a-9f1e-2d3c4b5a6978";
const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const AT: &str = "2025-11-25T10:30:00.123Z";

fn health_http() -> Value {
    json!({"kind": "http", "path": "/healthz", "timeout": "2s", "interval": "1s",
           "retries": 10, "start_period": "0s"})
}

fn fence_claim() -> Value {
    json!({"key": "service/api", "token": 17})
}

fn lock_view() -> Value {
    json!({"key": "service/api", "holder": "ci job #1", "reason": "deploy", "token": 17,
           "acquired_at": AT, "expires_at": "2025-11-25T10:31:00.123Z"})
}

fn server_ports_view() -> Value {
    json!({"server": "web-1", "range": "20000-32000", "used": 2, "free": 11999,
           "assignments": {"api": 20000}, "host_bound": [20001]})
}

fn server_step_view() -> Value {
    json!({"server": "web-1", "port": 20000, "state": "rolling_back", "operation": ID,
           "rollback_operation": ID, "detail": "health check 3/10", "log_tail": "boom"})
}

fn deployment_view() -> Value {
    json!({"id": ID, "service": "api", "image": "localhost:5000/api:v2", "state": "in_progress", "sub_state": "running",
           "phase": "deploying", "token": 17, "targets": ["web-1"],
           "transitions": [{"from": "pending", "to": "validating", "at": AT, "reason": "lock"}],
           "validation": [{"check": "image_exists", "server": "web-1", "ok": true,
                           "detail": "present", "duration_ms": 3}],
           "servers": [server_step_view()], "failure": null, "noop": false,
           "rollback_requested": false, "cancel_requested": false,
           "env": {"PLAIN": "shown", "TOKEN": "<redacted>"}, "actor": "ci",
           "created_at": AT, "updated_at": AT})
}

fn service_view() -> Value {
    json!({"service": "api", "servers": [{"server": "web-1", "image": "api:v1", "port": 20000,
           "deployment": ID, "agent_up": true}], "active_deployment": ID})
}

fn container_view() -> Value {
    json!({"id": "c0ffee", "image": "api:v1", "deployment": ID, "state": "running",
           "current": true, "previous": false, "host_port": 20000, "exit_code": 137})
}

fn operation_view() -> Value {
    json!({"id": ID, "kind": "deploy", "service": "api", "image": format!("api@{SHA}"),
           "state": "rolled_back", "phase": "restored", "steps": [{"name": "pull image",
           "started_at": AT, "finished_at": AT, "ok": false, "detail": "denied"}],
           "log_tail": "panic", "error": "unhealthy", "fence": fence_claim(),
           "started_at": AT, "finished_at": AT, "container": "c1",
           "previous_container": "c0", "resumed": 1})
}

/// Every wire type, with an example that has each optional field present.
fn wires() -> Vec<Wire> {
    vec![
        // v1 request bodies
        wire!(
            api::AcquireLockRequest,
            json!({"holder": "ci job #1", "reason": "migrate", "ttl": "30s", "wait": "5s"})
        ),
        wire!(api::RenewLockRequest, json!({"token": 17, "ttl": "1m"})),
        wire!(api::AllocatePortRequest, json!({"port": 20001})),
        wire!(
            api::PutServerRequest,
            json!({"agent_addr": "10.0.0.1:7443", "labels": ["env=prod", "zone=a"],
                   "port_range": "20000-32000", "forbidden": true})
        ),
        wire!(api::SetLabelsRequest, json!({"labels": ["env=prod"]})),
        wire!(
            api::AddMemberRequest,
            json!({"id": 2, "addr": "127.0.0.1:7001", "voter": false})
        ),
        wire!(
            api::EnvVar,
            json!({"value": "postgres://x", "secret": true})
        ),
        wire!(api::HealthCheck, health_http()),
        wire!(
            api::HealthCheck,
            json!({"kind": "tcp", "timeout": "2s", "interval": "1s", "retries": 3,
                   "start_period": "10s"})
        ),
        wire!(
            api::HealthCheck,
            json!({"kind": "docker", "deadline": "1m"})
        ),
        wire!(api::HealthCheck, json!({"kind": "none"})),
        wire!(
            api::CreateDeploymentRequest,
            json!({"service": "api", "image": "localhost:5000/api:v2", "servers": ["web-1"],
                   "selector": ["env=prod"], "container_port": 8080, "port": 20000,
                   "env": {"DATABASE_URL": {"value": "postgres://x", "secret": true},
                           "PLAIN": {"value": "1"}},
                   "health": health_http(), "strategy": "recreate", "lock_wait": "30s",
                   "max_parallel": 2, "progress_deadline": "10m", "allow_labels": ["env=prod"]})
        ),
        wire!(api::Policy, json!({"protected_labels": ["env=prod"]})),
        // v1 views (the CLI parses these)
        wire!(api::LockView, lock_view()),
        wire!(api::LockList, json!({"locks": [lock_view()]})),
        wire!(
            api::PortAllocationView,
            json!({"server": "web-1", "service": "api", "port": 20000, "newly_allocated": true})
        ),
        wire!(api::ServerPortsView, server_ports_view()),
        wire!(api::PortsList, json!({"servers": [server_ports_view()]})),
        wire!(
            api::ServerView,
            json!({"name": "web-1", "agent_addr": "10.0.0.1:7443", "labels": ["env=prod"],
                   "port_range": "100-200", "forbidden": false, "up": true,
                   "last_heartbeat_ms": 1200, "docker_version": "27.0", "agent_version": "0.1.0",
                   "ports_used": 1, "ports_free": 100})
        ),
        wire!(
            api::ClusterStatus,
            json!({"node_id": 1, "state": "leader", "leader": 1, "term": 3, "last_log_index": 9,
                   "committed": 9, "applied": 9, "snapshot": 5, "purged": 4,
                   "members": [{"id": 1, "addr": "127.0.0.1:7001", "voter": true}]})
        ),
        wire!(
            api::TransitionView,
            json!({"from": "failed", "to": "rolled_back", "at": AT, "reason": "restored"})
        ),
        wire!(
            api::CheckResult,
            json!({"check": "port_available", "server": "web-1", "ok": false,
                   "detail": "taken", "duration_ms": 1})
        ),
        wire!(api::ServerStepView, server_step_view()),
        wire!(api::DeploymentView, deployment_view()),
        wire!(
            api::DeploymentList,
            json!({"deployments": [deployment_view()], "next": "5"})
        ),
        wire!(api::ServiceView, service_view()),
        // agent API
        wire!(fence::FenceClaim, fence_claim()),
        wire!(
            agent_api::Limits,
            json!({"memory_bytes": 1_073_741_824u64, "millicpus": 500})
        ),
        wire!(
            agent_api::DeployRequest,
            json!({"fence": fence_claim(), "service": "api", "image": "api:v2",
                   "container_port": 8080, "host_port": 20000, "env": {"A": "1"},
                   "health": health_http(), "previous_health": {"kind": "none"},
                   "deadline": "10m", "limits": {"memory_bytes": 1024, "millicpus": 250},
                   "privileged": true, "network_mode": "host", "pid_mode": "host",
                   "cap_add": ["NET_ADMIN"], "mounts": ["data:/var/lib/data:ro"]})
        ),
        wire!(
            agent_api::RemoveServiceRequest,
            json!({"fence": fence_claim()})
        ),
        wire!(
            agent_api::RemovedService,
            json!({"service": "api", "removed": ["c0", "c1"]})
        ),
        wire!(
            agent_api::ImageCheck,
            json!({"image": "api:v2", "present": true, "id": "sha"})
        ),
        wire!(
            agent_api::FenceView,
            json!({"key": "service/api", "highest": 17})
        ),
        wire!(
            agent_api::ServiceList,
            json!({"services": [{"service": "api", "containers": [container_view()]}]})
        ),
        wire!(
            agent_api::RollbackRequest,
            json!({"fence": fence_claim(), "service": "api", "health": {"kind": "tcp"},
                   "discard_replaced": true})
        ),
        wire!(
            agent_api::AbortRequest,
            json!({"fence": fence_claim(), "reason": "the progress deadline passed"})
        ),
        wire!(
            agent_api::StepView,
            json!({"name": "health check", "started_at": AT, "finished_at": null, "ok": null,
                   "detail": ""})
        ),
        wire!(agent_api::OperationView, operation_view()),
        wire!(
            agent_api::PortProbe,
            json!({"port": 20000, "bound": true, "service": "api"})
        ),
        wire!(
            agent_api::AgentHealth,
            json!({"server": "web-1", "docker_reachable": false, "docker_version": "27.0",
                   "docker_error": "connection refused"})
        ),
        wire!(agent_api::ContainerView, container_view()),
        wire!(
            agent_api::ServiceStatus,
            json!({"service": "api", "containers": [container_view()]})
        ),
        wire!(
            agent_api::AgentRegistration,
            json!({"server": "web-1", "agent_addr": "10.0.0.1:7443", "labels": ["env=prod"],
                   "port_range": "20000-32000", "docker_version": "27.0",
                   "agent_version": "0.1.0", "bound_ports": [20001]})
        ),
        wire!(
            agent_api::AgentHeartbeat,
            json!({"server": "web-1", "docker_reachable": true, "bound_ports": [20000, 20001],
                   "containers_running": 2})
        ),
        // problem+json, parsed by the CLI and by the coordinator from agents
        wire!(
            problem::Problem,
            json!({"type": "urn:sluice:problem:lock_held", "title": "Lock held", "status": 409,
                   "detail": "held by ci", "instance": "/v1/locks/service/api",
                   "code": "lock_held", "errors": [{"field": "/ttl", "message": "bad"}],
                   "holder": "ci", "expires_at": AT, "nested": {"a": [1, 2.5, null]}})
        ),
    ]
}

// ------------------------------------------------------------------ random JSON

/// Every field name of the wire types (and a few near misses), so random objects hit the
/// real fields instead of being refused as unknown at once.
const FIELDS: &[&str] = &[
    "holder",
    "reason",
    "ttl",
    "wait",
    "token",
    "port",
    "agent_addr",
    "labels",
    "port_range",
    "forbidden",
    "id",
    "addr",
    "voter",
    "value",
    "secret",
    "kind",
    "path",
    "timeout",
    "interval",
    "retries",
    "start_period",
    "deadline",
    "service",
    "image",
    "servers",
    "selector",
    "container_port",
    "env",
    "health",
    "strategy",
    "lock_wait",
    "max_parallel",
    "progress_deadline",
    "allow_labels",
    "protected_labels",
    "fence",
    "key",
    "host_port",
    "limits",
    "memory_bytes",
    "millicpus",
    "privileged",
    "network_mode",
    "pid_mode",
    "cap_add",
    "mounts",
    "removed",
    "present",
    "highest",
    "services",
    "containers",
    "state",
    "phase",
    "steps",
    "log_tail",
    "error",
    "started_at",
    "finished_at",
    "container",
    "previous_container",
    "resumed",
    "bound",
    "docker_reachable",
    "docker_version",
    "docker_error",
    "current",
    "previous",
    "exit_code",
    "server",
    "agent_version",
    "bound_ports",
    "containers_running",
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "code",
    "errors",
    "field",
    "message",
    "name",
    "ok",
    "from",
    "to",
    "at",
    "check",
    "duration_ms",
    "targets",
    "transitions",
    "validation",
    "failure",
    "noop",
    "actor",
    "created_at",
    "updated_at",
    "deployments",
    "next",
    "locks",
    "range",
    "used",
    "free",
    "assignments",
    "host_bound",
    "newly_allocated",
    "members",
    "node_id",
    "leader",
    "term",
    "DATABASE_URL",
    "tll",
    "Holder",
    "",
    "kind ",
    "\u{0}",
];

/// Strings that are valid somewhere in the API, and some that almost are.
const STRINGS: &[&str] = &[
    "api",
    "web-1",
    "API",
    "",
    " ",
    "30s",
    "0s",
    "1h30m",
    "31d",
    "30",
    "nginx",
    "api:v2",
    "localhost:5000/team/api:v1",
    "a.éa",
    "service/api",
    "a//b",
    "env=prod",
    "zone=a",
    "a=b",
    "env",
    "20000-32000",
    "100-102",
    "0-1",
    "10-1",
    "http",
    "tcp",
    "docker",
    "none",
    "ftp",
    "recreate",
    AT,
    "9999-12-31T23:59:59.999Z",
    "2025-02-30T00:00:00Z",
    ID,
    "not-a-uuid",
    "running",
    "succeeded",
    "rolled_back",
    "failed",
    "deploy",
    "rollback",
    "pending",
    "in_progress",
    "validating",
    "success",
    "restored_by_agent",
    "lock_held",
    "invalid_request",
    "DATABASE_URL",
    "/healthz",
    "host",
    "é",
    "\u{0}",
    "🦀",
];

/// A string from the pool, or one from a small grammar of the API's value kinds.
fn some_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(str::to_string),
        "[0-9]{1,3}(ms|s|m|h|d)",
        "[a-z][a-z0-9-]{0,8}",
        "[a-z]{1,5}=[a-z]{1,5}",
        "[a-z]{1,5}(/[a-z]{1,5}){0,2}(:[a-z0-9.]{1,5})?",
    ]
}

fn interesting_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(
            &[
                0i64,
                1,
                -1,
                2,
                17,
                80,
                8080,
                20000,
                65535,
                65536,
                4_294_967_295,
                4_294_967_296,
                i64::MIN,
                i64::MAX
            ][..]
        )
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(&[0.0f64, -0.0, 0.5, 1.0, 8080.0, 1e300, -1e-300][..])
            .prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        interesting_number(),
        some_string().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        // A valid example of some wire type, so nested fields can be whole valid objects.
        (0..wires().len()).prop_map(|i| (wires()[i].example)()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS).prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
    ]
}

/// Random JSON, biased toward the API's field names and values.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

// ------------------------------------------------------------------ structural mutation

/// One mutation: which node (`at`, modulo the node count), what to do, with what.
#[derive(Debug, Clone)]
struct Mutation {
    at: usize,
    kind: u8,
    key: String,
    payload: Value,
    string: String,
    number: Value,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        any::<usize>(),
        // Mostly same-type replacements (kind 1), which keep the shape.
        prop_oneof![3 => Just(1u8), 5 => 0u8..6],
        key(),
        any_json(),
        some_string(),
        interesting_number(),
    )
        .prop_map(|(at, kind, key, payload, string, number)| Mutation {
            at,
            kind,
            key,
            payload,
            string,
            number,
        })
}

/// JSON pointers of every node of `v`, root first.
fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{here}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(x, format!("{here}/{k}"), out);
            }
        }
        _ => {}
    }
}

fn mutate(v: &mut Value, m: &Mutation) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let node = v
        .pointer_mut(&all[m.at % all.len()])
        .expect("pointer just computed");
    if m.kind == 1 {
        // Same JSON type, another value: often valid, often only just not.
        let same = match &*node {
            Value::String(_) => Some(Value::from(m.string.clone())),
            Value::Number(_) => Some(m.number.clone()),
            Value::Bool(b) => Some(Value::Bool(!b)),
            _ => None,
        };
        if let Some(x) = same {
            *node = x;
            return;
        }
    }
    match (m.kind, node) {
        (0 | 1, node) => *node = m.payload.clone(),
        (2, Value::Object(o)) if !o.is_empty() => {
            let k = o.keys().nth(m.at % o.len()).cloned().expect("non-empty");
            o.remove(&k);
        }
        (2, Value::Array(a)) if !a.is_empty() => {
            a.remove(m.at % a.len());
        }
        (3, Value::Object(o)) => {
            o.insert(m.key.clone(), m.payload.clone());
        }
        (3 | 4, Value::Array(a)) => {
            let x = a.first().cloned().unwrap_or_else(|| m.payload.clone());
            a.push(x);
        }
        (4, Value::Object(o)) if !o.is_empty() => {
            // Move a value to another real field name: a valid value in the wrong place.
            let k = o.keys().nth(m.at % o.len()).cloned().expect("non-empty");
            let x = o.remove(&k).expect("present");
            o.insert(m.key.clone(), x);
        }
        (_, node) => *node = Value::Null,
    }
}

/// Byte edits of a text: flip, delete, insert a JSON-significant byte, truncate.
fn edit_bytes(b: &mut Vec<u8>, edits: &[(usize, u8, u8)]) {
    const SIGNIFICANT: &[u8] = b"\"\\{}[],:0-e.u \xff\xc3\xa9nt";
    for &(at, kind, byte) in edits {
        let i = if b.is_empty() { 0 } else { at % b.len() };
        match kind % 5 {
            0 if !b.is_empty() => b[i] ^= 1 << (byte % 8),
            1 if !b.is_empty() => {
                b.remove(i);
            }
            2 => b.insert(i, SIGNIFICANT[usize::from(byte) % SIGNIFICANT.len()]),
            3 => b.truncate(i),
            _ => b.insert(i, byte),
        }
    }
}

// ------------------------------------------------------------------ properties

/// The examples themselves are valid, or the mutation fuzzing would start from nothing.
#[test]
fn examples_are_valid() {
    for w in wires() {
        let v = (w.example)();
        let ok = (w.check)(&v).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        assert!(ok, "{}'s example is refused: {v}", w.name);
    }
}

/// Every request body, of either API.
const REQUESTS: &[&str] = &[
    "api::AcquireLockRequest",
    "api::RenewLockRequest",
    "api::AllocatePortRequest",
    "api::PutServerRequest",
    "api::SetLabelsRequest",
    "api::AddMemberRequest",
    "api::EnvVar",
    "api::HealthCheck",
    "api::CreateDeploymentRequest",
    "api::Policy",
    "fence::FenceClaim",
    "agent_api::Limits",
    "agent_api::DeployRequest",
    "agent_api::RemoveServiceRequest",
    "agent_api::RollbackRequest",
    "agent_api::AbortRequest",
    "agent_api::AgentRegistration",
    "agent_api::AgentHeartbeat",
];

/// A request body refuses an unknown field in any object at any depth (a typo in a
/// nested `health` must not be silently ignored): each object of each request example,
/// one at a time, gets a field no type has, and every one of them is refused.
#[test]
fn requests_refuse_unknown_fields_at_every_depth() {
    let wires = wires();
    for name in REQUESTS {
        assert!(
            wires.iter().any(|w| w.name == *name),
            "{name} is not a wire type"
        );
    }
    for w in wires.iter().filter(|w| REQUESTS.contains(&w.name)) {
        let example = (w.example)();
        let mut all = Vec::new();
        pointers(&example, String::new(), &mut all);
        let mut objects = 0;
        for at in &all {
            let mut v = example.clone();
            let Some(Value::Object(o)) = v.pointer_mut(at) else {
                continue;
            };
            objects += 1;
            // Not a valid map key either (env names, say), so maps refuse it too.
            o.insert("colour-unknown!".into(), json!("red"));
            let accepted = (w.check)(&v).unwrap_or_else(|e| panic!("{}: {e}", w.name));
            assert!(
                !accepted,
                "{} accepted an unknown field at {at:?}: {v}",
                w.name
            );
        }
        assert!(objects > 0, "{} has no object to test", w.name);
    }
}

/// Mutants stay close enough to valid that each type accepts a fair share of them: the
/// fuzzer goes deep instead of bouncing off the first field.
#[test]
fn mutants_go_deep() {
    let wires = wires();
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(mutation(), 1..3);
    for w in &wires {
        let mut accepted = 0;
        for _ in 0..100 {
            let ms = strategy.new_tree(&mut runner).unwrap().current();
            let mut v = (w.example)();
            for m in &ms {
                mutate(&mut v, m);
            }
            accepted += usize::from((w.check)(&v).unwrap());
        }
        eprintln!("{:>32}: {accepted}/100 mutants accepted", w.name);
        // A one-field example (`{"kind": "none"}`) has nothing to mutate that stays valid.
        let fields = (w.example)().as_object().map_or(2, |o| o.len());
        assert!(
            accepted >= 2 || fields < 2,
            "{}: only {accepted}/100 mutants accepted",
            w.name
        );
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// Valid examples with a few structural mutations.
    #[test]
    fn mutated_examples(which in any::<prop::sample::Index>(), ms in prop::collection::vec(mutation(), 1..5)) {
        let wires = wires();
        let w = &wires[which.index(wires.len())];
        let mut v = (w.example)();
        for m in &ms {
            mutate(&mut v, m);
        }
        (w.check)(&v)?;
    }

    /// Byte edits of the examples' text: a truncated string, a stray quote, bad UTF-8.
    #[test]
    fn edited_bytes(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let wires = wires();
        let w = &wires[which.index(wires.len())];
        let mut b = serde_json::to_vec(&(w.example)()).unwrap();
        edit_bytes(&mut b, &edits);
        (w.check_bytes)(&b)?;
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// Random JSON biased toward the real names, against every type.
    #[test]
    fn random_json_every_type(v in any_json()) {
        for w in wires() {
            (w.check)(&v)?;
        }
    }

    /// Random bytes against every type.
    #[test]
    fn random_bytes_every_type(b in prop::collection::vec(any::<u8>(), 0..64)) {
        for w in wires() {
            (w.check_bytes)(&b)?;
        }
    }
}

// ------------------------------------------------------------------ regressions found by the suites above
