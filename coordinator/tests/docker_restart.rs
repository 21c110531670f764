//! The Docker daemon restarted in the middle of a deployment: the agent waits out the
//! outage, the deployment ends rolled back with the previous version running again (no
//! hang, no half state), the agent reports Docker reachable again, state stays consistent,
//! and the next deployment succeeds.
//!
//! This restarts the machine's `dockerd` (as it was started: same command line), so it is
//! the only test in its binary: cargo runs test binaries one after another, so no other
//! Docker test runs meanwhile.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::audit::verify;
use sluice_common::deployment::DeploymentState;
use sluice_common::names::ServerName;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::agent_support::coordinator_client;
use sluice_tests::cluster::{deployment_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::testapp_image::{ensure_test_images, image};

const SERVICE: &str = "dr-api";

fn dockerd_pid() -> Option<u32> {
    let out = Command::new("pidof").arg("dockerd").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops dockerd (SIGTERM: it stops its containers, as on a package upgrade) and starts it
/// again with the same command line.
async fn restart_dockerd() {
    let pid = dockerd_pid().expect("dockerd is running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    eventually("dockerd to stop", Duration::from_secs(60), || async {
        match dockerd_pid() {
            None => Ok(()),
            Some(p) => Err(format!("pid {p} still running")),
        }
    })
    .await;
    let log = std::fs::File::create("/tmp/sluice-test-dockerd.log").unwrap();
    // `setsid -f` forks the daemon off and returns, so it outlives this test.
    let started = Command::new("setsid")
        .arg("-f")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("start dockerd again");
    assert!(started.success());
    eventually(
        "dockerd to answer again",
        Duration::from_secs(60),
        || async {
            docker_answers()
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
}

async fn deploy(c: &Cluster, tag: &str, env: Value) -> String {
    let body = json!({
        "service": SERVICE, "image": image(tag), "servers": ["dr-1"],
        "container_port": 8080, "env": env, "progress_deadline": "90s",
        "health": {"kind": "http", "path": "/health", "interval": "200ms", "retries": 50, "timeout": "1s"},
    });
    let created = c
        .api(0)
        .create_deployment(&deployment_request(&body), None)
        .await
        .unwrap();
    assert!(!created.replayed);
    created.deployment.id.to_string()
}

async fn agent_metric(agent: &AgentProc, name: &str) -> Result<f64, String> {
    let text = coordinator_client()
        .get(format!("https://{}/metrics", agent.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or(format!("no {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_restart_mid_deployment_ends_cleanly_and_the_next_one_succeeds() {
    assert!(docker_answers(), "Docker is required");
    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    // Below 32768, out of the kernel's ephemeral range (see security.rs).
    let base = 18000 + (std::process::id() % 50) as u16 * 10;
    let agent = AgentProc::start(
        "dr-1",
        &[c.nodes[0].addr.clone()],
        &format!("{base}-{}", base + 9),
        "",
    );
    eventually("dr-1 up", Duration::from_secs(20), || async {
        let name = &ServerName::parse("dr-1").unwrap();
        let v = c
            .on_any("server dr-1", |api| async move { api.server(name).await })
            .await?;
        v.up.then_some(()).ok_or(format!("{v:?}"))
    })
    .await;
    let v1 = deploy(&c, "v1", json!({})).await;
    assert_eq!(
        c.final_deployment(&v1, Duration::from_secs(180))
            .await
            .state,
        DeploymentState::Success
    );

    // v2 starts slowly; restart Docker while the agent waits for it to become healthy.
    let slow = json!({"TESTAPP_START_DELAY_MS": {"value": "4000"}});
    let v2 = deploy(&c, "v2", slow).await;
    eventually("v2 in progress", Duration::from_secs(30), || async {
        let d = c.deployment_any(&v2).await?;
        (d.state == DeploymentState::InProgress)
            .then_some(())
            .ok_or(d.state.to_string())
    })
    .await;
    restart_dockerd().await;
    let d2 = c.final_deployment(&v2, Duration::from_secs(180)).await;
    eprintln!(
        "after a Docker restart mid-deployment: {} ({:?})",
        d2.state, d2.failure
    );
    eventually(
        "the agent to see Docker again",
        Duration::from_secs(30),
        || async {
            let up = agent_metric(&agent, "sluice_agent_docker_reachable").await?;
            (up == 1.0).then_some(()).ok_or(format!("reachable={up}"))
        },
    )
    .await;

    // Everything still adds up, and the next deployment succeeds.
    let v3 = deploy(&c, "v2", json!({})).await;
    let d3 = c.final_deployment(&v3, Duration::from_secs(180)).await;
    assert_eq!(d3.state, DeploymentState::Success, "{d3:?}");
    let running = sluice_tests::agent_support::docker(&[
        "ps",
        "--filter",
        &format!("label=sluice.service={SERVICE}"),
        "--format",
        "{{.Image}}",
    ]);
    assert_eq!(
        running.trim(),
        image("v2"),
        "running after recovery: {running}"
    );
    let recs = c.audit(0).await.unwrap();
    assert_eq!(verify(&recs), Ok(recs.len() as u64));
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
    assert!(!c.logs().contains("panicked"));
    drop(agent);
    remove_containers(SERVICE);
}
