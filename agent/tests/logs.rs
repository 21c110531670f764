//! The agent's plain log, as the journal or a file holds it: no colour codes, and the
//! strings the README's troubleshooting table tells people to grep for are really there.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::tls::Role;
use sluice_tests::agent::{agent_bin, AgentProc};
use sluice_tests::eventually::eventually;
use sluice_tests::pki::Pki;

/// The backticked strings of the README's troubleshooting row that starts with `row`.
fn troubleshooting_strings(row: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let line = readme
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no README row {row:?}"));
    let first_cell = line.split('|').nth(1).unwrap_or("");
    first_cell
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn deploy(token: u64) -> Value {
    json!({
        "fence": {"key": "service/logs-api", "token": token},
        "service": "logs-api", "image": "127.0.0.1:1/logs-api:v1",
        "container_port": 8080, "host_port": 27990, "health": {"kind": "tcp"}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_log_file_has_no_escape_codes_and_the_documented_strings() {
    // Started once the usual way (JSON logs) to get a config and a port, then again by hand
    // with plain logs to a file, as systemd's journal would get them.
    let mut first = AgentProc::start("logs-1", &[], "27990-27999", "");
    let addr = first.addr.clone();
    let config = first.pinned_config();
    first.kill();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(agent_bin())
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "plain"])
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn sluice-agent")
    };
    let coordinator = Pki::shared().client_as(Role::Coordinator, "node1");
    let url = |path: &str| format!("https://{addr}{path}");
    eventually("the agent to answer", Duration::from_secs(20), || async {
        match coordinator.get(url("/agent/v1/health")).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    // Token 5 is admitted (its image is on a registry that refuses connections, on
    // loopback: nothing runs); 3 is then stale.
    let op = |n: u32| {
        url(&format!(
            "/agent/v1/operations/0191d2a0-7c4e-7b3a-9f1e-2d3c4b5a69{n:02}"
        ))
    };
    let r = coordinator
        .put(op(1))
        .json(&deploy(5))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = coordinator
        .put(op(2))
        .json(&deploy(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let wanted = troubleshooting_strings("| agent log:");
    assert!(!wanted.is_empty());
    let text = eventually(
        "the refusal in the log file",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if wanted.iter().all(|w| text.contains(w.as_str())) {
                Ok(text)
            } else {
                Err(format!("{wanted:?} not all in:\n{text}"))
            }
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text.contains('\u{1b}'),
        "an escape character in a log written to a file:\n{text}"
    );
    assert!(
        text.contains("offered=3") && text.contains("highest=5"),
        "{text}"
    );
}
