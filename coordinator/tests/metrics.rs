//! `/metrics` of a real coordinator and a real agent, after a real deployment, linted by
//! `promtool check metrics` (the Prometheus project's own exposition-format linter).
//!
//! promtool comes from Debian's `prometheus` package (CI installs it). When it is missing
//! this test fails, unless `SLUICE_SKIP_PROMTOOL=1` is set outside CI (`CI` and
//! `SLUICE_REQUIRE_PROMTOOL` make it mandatory whatever else is set): no silent passes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_common::deployment::DeploymentState;
use sluice_common::names::ServerName;
use sluice_common::tls::Role;
use sluice_tests::agent::{remove_containers, AgentProc};
use sluice_tests::cluster::{deployment_request, Cluster, NodeOpts};
use sluice_tests::eventually::eventually;
use sluice_tests::pki::Pki;
use sluice_tests::testapp_image::{ensure_test_images, image};

const SERVICE: &str = "metrics-lint";
const SERVER: &str = "metrics-1";

/// Whether promtool is usable; panics when it is missing and required.
fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let required = set("CI") || set("SLUICE_REQUIRE_PROMTOOL");
    let skip = std::env::var("SLUICE_SKIP_PROMTOOL").is_ok_and(|v| v == "1");
    assert!(
        skip && !required,
        "promtool is not on PATH: install Debian's `prometheus` package (apt-get install \
         prometheus), or set SLUICE_SKIP_PROMTOOL=1 to skip this lint locally (never in CI)"
    );
    eprintln!("SKIPPED: promtool is not on PATH and SLUICE_SKIP_PROMTOOL=1: metrics not linted");
    false
}

