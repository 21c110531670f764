//! `/metrics`: Prometheus text format, computed at scrape time from the node's Raft
//! metrics and its applied state (so every node exports the same replicated figures, and
//! nothing is counted twice across a leader change).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use sluice_common::deployment::DeploymentState;

use crate::api::App;

fn gauge(reg: &Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::new(name, help).expect("valid metric");
    g.set(v);
    reg.register(Box::new(g)).expect("unique metric");
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn int_gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Renders every metric.
pub fn render(app: &App) -> String {
    let reg = Registry::new();
    let s = app.node.status();
    let opt = |v: Option<u64>| v.map_or(0.0, |x| x as f64);
    gauge(
        &reg,
        "sluice_raft_term",
        "Current Raft term.",
        s.term as f64,
    );
    gauge(
        &reg,
        "sluice_raft_is_leader",
        "1 if this node is the leader.",
        f64::from(u8::from(s.leader == Some(s.node_id))),
    );
    gauge(
        &reg,
        "sluice_raft_leader_id",
        "The leader's node id as this node knows it (0: none).",
        opt(s.leader),
    );
    gauge(
        &reg,
        "sluice_raft_last_log_index",
        "Index of the last log entry on this node.",
        opt(s.last_log_index),
    );
    gauge(
        &reg,
        "sluice_raft_committed_index",
        "Committed index as this node knows it.",
        opt(s.committed),
    );
    gauge(
        &reg,
        "sluice_raft_applied_index",
        "Last applied index on this node.",
        opt(s.applied),
    );
    gauge(
        &reg,
        "sluice_raft_snapshot_index",
        "Index of the last snapshot.",
        opt(s.snapshot),
    );
    gauge(
        &reg,
        "sluice_raft_members",
        "Cluster members.",
        s.members.len() as f64,
    );
    if let Some(t) = app.tls.as_ref().map(|t| t.not_after()) {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge(
            &reg,
            "sluice_certificate_expiry_timestamp_seconds",
            "When this node's TLS certificate expires (Unix time).",
            secs,
        );
    }

    let total = int_gauge_vec(
        &reg,
        "sluice_deployments_total",
        "Deployments by final status and service.",
        &["status", "service"],
    );
    let in_flight = int_gauge_vec(
        &reg,
        "sluice_deployments_in_flight",
        "Deployments being driven, by state.",
        &["state"],
    );
    let duration = gauge_vec(
        &reg,
        "sluice_deployment_last_duration_seconds",
        "Duration of the last settled deployment per service.",
        &["service"],
    );
    let ports_used = int_gauge_vec(
        &reg,
        "sluice_ports_used",
        "Ports of the server's range in use.",
        &["server"],
    );
    let ports_free = int_gauge_vec(
        &reg,
        "sluice_ports_free",
        "Ports of the server's range free.",
        &["server"],
    );
    let agent_up = int_gauge_vec(
        &reg,
        "sluice_agent_up",
        "1 if the server's agent is up.",
        &["server"],
    );
    let locks = IntGauge::new("sluice_locks_held", "Live locks.").expect("valid metric");
    reg.register(Box::new(locks.clone()))
        .expect("unique metric");

    app.node.read(|a| {
        let st = &a.state;
        let now = st
            .clock
            .now()
            .max(sluice_common::time::Timestamp::from_system(
                SystemTime::now(),
            ));
        locks.set(st.locks.live(now).count() as i64);
        for s in DeploymentState::ALL.iter().filter(|s| s.is_active()) {
            in_flight.with_label_values(&[s.as_str()]).set(0);
        }
        let mut last: std::collections::BTreeMap<&str, (u64, f64)> = Default::default();
        for d in st.deployments.all.values() {
            if d.needs_driving() {
                in_flight.with_label_values(&[d.state.as_str()]).inc();
                continue;
            }
            let svc = d.request.service.as_str();
            total.with_label_values(&[d.state.as_str(), svc]).inc();
            let took = d.updated_at.since(d.created_at).as_secs_f64();
            if last.get(svc).is_none_or(|(seq, _)| *seq < d.seq) {
                last.insert(svc, (d.seq, took));
            }
        }
        for (svc, (_, took)) in last {
            duration.with_label_values(&[svc]).set(took);
        }
        for (server, p) in st.ports.servers() {
            ports_used
                .with_label_values(&[server.as_str()])
                .set(i64::from(p.used_count()));
            ports_free
                .with_label_values(&[server.as_str()])
                .set(i64::from(p.free_count()));
        }
        for (server, r) in &st.servers {
            agent_up
                .with_label_values(&[server.as_str()])
                .set(i64::from(r.up));
        }
    });

    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("text encoding cannot fail");
    String::from_utf8(out).expect("utf-8")
}
