//! Security, end to end: real coordinator and agent processes, real TLS handshakes, real
//! tokens. Each test says which rule it breaks and what must happen.
//!
//! Most calls here stay raw HTTP: their point is who may send what (certificates, tokens,
//! headers, TLS, h2, body limits) and which bytes come back. The admin's own setup and
//! reads go through the typed client.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::api::{CreateTokenRequest, TokenName, TokenRole};
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::tls::Role;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::pki::{write_files, Pki};
use sluice_tests::testapp_image::{ensure_test_images, image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

/// A port range of its own for each agent of this test process.
fn port_range() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::SeqCst);
    // Below 32768: the kernel hands out ports from 32768 up to outgoing connections and
    // to Docker for loopback-published containers, and a probe then finds them taken.
    let base = 12000 + (std::process::id() % 40) as u16 * 100 + slot * 20;
    format!("{base}-{}", base + 19)
}

async fn single() -> Cluster {
    Cluster::start(bin(), 1, NodeOpts::default()).await
}

/// Status, content type and JSON body of a request that must get an answer.
async fn answer(req: reqwest::RequestBuilder) -> (u16, String, Value) {
    let r = req.send().await.expect("an answer");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

/// Asserts a problem+json refusal with `status` and `code`.
async fn refused(req: reqwest::RequestBuilder, status: u16, code: &str) -> Value {
    let (s, ct, v) = answer(req).await;
    assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
    assert_eq!(ct, "application/problem+json");
    v
}

fn anonymous(pki: &Pki) -> reqwest::Client {
    pki.client(None)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn registration(server: &str) -> Value {
    json!({
        "server": server, "agent_addr": "127.0.0.1:1", "labels": [],
        "port_range": "30000-30010", "docker_version": null, "agent_version": "test"
    })
}

fn heartbeat(server: &str) -> Value {
    json!({"server": server, "docker_reachable": true, "bound_ports": [], "containers_running": 0})
}

fn deploy_body(service: &str) -> Value {
    json!({
        "service": service, "image": "sluice-testapp:v1", "servers": ["web-1"],
        "container_port": 8080, "health": {"kind": "tcp"}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_from_another_ca_is_refused() {
    let c = single().await;
    let stranger = Pki::new().issue(Role::Coordinator, "node1");
    // Trusts the right CA for the server, but presents a certificate from another one.
    let http = c
        .pki
        .client(Some(&stranger))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = c.nodes[0].url("/raft/vote");
    let r = http.post(&url).json(&json!({})).send().await;
    assert!(r.is_err(), "the handshake must fail: {r:?}");
    let r = http.get(c.nodes[0].url("/healthz")).send().await;
    assert!(r.is_err(), "even open endpoints: {r:?}");
    // The same client without a certificate gets in (and is then asked for one).
    let (s, _, _) = answer(anonymous(c.pki).get(c.nodes[0].url("/healthz"))).await;
    assert_eq!(s, 200);
    refused(
        anonymous(c.pki).post(&url).json(&json!({})),
        401,
        "unauthenticated",
    )
    .await;

    // The agent too refuses a stranger's coordinator certificate.
    let agent = AgentProc::start("sec-stranger", &[], &port_range(), "");
    let r = http
        .get(format!("https://{}/agent/v1/health", agent.addr))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    // And a server certificate from another CA is refused by our clients.
    let wrong_trust = Pki::new()
        .client(None)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(wrong_trust
        .get(c.nodes[0].url("/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_certificate_cannot_call_the_agent_api() {
    let agent = AgentProc::start("sec-a1", &[], &port_range(), "");
    let pki = Pki::shared();
    let url = format!("https://{}/agent/v1/health", agent.addr);
    for (role, name) in [
        (Role::Agent, "sec-a1"),
        (Role::Agent, "other"),
        (Role::Client, "ops"),
    ] {
        let v = refused(pki.client_as(role, name).get(&url), 403, "forbidden").await;
        assert!(v["detail"].as_str().unwrap().contains("coordinator"), "{v}");
    }
    // No certificate at all: the handshake itself fails (client auth is required).
    assert!(anonymous(pki).get(&url).send().await.is_err());
    let (s, _, _) = answer(pki.client_as(Role::Coordinator, "node1").get(&url)).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_may_speak_only_for_its_own_server() {
    let c = single().await;
    let web1 = c.pki.client_as(Role::Agent, "web-1");
    let node = &c.nodes[0];
    refused(
        web1.post(node.url("/v1/agents/register"))
            .json(&registration("web-2")),
        403,
        "forbidden",
    )
    .await;
    refused(
        web1.post(node.url("/v1/agents/web-2/heartbeat"))
            .json(&heartbeat("web-2")),
        403,
        "forbidden",
    )
    .await;
    // Its own name is fine.
    let (s, _, v) = answer(
        web1.post(node.url("/v1/agents/register"))
            .json(&registration("web-1")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = answer(
        web1.post(node.url("/v1/agents/web-1/heartbeat"))
            .json(&heartbeat("web-1")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // web-2 never got in.
    let servers = c.api(0).servers().await.unwrap();
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web-1"]);
    // Agent endpoints want agent certificates: neither a token nor an operator's
    // certificate registers anything; and an agent cannot reach Raft or the CI API.
    refused(
        c.http
            .post(node.url("/v1/agents/register"))
            .json(&registration("web-3")),
        401,
        "unauthenticated",
    )
    .await;
    refused(
        c.pki
            .client_as(Role::Client, "ops")
            .post(node.url("/v1/agents/register"))
            .json(&registration("web-3")),
        403,
        "forbidden",
    )
    .await;
    refused(
        web1.post(node.url("/raft/vote")).json(&json!({})),
        403,
        "forbidden",
    )
    .await;
    refused(web1.get(node.url("/v1/servers")), 401, "unauthenticated").await;
    // What the README's troubleshooting table tells people to grep for is in the log (a
    // plain log file: no colour codes), with the refusal's code as a field.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| a server stays"))
        .expect("the README's row for a server that stays down");
    assert!(row.contains("`may not register server`"), "{row}");
    let log = c.nodes[0].log();
    for needle in ["may not register server", "code=forbidden"] {
        assert!(
            log.contains(needle),
            "{needle} not in the coordinator's log:\n{log}"
        );
    }
    assert!(
        !log.contains('\u{1b}'),
        "an escape character in a log file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_refused() {
    let c = single().await;
    let pki = c.pki;
    let expired = pki.issue_expired(Role::Coordinator, "node2");
    let http = pki
        .client(Some(&expired))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = http
        .post(c.nodes[0].url("/raft/vote"))
        .json(&json!({}))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    let agent = AgentProc::start("sec-expired", &[], &port_range(), "");
    let r = http
        .get(format!("https://{}/agent/v1/health", agent.addr))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    // A valid certificate with the same identity gets through.
    let (s, _, _) = answer(
        pki.client_as(Role::Coordinator, "node2")
            .get(format!("https://{}/agent/v1/health", agent.addr)),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_is_picked_up_without_restart() {
    let c = single().await;
    let pid = c.nodes[0].pid();
    // The node moves to a certificate from a new CA (the bundle trusts both during the
    // rotation). A client that trusts only the new CA proves which certificate is served.
    let next = Pki::new();
    let new_only = anonymous(&next);
    let url = c.nodes[0].url("/healthz");
    assert!(new_only.get(&url).send().await.is_err());
    let files = c.nodes[0].tls_files();
    let bundle = format!("{}{}", c.pki.ca_pem(), next.ca_pem());
    write_files(
        files.cert.parent().unwrap(),
        "node1",
        &bundle,
        &next.issue(Role::Coordinator, "node1"),
    );
    eventually(
        "the node to serve the new certificate",
        Duration::from_secs(20),
        || async {
            new_only
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())
                .map(|_| ())
        },
    )
    .await;
    assert_eq!(c.nodes[0].pid(), pid, "no restart");
    assert!(c.nodes[0].log().contains("TLS certificate reloaded"));
    // It still works as a cluster: the admin token is still honoured through the new cert.
    let admin = next
        .client(None)
        .build()
        .unwrap()
        .get(c.nodes[0].url("/v1/cluster"))
        .bearer_auth(&c.admin_token);
    let (s, _, v) = answer(admin).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_have_roles_scopes_and_can_be_revoked() {
    let c = single().await;
    let node = &c.nodes[0];
    let anon = anonymous(c.pki);

    refused(anon.get(node.url("/v1/servers")), 401, "unauthenticated").await;
    refused(
        anon.get(node.url("/v1/servers"))
            .bearer_auth("sluice_not-a-real-token"),
        401,
        "unauthenticated",
    )
    .await;
    // Health probes stay open.
    assert_eq!(answer(anon.get(node.url("/healthz"))).await.0, 200);
    assert_eq!(answer(anon.get(node.url("/readyz"))).await.0, 200);

    let token = |name: &str, role, services: &[&str]| CreateTokenRequest {
        name: TokenName::parse(name).unwrap(),
        role,
        services: services
            .iter()
            .map(|s| ServiceName::parse(s).unwrap())
            .collect(),
    };
    let viewer = c
        .api(0)
        .create_token(&token("view", TokenRole::Viewer, &[]))
        .await
        .unwrap()
        .secret;
    assert!(
        viewer.starts_with("sluice_") && viewer.len() == 7 + 64,
        "{viewer}"
    );
    let deployer = c
        .api(0)
        .create_token(&token("deploy-api", TokenRole::Deployer, &["api"]))
        .await
        .unwrap()
        .secret;
    refused(
        c.http
            .post(node.url("/v1/tokens"))
            .json(&json!({"name": "view", "role": "admin"})),
        409,
        "conflict",
    )
    .await;

    // Listing shows neither secrets nor hashes (raw: in no byte of the answer).
    let (s, _, list) = answer(c.http.get(node.url("/v1/tokens"))).await;
    assert_eq!(s, 200);
    let text = list.to_string();
    assert!(
        text.contains("deploy-api") && text.contains("\"viewer\""),
        "{text}"
    );
    assert!(
        !text.contains(&viewer) && !text.contains(&deployer),
        "{text}"
    );
    assert!(!text.contains("hash"), "{text}");

    // A viewer reads but cannot deploy or list tokens.
    let as_viewer = |r: reqwest::RequestBuilder| r.bearer_auth(&viewer);
    assert_eq!(
        answer(as_viewer(anon.get(node.url("/v1/deployments"))))
            .await
            .0,
        200
    );
    refused(
        as_viewer(
            anon.post(node.url("/v1/deployments"))
                .json(&deploy_body("api")),
        ),
        403,
        "forbidden",
    )
    .await;
    refused(
        as_viewer(anon.get(node.url("/v1/tokens"))),
        403,
        "forbidden",
    )
    .await;

    // A deployer scoped to `api` cannot deploy `web`, nor administer anything.
    let as_deployer = |r: reqwest::RequestBuilder| r.bearer_auth(&deployer);
    let v = refused(
        as_deployer(
            anon.post(node.url("/v1/deployments"))
                .json(&deploy_body("web")),
        ),
        403,
        "forbidden",
    )
    .await;
    assert!(v["detail"].as_str().unwrap().contains("web"), "{v}");
    let (s, _, v) = answer(as_deployer(
        anon.post(node.url("/v1/deployments"))
            .json(&deploy_body("api")),
    ))
    .await;
    assert!(s != 401 && s != 403, "api is in scope: {s} {v}");
    refused(
        as_deployer(
            anon.post(node.url("/v1/locks/service/web"))
                .json(&json!({"holder": "ci"})),
        ),
        403,
        "forbidden",
    )
    .await;
    refused(
        as_deployer(
            anon.put(node.url("/v1/servers/web-9"))
                .json(&json!({"agent_addr": "a:1"})),
        ),
        403,
        "forbidden",
    )
    .await;
    refused(
        as_deployer(
            anon.post(node.url("/v1/tokens"))
                .json(&json!({"name": "x", "role": "admin"})),
        ),
        403,
        "forbidden",
    )
    .await;

    // Revoked: 401 at once on the node that revoked it.
    let v = c
        .api(0)
        .revoke_token(&TokenName::parse("view").unwrap())
        .await
        .unwrap();
    assert!(v.revoked, "{v:?}");
    refused(
        as_viewer(anon.get(node.url("/v1/deployments"))),
        401,
        "unauthenticated",
    )
    .await;

    // The operator's client certificate counts as admin.
    let ops = c.pki.client_as(Role::Client, "ops");
    assert_eq!(answer(ops.get(node.url("/v1/tokens"))).await.0, 200);

    // The CLI: create prints the secret alone on stdout; list and revoke work.
    let ca = c.pki.dir().join("ca-for-cli.pem");
    std::fs::write(&ca, c.pki.ca_pem()).unwrap();
    let sluice = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_ADDR", node.url(""))
            .env("SLUICE_TOKEN", &c.admin_token)
            .env("SLUICE_CA", &ca)
            .output()
            .unwrap()
    };
    let out = sluice(&[
        "token",
        "create",
        "--name",
        "cli",
        "--role",
        "deployer",
        "--services",
        "a,b",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("sluice_"), "{secret}");
    assert_eq!(
        answer(anon.get(node.url("/v1/deployments")).bearer_auth(&secret))
            .await
            .0,
        200
    );
    let out = sluice(&["token", "list"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("cli") && listed.contains("a,b"), "{listed}");
    assert!(!listed.contains(&secret));
    let out = sluice(&["token", "revoke", "cli"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused(
        anon.get(node.url("/v1/deployments")).bearer_auth(&secret),
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_are_refused_with_problems() {
    let c = single().await;
    let node = &c.nodes[0];
    // Raw throughout: these bodies are ones the typed client cannot send.
    // Oversized: 413 (a fresh client, since the server may close a connection whose body
    // it refused unread).
    let big = json!({"service": "api", "pad": "x".repeat(2 * 1024 * 1024)});
    let (s, _, v) = answer(c.http.post(node.url("/v1/deployments")).json(&big)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    // Malformed JSON.
    refused(
        c.http
            .post(node.url("/v1/tokens"))
            .header("content-type", "application/json")
            .body("{\"name\": \"x\", "),
        400,
        "invalid_request",
    )
    .await;
    // A JSON array where an object belongs (serde would read it as the fields in order):
    // it must not clear the policy.
    for (path, body) in [
        ("/v1/policy", "[]"),
        ("/v1/tokens", "[\"x\", \"viewer\", []]"),
    ] {
        refused(
            c.http
                .request(
                    if path == "/v1/policy" {
                        reqwest::Method::PUT
                    } else {
                        reqwest::Method::POST
                    },
                    node.url(path),
                )
                .header("content-type", "application/json")
                .body(body),
            400,
            "invalid_request",
        )
        .await;
    }
    // Unknown fields, on a token and on a deployment.
    refused(
        c.http
            .post(node.url("/v1/tokens"))
            .json(&json!({"name": "x", "role": "viewer", "bogus": 1})),
        400,
        "invalid_request",
    )
    .await;
    let mut d = deploy_body("api");
    d["privileged_please"] = json!(true);
    let v = refused(
        c.http.post(node.url("/v1/deployments")).json(&d),
        400,
        "invalid_request",
    )
    .await;
    assert!(
        v["detail"].as_str().unwrap().contains("privileged_please"),
        "{v}"
    );
    // Invalid values are named, not echoed back whole.
    refused(
        c.http
            .post(node.url("/v1/tokens"))
            .json(&json!({"name": "Not Valid", "role": "viewer"})),
        400,
        "invalid_request",
    )
    .await;
    refused(
        c.http
            .post(node.url("/v1/tokens"))
            .json(&json!({"name": "v", "role": "viewer", "services": ["api"]})),
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_env_value_never_appears_in_logs_or_responses() {
    const SECRET: &str = "s3cr3t-env-value-7f1c9e";
    const SERVICE: &str = "sec-secret";
    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    let c = single().await;
    let addrs = vec![c.nodes[0].addr.clone()];
    let agent = AgentProc::start("web-1", &addrs, &port_range(), "");
    let node = &c.nodes[0];
    let mut responses = String::new();
    eventually("the agent to register", Duration::from_secs(20), || async {
        let name = ServerName::parse("web-1").unwrap();
        c.api(0)
            .server(&name)
            .await
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    })
    .await;
    // Raw from here: the secret must be in no byte of any answer.

    let body = json!({
        "service": SERVICE,
        "image": image("v1"),
        "servers": ["web-1"],
        "container_port": 8080,
        "env": {"GREETING": {"value": "hello"}, "API_TOKEN": {"value": SECRET, "secret": true}},
        "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 10, "timeout": "1s"},
    });
    let r = c
        .http
        .post(node.url("/v1/deployments"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let created = r.text().await.unwrap();
    responses.push_str(&created);
    let id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = eventually(
        "the deployment to finish",
        Duration::from_secs(90),
        || async {
            let t = c
                .http
                .get(node.url(&format!("/v1/deployments/{id}")))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
            match v["state"].as_str() {
                Some("success") => Ok(t),
                Some("failed") => panic!("deployment failed: {v}"),
                _ => Err(v["state"].to_string()),
            }
        },
    )
    .await;
    responses.push_str(&done);
    assert!(done.contains("<redacted>"), "{done}");
    for path in [
        format!("/v1/deployments/{id}/events"),
        "/v1/deployments".to_string(),
        "/v1/services".to_string(),
        "/v1/servers".to_string(),
        "/v1/servers/web-1".to_string(),
    ] {
        let r = c.http.get(node.url(&path)).send().await.unwrap();
        responses.push_str(&r.text().await.unwrap());
    }
    // The agent API as the coordinator sees it.
    let as_coordinator = c.pki.client_as(Role::Coordinator, "node1");
    for path in [
        format!("/agent/v1/operations/{id}"),
        format!("/agent/v1/services/{SERVICE}"),
        "/agent/v1/services".to_string(),
    ] {
        let r = as_coordinator
            .get(format!("https://{}{path}", agent.addr))
            .send()
            .await
            .unwrap();
        responses.push_str(&r.text().await.unwrap());
    }

    // The secret did reach the container (else this test would prove nothing)...
    let ids = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=sluice.service={SERVICE}"),
        ])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&ids.stdout).trim().to_string();
    let env = Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Env}}", &ids])
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&env.stdout).to_string();
    remove_containers(SERVICE);
    assert!(env.contains(&format!("API_TOKEN={SECRET}")), "{env}");
    // ...and nowhere else.
    assert!(responses.contains("hello"), "the responses were collected");
    assert!(
        !responses.contains(SECRET),
        "a response leaked it: {responses}"
    );
    let coordinator_log = node.log();
    assert!(coordinator_log.contains("coordinator started"));
    assert!(!coordinator_log.contains(SECRET), "{coordinator_log}");
    let agent_log = agent.log();
    assert!(!agent_log.is_empty());
    assert!(!agent_log.contains(SECRET), "{agent_log}");
}

/// An HTTP/2-only client (ALPN `h2`), as reqwest and `curl --http2` negotiate.
fn h2(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends `n` requests, small and large bodies alternating (a large one cannot all be in
/// flight before the refusal: it is past h2's initial 64 KiB window), and asserts each
/// got `status` with a problem+json `code` — never a stream reset.
async fn all_refused(
    n: usize,
    req: impl Fn(usize) -> reqwest::RequestBuilder,
    status: u16,
    code: &str,
) {
    let mut errors = Vec::new();
    for i in 0..n {
        match req(i).send().await {
            Ok(r) => {
                let got = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if (got, v["code"].as_str()) != (status, Some(code)) {
                    errors.push(format!("#{i}: {got} {v}"));
                }
            }
            Err(e) => errors.push(format!("#{i}: {e:?}")),
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {n} requests did not get {status} {code}: {errors:?}",
        errors.len()
    );
}

fn padded(mut body: Value, i: usize) -> Value {
    if i % 2 == 1 {
        body["padding"] = json!("x".repeat(200 * 1024));
    }
    body
}

/// Issue 13 #5: over HTTP/2, refusals sent before the body was read ended in "Stream error
/// in the HTTP/2 framing layer" for 29 of 50 requests; every client must get its answer.
#[tokio::test(flavor = "multi_thread")]
async fn early_refusals_reach_http2_clients_as_problems() {
    let c = single().await;
    let node = &c.nodes[0];
    let token = |role: TokenRole| {
        let req = CreateTokenRequest {
            name: TokenName::parse(&format!("h2-{role}")).unwrap(),
            role,
            services: Vec::new(),
        };
        let api = c.api(0);
        async move { api.create_token(&req).await.unwrap().secret }
    };
    let viewer = token(TokenRole::Viewer).await;
    let deployer = token(TokenRole::Deployer).await;
    let client = h2(c.pki.client(None));
    let url = node.url("/v1/deployments");
    let body = |i| padded(deploy_body("h2-api"), i);
    // 403: a viewer may not deploy.
    all_refused(
        50,
        |i| client.post(&url).bearer_auth(&viewer).json(&body(i)),
        403,
        "forbidden",
    )
    .await;
    // 401: no credentials.
    all_refused(
        20,
        |i| client.post(&url).json(&body(i)),
        401,
        "unauthenticated",
    )
    .await;
    // 415: not JSON.
    all_refused(
        20,
        |i| {
            client
                .post(&url)
                .bearer_auth(&deployer)
                .header("content-type", "text/plain")
                .body(body(i).to_string())
        },
        415,
        "unsupported_media_type",
    )
    .await;
    // 413: over the 1 MiB limit.
    all_refused(
        10,
        |_| {
            client
                .post(&url)
                .bearer_auth(&deployer)
                .json(&json!({"padding": "x".repeat(3 * 1024 * 1024)}))
        },
        413,
        "payload_too_large",
    )
    .await;

    // curl (7.88 here, as on many CI runners) reports a stream reset during its upload as
    // "Stream error in the HTTP/2 framing layer" even after a complete answer: it must see
    // the stream end normally.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, c.pki.ca_pem()).unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, padded(deploy_body("h2-api"), 1).to_string()).unwrap();
    let mut errors = Vec::new();
    for i in 0..20 {
        let out = std::process::Command::new("curl")
            .args(["--http2", "-sS", "--cacert"])
            .arg(&ca)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {viewer}")])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", big.display()))
            .arg(&url)
            .output()
            .expect("curl (CI installs it)");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() || code != "403" {
            errors.push(format!(
                "#{i}: {code} {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(errors.is_empty(), "curl --http2: {errors:?}");

    // The agent API: a `client` certificate may not deploy (coordinators only).
    let agent = AgentProc::start("sec-h2", &[], &port_range(), "");
    let pki = Pki::shared();
    let ops = h2(pki.client(Some(&pki.issue(Role::Client, "ops"))));
    let op = "0191d2a0-7c4e-7b3a-9f1e-2d3c4b5a6978";
    let agent_url = format!("https://{}/agent/v1/operations/{op}", agent.addr);
    all_refused(
        20,
        |i| {
            ops.put(&agent_url).json(&padded(
                json!({"fence": {"key": "service/x", "token": 1}}),
                i,
            ))
        },
        403,
        "forbidden",
    )
    .await;
}
