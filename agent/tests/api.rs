//! The agent API's edges through the real binary: bad input, policy, port probes, config
//! errors, Docker being unreachable, registration and heartbeats, shutdown.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::tls::{serve_tls, ClientAuth, PeerIdentity, Role, ServerTls, TlsMaterial};
use sluice_tests::agent_support::*;
use sluice_tests::eventually::eventually;

/// method, path, content type, body, expected status, code, and first invalid field.
type Case<'a> = (
    reqwest::Method,
    String,
    Option<&'a str>,
    Vec<u8>,
    u16,
    &'a str,
    Option<&'a str>,
);

async fn raw(
    agent: &Agent,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Value) {
    // A fresh connection per case: the server closes one whose body it refused unread (413).
    let http = coordinator_client();
    let mut r = http.request(method, agent.url(path)).body(body);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_inputs_are_4xx_problems_with_stable_codes() {
    let agent = Agent::start("t-badinput", "").await;
    let id = op_id();
    let op = format!("/agent/v1/operations/{id}");
    let good = deploy_body("t-badinput", "sluice-testapp:v1", 20001, 1);
    let json = Some("application/json");
    let put = reqwest::Method::PUT;
    let get = reqwest::Method::GET;

    let cases: Vec<Case> = vec![
        (
            put.clone(),
            op.clone(),
            Some("text/plain"),
            good.to_string().into_bytes(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            put.clone(),
            op.clone(),
            None,
            good.to_string().into_bytes(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            put.clone(),
            op.clone(),
            json,
            b"{not json".to_vec(),
            400,
            "invalid_request",
            Some("body"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"privileged": "yes"}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("privileged"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"colour": "red"}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("colour"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"service": "Bad_Name"}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"image": "UPPER:case"}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("image"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"env": {"1BAD": "x"}}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("env.1BAD"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"host_port": 0}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("host_port"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(
                good.clone(),
                json!({"health": {"kind": "http", "path": "health"}}),
            )
            .to_string()
            .into_bytes(),
            400,
            "invalid_request",
            Some("health/path"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            with(good.clone(), json!({"network_mode": "container:abc"}))
                .to_string()
                .into_bytes(),
            400,
            "invalid_request",
            Some("network_mode"),
        ),
        (
            put.clone(),
            "/agent/v1/operations/not-a-uuid".into(),
            json,
            good.to_string().into_bytes(),
            400,
            "invalid_request",
            Some("id"),
        ),
        (
            put.clone(),
            op.clone(),
            json,
            vec![b' '; 2 * 1024 * 1024],
            413,
            "payload_too_large",
            None,
        ),
        (
            get.clone(),
            format!("{op}?wait=30"),
            None,
            vec![],
            400,
            "invalid_request",
            Some("wait"),
        ),
        (
            get.clone(),
            format!("{op}?colour=red"),
            None,
            vec![],
            400,
            "invalid_request",
            Some("colour"),
        ),
        (
            get.clone(),
            op.clone(),
            None,
            vec![],
            404,
            "not_found",
            None,
        ),
        (
            get.clone(),
            "/agent/v1/services/Bad_Name".into(),
            None,
            vec![],
            400,
            "invalid_request",
            Some("service"),
        ),
        (
            get.clone(),
            "/agent/v1/services/t-badinput".into(),
            None,
            vec![],
            404,
            "not_found",
            None,
        ),
        (
            get.clone(),
            "/agent/v1/ports/70000".into(),
            None,
            vec![],
            400,
            "invalid_request",
            Some("port"),
        ),
        (
            get.clone(),
            "/agent/v1/images/NOT:valid:".into(),
            None,
            vec![],
            400,
            "invalid_request",
            Some("image"),
        ),
        (
            get.clone(),
            "/agent/v1/fence/a//b".into(),
            None,
            vec![],
            400,
            "invalid_request",
            Some("key"),
        ),
        (
            get.clone(),
            "/agent/v1/nothing".into(),
            None,
            vec![],
            404,
            "not_found",
            None,
        ),
        (
            reqwest::Method::POST,
            "/agent/v1/health".into(),
            None,
            vec![],
            405,
            "method_not_allowed",
            None,
        ),
        (
            reqwest::Method::DELETE,
            "/agent/v1/services/t-badinput".into(),
            json,
            b"{}".to_vec(),
            400,
            "invalid_request",
            Some("fence"),
        ),
    ];
    for (method, path, ct, body, status, code, field) in cases {
        let what = format!("{method} {path} ({ct:?})");
        let (s, got_ct, p) = raw(&agent, method, &path, ct, body).await;
        assert_eq!(s, status, "{what}: {p}");
        assert_eq!(got_ct, "application/problem+json", "{what}");
        assert_eq!(p["code"], code, "{what}: {p}");
        assert_eq!(p["status"], status, "{what}");
        assert_eq!(p["type"], format!("urn:sluice:problem:{code}"), "{what}");
        if let Some(f) = field {
            assert_eq!(p["errors"][0]["field"], f, "{what}: {p}");
        }
    }
    // A port outside the configured range.
    let narrow = Agent::start("t-badinput2", "port_range = \"20000-20010\"").await;
    let (s, p) = narrow
        .put(
            &op,
            &deploy_body("t-badinput", "sluice-testapp:v1", 30000, 1),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].clone()),
        (400, json!("host_port"))
    );
}

#[tokio::test]
async fn policy_violations_are_refused_and_nothing_is_touched() {
    let _c = Cleanup::new(&["t-policy"]);
    let agent = Agent::start("t-policy", "").await;
    let base = deploy_body("t-policy", "sluice-testapp:v1", free_port(), 1);
    for (extra, field) in [
        (json!({"privileged": true}), "privileged"),
        (json!({"network_mode": "host"}), "network_mode"),
        (json!({"pid_mode": "host"}), "pid_mode"),
        (json!({"cap_add": ["SYS_ADMIN"]}), "cap_add"),
        (json!({"mounts": ["/etc:/host-etc:ro"]}), "mounts/0"),
    ] {
        let id = op_id();
        let (s, p) = agent
            .put(
                &format!("/agent/v1/operations/{id}"),
                &with(base.clone(), extra),
            )
            .await;
        assert_eq!(s, 403, "{p}");
        assert_eq!(p["code"], "forbidden");
        assert_eq!(p["errors"][0]["field"], field);
        assert!(p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("policy.allow_"));
        let (s, _) = agent.get(&format!("/agent/v1/operations/{id}")).await;
        assert_eq!(s, 404);
    }
    assert!(containers_of("t-policy").is_empty());
    let (_, f) = agent.get("/agent/v1/fence/service/t-policy").await;
    assert_eq!(
        f["highest"],
        Value::Null,
        "a refused request does not move the fence"
    );

    // Allowed by config, the same request runs (a named volume needs no permission at all).
    images();
    let open = Agent::start("t-policy", "[policy]\nallow_cap_add = true").await;
    let op = open
        .deploy_and_wait(
            &op_id(),
            &with(
                base.clone(),
                json!({
                    "cap_add": ["NET_ADMIN"],
                    "mounts": ["t-policy-data:/data"],
                    "limits": {"memory_bytes": 67108864, "millicpus": 500}
                }),
            ),
        )
        .await;
    assert_eq!(op["state"], "succeeded", "{op:#}");
    let caps = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.CapAdd}}",
        op["container"].as_str().unwrap(),
    ]);
    assert!(caps.contains("NET_ADMIN"), "{caps}");
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}",
        op["container"].as_str().unwrap(),
    ]);
    assert_eq!(limits, "67108864 500000000 unless-stopped");
    cleanup(&["t-policy"]);
    let _ = Command::new("docker")
        .args(["volume", "rm", "t-policy-data"])
        .output();
}

