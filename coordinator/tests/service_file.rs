//! `sluice.toml` through the real binaries against a real coordinator and agent (real
//! Docker): `validate` offline, `plan` changes nothing, `deploy -f --tag` deploys with the
//! file's spec and a secret taken from the environment, `--check-index` refuses after a
//! concurrent deploy.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_common::client::DeploymentFilter;
use sluice_common::names::ServerName;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::agent_support::docker;
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, REPOSITORY};

const SECRET: &str = "sf-s3cret-value";

fn sluice(c: &Cluster, ca: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_ADDR", &c.nodes[0].addr)
        .env("SLUICE_TOKEN", &c.admin_token)
        .env("SLUICE_CA", ca)
        .env("SF_DB_PASSWORD", SECRET)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(SECRET), "the secret was printed: {text}");
    (out.status.code(), text)
}

fn service_file() -> String {
    format!(
        r#"
[[service]]
name = "sf-web"
image = "{REPOSITORY}"
servers = ["sf-1"]
container_port = 8080
strategy = "recreate"
health = {{ kind = "http", path = "/health" }}

[service.env]
GREETING = "hello"
DB_PASSWORD = {{ from_env = "SF_DB_PASSWORD", secret = true }}
TOKEN = {{ from_file = "token.txt", secret = true }}

[service.spec]
resources = {{ memory = "64m" }}
labels = {{ "com.example.team" = "storefront" }}
"#
    )
}

async fn deployments(c: &Cluster) -> usize {
    let filter = DeploymentFilter {
        service: Some("sf-web".into()),
        ..Default::default()
    };
    c.api(0)
        .deployments(&filter)
        .await
        .unwrap()
        .deployments
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_file_validates_plans_and_deploys() {
    ensure_test_images().unwrap();
    remove_containers("sf-web");
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let _agent = AgentProc::start("sf-1", &[c.nodes[0].addr.clone()], "27660-27679", "");
    eventually("sf-1 registered", Duration::from_secs(20), || async {
        let name = ServerName::parse("sf-1").unwrap();
        c.api(0)
            .server(&name)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, c.pki.ca_pem()).unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, service_file()).unwrap();
    std::fs::write(dir.path().join("token.txt"), "file-token\n").unwrap();
    let f = file.to_str().unwrap();
    let run = |args: &[&str]| tokio::task::block_in_place(|| sluice(&c, &ca, args));

    // Offline validation, and a malformed file named by line and column.
    let (code, out) = run(&["validate", "-f", f, "--tag", "v1"]);
    assert_eq!(code, Some(0), "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, service_file().replace("\"64m\"", "\"lots\"")).unwrap();
    let (code, out) = run(&["validate", "-f", bad.to_str().unwrap(), "--tag", "v1"]);
    assert_eq!(code, Some(65), "{out}");
    assert!(out.contains("line 16"), "{out}");

    // A plan changes nothing: no deployment, no audit record, no container.
    let audit_before = c.api(0).audit_export().await.unwrap().lines().count();
    let (code, out) = run(&["plan", "-f", f, "--tag", "v1"]);
    assert_eq!(code, Some(2), "changes to make: {out}");
    assert!(out.contains("+ create sf-1"), "{out}");
    assert_eq!(deployments(&c).await, 0);
    assert_eq!(
        c.api(0).audit_export().await.unwrap().lines().count(),
        audit_before
    );
    assert!(docker(&["ps", "-aq", "--filter", "label=sluice.service=sf-web"]).is_empty());

    // Deploy from the file: the spec and the secrets reach the container.
    let (code, out) = run(&["deploy", "-f", f, "--tag", "v1", "--wait"]);
    assert_eq!(code, Some(0), "{out}");
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        "label=sluice.service=sf-web",
        "--filter",
        "status=running",
    ]);
    let id = id.trim();
    assert!(!id.is_empty(), "a running container");
    let memory = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", id]);
    assert_eq!(memory.trim(), (64 * 1024 * 1024).to_string());
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", id]);
    for want in ["GREETING=hello", "TOKEN=file-token", "DB_PASSWORD="] {
        assert!(env.contains(want), "{want} in {env}");
    }
    assert!(env.contains(SECRET), "the secret reached the container");

    // The same file again: nothing to change.
    let (code, out) = run(&["plan", "-f", f, "--tag", "v1"]);
    assert_eq!(code, Some(0), "{out}");
    let index: String = out
        .split("--check-index ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_default()
        .to_string();
    assert!(!index.is_empty(), "{out}");

    // A deploy since the plan: its index is stale.
    let (code, out) = run(&["deploy", "-f", f, "--tag", "v2", "--wait"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["deploy", "-f", f, "--tag", "v1", "--check-index", &index]);
    assert_eq!(code, Some(75), "{out}");
    assert!(
        out.contains("service_changed") || out.contains("changed"),
        "{out}"
    );
    remove_containers("sf-web");
}
