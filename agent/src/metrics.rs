//! `/metrics` on the agent: Docker reachability, containers by service and state,
//! operations by kind and outcome, health checks by result, and the certificate's expiry.
//! Served on the agent's mTLS listener to coordinator and operator (client-role)
//! certificates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use prometheus::{Encoder, Gauge, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::Agent;

/// Finished health checks since the process started: `[pass, fail]`. Process-wide, like
/// any Prometheus counter (it restarts from zero with the process).
static HEALTH_CHECKS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Counts one finished health check (of a new container, or of the previous one during a
/// rollback) in `sluice_agent_health_checks_total{result}`.
pub fn health_check_finished(passed: bool) {
    HEALTH_CHECKS[usize::from(!passed)].fetch_add(1, Ordering::Relaxed);
}

fn int_gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(reg: &Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::new(name, help).expect("valid metric");
    g.set(v);
    reg.register(Box::new(g)).expect("unique metric");
}

/// Renders every metric (asks Docker for the container list).
pub async fn render(agent: &Agent) -> String {
    let reg = Registry::new();
    let reach = agent.engine.reachability();
    gauge(
        &reg,
        "sluice_agent_docker_reachable",
        "1 if the Docker daemon answers.",
        f64::from(u8::from(reach.reachable)),
    );
    let expiry = agent
        .tls
        .not_after()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauge(
        &reg,
        "sluice_certificate_expiry_timestamp_seconds",
        "When this agent's TLS certificate expires (Unix time).",
        expiry,
    );

    let containers = int_gauge_vec(
        &reg,
        "sluice_agent_containers",
        "Managed containers by service and Docker state.",
        &["service", "state"],
    );
    if let Ok(all) = agent.engine.all_containers().await {
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        for (service, c) in all {
            *counts
                .entry((service.to_string(), c.status.clone()))
                .or_default() += 1;
        }
        for ((service, state), n) in counts {
            containers.with_label_values(&[&service, &state]).set(n);
        }
    }
    let ops = int_gauge_vec(
        &reg,
        "sluice_agent_operations",
        "Operations by kind and state (including finished ones kept on disk).",
        &["kind", "state"],
    );
    // From the store's in-memory summaries: a scrape decodes no record.
    for ((kind, state), n) in agent.ops.store().op_counts() {
        let name = |v: serde_json::Result<serde_json::Value>| {
            v.ok()
                .and_then(|k| k.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let (kind, state) = (
            name(serde_json::to_value(kind)),
            name(serde_json::to_value(state)),
        );
        ops.with_label_values(&[&kind, &state]).set(n);
    }
    let checks = IntCounterVec::new(
        Opts::new(
            "sluice_agent_health_checks_total",
            "Finished container health checks by result (pass or fail).",
        ),
        &["result"],
    )
    .expect("valid metric");
    reg.register(Box::new(checks.clone()))
        .expect("unique metric");
    for (i, result) in ["pass", "fail"].into_iter().enumerate() {
        checks
            .with_label_values(&[result])
            .inc_by(HEALTH_CHECKS[i].load(Ordering::Relaxed));
    }
    let refusals = IntCounterVec::new(
        Opts::new(
            "sluice_agent_fencing_refusals_total",
            "Requests refused because their fencing token was lower than one seen (stale_fencing_token), by lock key.",
        ),
        &["key"],
    )
    .expect("valid metric");
    reg.register(Box::new(refusals.clone()))
        .expect("unique metric");
    for (key, n) in agent.ops.fence().refusals() {
        refusals.with_label_values(&[key.as_str()]).inc_by(n);
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("text encoding cannot fail");
    String::from_utf8(out).expect("utf-8")
}