/// `promtool check metrics` on `text`: `Err(its findings)` unless it exits 0.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test]
async fn coordinator_and_agent_metrics_pass_promtool() {
    let lint = promtool_available();
    ensure_test_images().expect("test images");
    remove_containers(SERVICE);
    let c = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_sluice-coordinator")),
        1,
        NodeOpts::default(),
    )
    .await;
    let agent = AgentProc::start(SERVER, &[c.nodes[0].addr.clone()], "27700-27709", "");
    eventually("the agent registered", Duration::from_secs(20), || async {
        let name = ServerName::parse(SERVER).unwrap();
        c.api(0)
            .server(&name)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;

    // One deployment with an HTTP health check, so that the labelled families
    // (deployments, durations, containers, operations, health checks, ports) have
    // children and are linted too, not only the plain gauges.
    let req = deployment_request(&json!({
        "service": SERVICE, "image": image("v1"), "servers": [SERVER],
        "container_port": 8080,
        "health": {"kind": "http", "path": "/health", "interval": "100ms", "retries": 20}
    }));
    let created = c.api(0).create_deployment(&req, None).await.unwrap();
    assert!(!created.replayed);
    let id = created.deployment.id.to_string();
    eventually(
        "the deployment to succeed",
        Duration::from_secs(90),
        || async {
            let v = c.api(0).deployment(&id).await.map_err(|e| e.to_string())?;
            match v.state {
                DeploymentState::Success => Ok(()),
                DeploymentState::Failed | DeploymentState::RolledBack => {
                    panic!("deployment failed: {v:?}")
                }
                other => Err(format!("{other}: {}", v.phase.as_str())),
            }
        },
    )
    .await;

    let coordinator = c.api(0).metrics().await.unwrap();
    let scraper = Pki::shared().client_as(Role::Client, "prometheus");
    let agent_metrics = scraper
        .get(format!("https://{}/metrics", agent.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    remove_containers(SERVICE);

    // What the dashboard and alert rules rely on is there.
    for needle in [
        "sluice_raft_is_leader 1",
        "sluice_certificate_expiry_timestamp_seconds",
        "sluice_locks_held",
        &format!("sluice_agent_up{{server=\"{SERVER}\"}} 1"),
        &format!("sluice_ports_free{{server=\"{SERVER}\"}} 9"),
        &format!("sluice_deployments_total{{service=\"{SERVICE}\",status=\"success\"}} 1"),
    ] {
        assert!(
            coordinator.contains(needle),
            "{needle} missing from the coordinator's metrics:\n{coordinator}"
        );
    }
    // No notification sink is configured here: the documented series exist all the same,
    // at zero (a dashboard or alert must see 0, not "no data").
    for needle in [
        "sluice_notifications_queued{sink=\"telegram\"} 0",
        "sluice_notifications_queued{sink=\"webhook\"} 0",
        "sluice_notifications_total{outcome=\"failed\",sink=\"webhook\"} 0",
        "sluice_notifications_total{outcome=\"sent\",sink=\"telegram\"} 0",
    ] {
        assert!(
            coordinator.contains(needle),
            "{needle} missing from the coordinator's metrics:\n{coordinator}"
        );
    }
    // Every metric the README lists is exported (families whose labels name something
    // that has to happen first — a refused key — appear with their first child).
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    let section = readme
        .split("## Metrics and monitoring")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's metrics section");
    let scraped = format!("{coordinator}\n{agent_metrics}");
    for line in section.lines().filter(|l| l.starts_with("| `sluice_")) {
        let cell = line.split('|').nth(1).unwrap_or("");
        for name in cell.split('`').filter(|n| n.starts_with("sluice_")) {
            if name == "sluice_agent_fencing_refusals_total" {
                continue;
            }
            assert!(
                scraped.contains(&format!("# TYPE {name} ")),
                "the README lists {name}, which no daemon exports"
            );
        }
    }
    for needle in [
        "sluice_agent_docker_reachable 1",
        "sluice_certificate_expiry_timestamp_seconds",
        "sluice_agent_health_checks_total{result=\"pass\"} 1",
        "sluice_agent_health_checks_total{result=\"fail\"} 0",
        &format!("sluice_agent_containers{{service=\"{SERVICE}\",state=\"running\"}} 1"),
        "sluice_agent_operations{",
    ] {
        assert!(
            agent_metrics.contains(needle),
            "{needle} missing from the agent's metrics:\n{agent_metrics}"
        );
    }

    if lint {
        let findings: Vec<String> = [("coordinator", &coordinator), ("agent", &agent_metrics)]
            .into_iter()
            .filter_map(|(who, text)| {
                promtool_check(text)
                    .err()
                    .map(|e| format!("--- {who} ---\n{e}\n--- scraped ---\n{text}"))
            })
            .collect();
        assert!(
            findings.is_empty(),
            "promtool check metrics found problems:\n{}",
            findings.join("\n")
        );
    }
}

/// Every metric the daemons export that the dashboard or the rules use.
const KNOWN_METRICS: &[&str] = &[
    "sluice_raft_term",
    "sluice_raft_is_leader",
    "sluice_raft_leader_id",
    "sluice_raft_last_log_index",
    "sluice_raft_committed_index",
    "sluice_raft_applied_index",
    "sluice_raft_snapshot_index",
    "sluice_raft_snapshot_bytes",
    "sluice_raft_log_flushes_total",
    "sluice_raft_log_flush_seconds_total",
    "sluice_raft_members",
    "sluice_raft_replication_lag",
    "sluice_raft_batches_total",
    "sluice_raft_batched_commands_total",
    "sluice_raft_read_index_rounds_total",
    "sluice_raft_append_rpcs_total",
    "sluice_raft_append_rpcs_over_budget_total",
    "sluice_raft_append_rpc_max_seconds",
    "sluice_certificate_expiry_timestamp_seconds",
    "sluice_deployments_total",
    "sluice_deployments_in_flight",
    "sluice_deployment_duration_seconds_bucket",
    "sluice_ports_used",
    "sluice_ports_free",
    "sluice_agent_up",
    "sluice_locks_held",
    "sluice_lock_waits",
    "sluice_lock_waits_total",
    "sluice_raft_entries_since_snapshot",
    "sluice_audit_records",
    "sluice_notifications_total",
    "sluice_notifications_queued",
    "sluice_agent_docker_reachable",
    "sluice_agent_containers",
    "sluice_agent_operations",
    "sluice_agent_health_checks_total",
    "sluice_agent_fencing_refusals_total",
];

/// The `sluice_*` names a PromQL expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sluice_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

/// The dashboard is valid JSON, and it and the alert rules only query metrics that exist
/// (a typo there is a panel that stays empty, or an alert that never fires).
#[test]
fn dashboard_and_alerts_name_only_known_metrics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/monitoring");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sluice-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is valid JSON");
    let mut exprs: Vec<String> = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(q) = v["query"]["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut ids: Vec<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");
    // The whole rules file: its comments and annotations may name metrics too.
    let rules = std::fs::read_to_string(dir.join("sluice-alerts.yml")).expect("rules");
    exprs.push(rules);
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            assert!(
                KNOWN_METRICS.contains(&name.as_str()),
                "unknown metric {name} in {e}"
            );
            used.insert(name);
        }
    }
    for m in KNOWN_METRICS {
        assert!(used.contains(*m), "{m} is on no dashboard panel or alert");
    }
}