#[tokio::test]
async fn a_port_held_by_a_foreign_process_is_reported_bound() {
    let agent = Agent::start("t-ports", "").await;
    let foreign = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = foreign.local_addr().unwrap().port();
    let (s, p) = agent.get(&format!("/agent/v1/ports/{port}")).await;
    assert_eq!(s, 200);
    assert_eq!(p, json!({"port": port, "bound": true, "service": null}));
    drop(foreign);
    let (_, p) = agent.get(&format!("/agent/v1/ports/{port}")).await;
    assert_eq!(p["bound"], false);
    // A foreign process bound on every address blocks the host address too.
    let any = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = any.local_addr().unwrap().port();
    let (_, p) = agent.get(&format!("/agent/v1/ports/{port}")).await;
    assert_eq!(p["bound"], true);
}

#[test]
fn a_bad_config_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sluice-agent");
    let cfg = dir.path().join("agent.toml");
    for text in [
        "name = \"ok\"\nlisten = \"nonsense\"",
        "nme = \"typo\"",
        "name = \"Not A Label\"",
    ] {
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{text}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(bin)
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn docker_unreachable_is_reported_and_not_fatal() {
    let agent = Agent::start("t-nodocker", "docker_socket = \"/nonexistent/docker.sock\"").await;
    let (s, h) = agent.get("/agent/v1/health").await;
    assert_eq!(s, 200);
    assert_eq!(h["docker_reachable"], false);
    assert!(
        h["docker_error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/docker.sock"),
        "{h}"
    );
    let id = op_id();
    let (s, p) = agent
        .put(
            &format!("/agent/v1/operations/{id}"),
            &deploy_body("t-nodocker", "sluice-testapp:v1", 20002, 1),
        )
        .await;
    assert_eq!(s, 503, "{p}");
    assert_eq!(p["code"], "docker_unavailable");
    let (s, _) = agent.get("/agent/v1/services").await;
    assert_eq!(s, 503);
    // Still up, still answering.
    let (s, _) = agent.get("/agent/v1/health").await;
    assert_eq!(s, 200);
}

/// A stand-in coordinator endpoint that records what the agent posts, and with which
/// certificate (the coordinator's side is tested in coordinator/; this checks the agent's
/// half of the contract). It serves mTLS with a coordinator certificate from the shared CA.
type Seen = (String, Value, Option<PeerIdentity>);

async fn recorder() -> (String, std::sync::mpsc::Receiver<Seen>) {
    let pki = sluice_tests::pki::Pki::shared();
    let cert = pki.issue(Role::Coordinator, "recorder");
    let material = TlsMaterial::from_pem(pki.ca_pem().into(), cert.cert_pem, cert.key_pem).unwrap();
    let tls = ServerTls::fixed(&material, ClientAuth::Required).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let tx = tx.clone();
        async move {
            let path = req.uri().path().to_string();
            let peer = req.extensions().get::<PeerIdentity>().cloned();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let _ = tx.send((
                path,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
                peer,
            ));
            axum::http::StatusCode::NO_CONTENT
        }
    });
    tokio::spawn(serve_tls(
        l,
        app,
        tls,
        tokio_util::sync::CancellationToken::new(),
    ));
    (addr, rx)
}

