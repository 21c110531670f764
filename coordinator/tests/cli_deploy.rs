//! `sluice deploy --wait` and `sluice status` through the real binaries, as a CI job runs
//! them: exit codes, progress lines, and the failed container's log on a rollback.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_common::names::ServerName;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, image};

fn sluice(c: &Cluster, ca: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_ADDR", &c.nodes[0].addr)
        .env("SLUICE_TOKEN", &c.admin_token)
        .env("SLUICE_CA", ca)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_wait_exit_codes_follow_the_outcome() {
    ensure_test_images().unwrap();
    remove_containers("cli-api");
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let _agent = AgentProc::start("cli-1", &[c.nodes[0].addr.clone()], "27600-27619", "");
    eventually("cli-1 registered", Duration::from_secs(20), || async {
        let name = ServerName::parse("cli-1").unwrap();
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
    let deploy = |tag: &str| {
        let img = image(tag);
        let c = &c;
        let ca = ca.clone();
        async move {
            tokio::task::block_in_place(|| {
                sluice(
                    c,
                    &ca,
                    &[
                        "deploy",
                        "--service",
                        "cli-api",
                        "--image",
                        &img,
                        "--server",
                        "cli-1",
                        "--health",
                        "/health",
                        "--secret-env",
                        "API_KEY=cli-s3cret",
                        "--wait",
                    ],
                )
            })
        }
    };
    let (code, out, err) = deploy("v1").await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("in_progress"), "progress lines: {err}");
    assert!(out.contains(": success"), "{out}");

    let (code, out, err) = deploy("broken").await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("rolled_back"), "{out}");
    assert!(out.contains("    | "), "the failed container's log: {out}");

    let (code, out, err) = deploy("does-not-exist").await;
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(out.contains("check image_exists on cli-1 failed"), "{out}");
    for text in [&out, &err] {
        assert!(!text.contains("cli-s3cret"));
    }

    let (code, _, err) = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["status", "00000000-0000-0000-0000-000000000000"])
            .env("SLUICE_ADDR", &c.nodes[0].addr)
            .env("SLUICE_TOKEN", "not-a-token")
            .env("SLUICE_CA", &ca)
            .output()
            .map(|o| {
                (
                    o.status.code(),
                    (),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap()
    });
    assert_eq!(code, Some(77), "{err}");
    remove_containers("cli-api");
}