// Multi-threaded: the recorder serves on the runtime while the test blocks on its channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_coordinator_and_heartbeats() {
    let (addr, rx) = recorder().await;
    let dead = free_port();
    let agent = Agent::start(
        "t-register",
        &format!(
            "coordinators = [\"127.0.0.1:{dead}\", \"{addr}\"]\nheartbeat_interval = \"200ms\"\nlabels = [\"env=test\"]"
        ),
    )
    .await;
    let deadline = Duration::from_secs(15).mul_f64(sluice_tests::eventually::patience());
    let (path, reg, peer) = rx.recv_timeout(deadline).expect("a registration");
    assert_eq!(path, "/v1/agents/register");
    let peer = peer.expect("the agent presents its certificate");
    assert_eq!((peer.role, peer.name.as_str()), (Role::Agent, "t-register"));
    assert_eq!(reg["server"], "t-register");
    assert_eq!(reg["agent_addr"], agent.addr.to_string());
    assert_eq!(reg["labels"], json!(["env=test"]));
    assert_eq!(reg["port_range"], "1024-65535");
    assert!(reg["docker_version"].is_string(), "{reg}");
    let (path, hb, _) = rx.recv_timeout(deadline).expect("a heartbeat");
    assert_eq!(path, "/v1/agents/t-register/heartbeat");
    assert_eq!(hb["server"], "t-register");
    assert_eq!(hb["docker_reachable"], true);
    let bound = hb["bound_ports"].as_array().unwrap();
    assert!(
        bound.contains(&json!(agent.addr.port())),
        "the agent's own port is bound: {hb}"
    );
    let _ = rx.recv_timeout(deadline).expect("heartbeats keep coming");
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut agent = Agent::start("t-sigterm", "").await;
    let status = agent.terminate();
    assert_eq!(status.code(), Some(0));
    // And it starts again on the same data directory.
    agent.spawn().await;
    eventually("health after restart", Duration::from_secs(5), || async {
        let (s, _) = agent.get("/agent/v1/health").await;
        if s == 200 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
}

#[tokio::test]
async fn metrics_for_coordinators_and_operators_only() {
    let a = Agent::start("t-metrics", "").await;
    let pki = sluice_tests::pki::Pki::shared();
    for (role, ok) in [
        (Role::Coordinator, true),
        (Role::Client, true),
        (Role::Agent, false),
    ] {
        let r = pki
            .client_as(role, "scraper")
            .get(a.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().is_success(), ok, "{role:?}");
        if ok {
            let text = r.text().await.unwrap();
            assert!(text.contains("sluice_agent_docker_reachable 1"), "{text}");
            assert!(
                text.contains("sluice_certificate_expiry_timestamp_seconds"),
                "{text}"
            );
        }
    }
}
