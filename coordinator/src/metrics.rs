//! `/metrics`: Prometheus text format, computed at scrape time from the node's Raft
//! metrics and its applied state (so every node exports the same replicated figures, and
//! nothing is counted twice across a leader change).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sluice_common::deployment::DeploymentState;

use crate::counters::{Counters, OUTCOMES, SINKS};
use crate::node::Node;
use crate::state::deployments::{PrunedCounts, DURATION_BOUNDS_MS};

/// What `/metrics` reads: this node, its listener's TLS, and this process's counters.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The node (Raft metrics and applied state).
    pub node: &'a Node,
    /// The listener's TLS configuration (certificate expiry).
    pub tls: Option<&'a sluice_common::tls::ServerTls>,
    /// What this process counted.
    pub counters: &'a Counters,
}

fn gauge(reg: &Registry, name: &str, help: &str, v: f64) {
    let g = Gauge::new(name, help).expect("valid metric");
    g.set(v);
    reg.register(Box::new(g)).expect("unique metric");
}

fn counter(reg: &Registry, name: &str, help: &str, v: u64) {
    let c = prometheus::IntCounter::new(name, help).expect("valid metric");
    c.inc_by(v);
    reg.register(Box::new(c)).expect("unique metric");
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn int_gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Renders every metric.
pub fn render(app: Sources<'_>) -> String {
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
    let (batches, batched, read_rounds) = app.node.batching_stats();
    counter(
        &reg,
        "sluice_raft_batches_total",
        "Raft entries this node proposed as leader holding a batch of commands (group commit).",
        batches,
    );
    counter(
        &reg,
        "sluice_raft_batched_commands_total",
        "Commands in those entries; divided by sluice_raft_batches_total, the mean batch size.",
        batched,
    );
    counter(
        &reg,
        "sluice_raft_read_index_rounds_total",
        "Leadership confirmations made for linearizable reads (one serves every read queued before it).",
        read_rounds,
    );
    let appends = &crate::raft::network::APPENDS;
    counter(
        &reg,
        "sluice_raft_append_rpcs_total",
        "Append RPCs (replication and heartbeats) this node sent as leader.",
        appends.sent.load(std::sync::atomic::Ordering::Relaxed),
    );
    counter(
        &reg,
        "sluice_raft_append_rpcs_over_budget_total",
        "Append RPCs that took the heartbeat interval (their timeout) or longer.",
        appends
            .over_budget
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    gauge(
        &reg,
        "sluice_raft_append_rpc_max_seconds",
        "The slowest append RPC this process sent.",
        appends
            .max_micros
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            / 1e6,
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
    let flushes = &crate::raft::store::FLUSHES;
    counter(
        &reg,
        "sluice_raft_log_flushes_total",
        "Durable writes this process made: Raft log appends (a write, then fdatasync) and metadata flushes (the vote and purge point, through sled).",
        flushes.count.load(std::sync::atomic::Ordering::Relaxed),
    );
    let spent = prometheus::CounterVec::new(
        Opts::new(
            "sluice_raft_log_flush_seconds_total",
            "Time spent in those writes, by step (write: log records; fdatasync: of the log; sled: the metadata flush).",
        ),
        &["step"],
    )
    .expect("valid metric");
    for (step, micros) in [
        ("write", &flushes.write_micros),
        ("fdatasync", &flushes.sync_micros),
        ("sled", &flushes.sled_micros),
    ] {
        spent
            .with_label_values(&[step])
            .inc_by(micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6);
    }
    reg.register(Box::new(spent)).expect("unique metric");
    gauge(
        &reg,
        "sluice_raft_snapshot_bytes",
        "Size of the last snapshot this node wrote or read.",
        crate::raft::store::SNAPSHOT_BYTES.load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    gauge(
        &reg,
        "sluice_raft_members",
        "Cluster members.",
        s.members.len() as f64,
    );
    if let Some(t) = app.tls.map(|t| t.not_after()) {
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

    let total = counter_vec(
        &reg,
        "sluice_deployments_total",
        "Settled deployments by final status and service.",
        &["status", "service"],
    );
    let in_flight = int_gauge_vec(
        &reg,
        "sluice_deployments_in_flight",
        "Deployments being driven, by state.",
        &["state"],
    );
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "sluice_deployment_duration_seconds",
            "Time from acceptance to a final status, by service and status.",
        )
        .buckets(
            DURATION_BOUNDS_MS
                .iter()
                .map(|ms| *ms as f64 / 1000.0)
                .collect(),
        ),
        &["service", "status"],
    )
    .expect("valid metric");
    reg.register(Box::new(duration.clone()))
        .expect("unique metric");
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
    let audit_records = IntGauge::new(
        "sluice_audit_records",
        "Records in the hash-chained audit trail.",
    )
    .expect("valid metric");
    reg.register(Box::new(audit_records.clone()))
        .expect("unique metric");
    lock_waits(&reg, app.counters);
    replication(&reg, app.node);
    notifications(&reg, app.counters);
    let locks = IntGauge::new("sluice_locks_held", "Live locks.").expect("valid metric");
    reg.register(Box::new(locks.clone()))
        .expect("unique metric");

    let pruned = app.node.read(|a| {
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
        // Derived from the replicated records at every scrape: every node agrees, and a
        // leader change or a restart neither loses nor double-counts a deployment.
        for (_, d) in st.deployments.all.metas() {
            if d.needs_driving {
                in_flight.with_label_values(&[d.state.as_str()]).inc();
                continue;
            }
            let labels = [d.service.as_str(), d.state.as_str()];
            total.with_label_values(&[labels[1], labels[0]]).inc();
            duration
                .with_label_values(&labels)
                .observe(d.updated_at.since(d.created_at).as_secs_f64());
        }
        // Forgotten deployments still count: a counter never goes down (their durations
        // are added to the histogram after gathering, see `add_pruned`).
        for (service, by_state) in &st.deployments.pruned {
            for (state, t) in by_state {
                total
                    .with_label_values(&[state.as_str(), service.as_str()])
                    .inc_by(t.count);
                duration.with_label_values(&[service.as_str(), state.as_str()]);
            }
        }
        audit_records.set(st.audit.len() as i64);
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
        st.deployments.pruned.clone()
    });

    let mut families = reg.gather();
    add_pruned(&mut families, &pruned);
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding cannot fail");
    String::from_utf8(out).expect("utf-8")
}

/// Lock requests waiting on this node, and how many ever waited.
fn lock_waits(reg: &Registry, counters: &Counters) {
    let (waiting, waited) = counters.lock_waits();
    gauge(
        reg,
        "sluice_lock_waits",
        "Lock acquisitions waiting for a holder to let go, on this node.",
        waiting as f64,
    );
    let c = counter_vec(
        reg,
        "sluice_lock_waits_total",
        "Lock acquisitions that had to wait, on this node.",
        &[],
    );
    c.with_label_values(&[] as &[&str]).inc_by(waited);
}

/// On the leader: how far each follower's log lags its own; on every node, how many
/// entries the log holds beyond the last snapshot.
fn replication(reg: &Registry, node: &Node) {
    let m = node.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    gauge(
        reg,
        "sluice_raft_entries_since_snapshot",
        "Log entries after the last snapshot on this node.",
        last.saturating_sub(m.snapshot.map_or(0, |s| s.index)) as f64,
    );
    let lag = int_gauge_vec(
        reg,
        "sluice_raft_replication_lag",
        "Entries the leader has that a member has not acknowledged (leader only).",
        &["node"],
    );
    for (node, matched) in m.replication.iter().flatten() {
        let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
        lag.with_label_values(&[&node.to_string()])
            .set(i64::try_from(behind).unwrap_or(i64::MAX));
    }
}

/// What this node sent while it led.
fn notifications(reg: &Registry, counters: &Counters) {
    let sent = counter_vec(
        reg,
        "sluice_notifications_total",
        "Notification attempts by sink and outcome (sent, retried, failed), on this node.",
        &["sink", "outcome"],
    );
    let queued = int_gauge_vec(
        reg,
        "sluice_notifications_queued",
        "Events waiting to be delivered, by sink (as the leader last saw it).",
        &["sink"],
    );
    // Every documented series exists from the start, at zero, whether or not a sink is
    // configured: dashboards and alerts then see 0, not "no data".
    for sink in SINKS {
        for outcome in OUTCOMES {
            sent.with_label_values(&[sink, outcome]);
        }
        queued.with_label_values(&[sink]);
    }
    let s = counters.deliveries();
    for ((sink, outcome), n) in &s.attempts {
        sent.with_label_values(&[sink, outcome]).inc_by(*n);
    }
    for (sink, n) in &s.queued {
        queued
            .with_label_values(&[sink])
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
}

/// Adds the forgotten deployments' durations to `sluice_deployment_duration_seconds` (its
/// series for each forgotten service and status exist: `render` creates them).
fn add_pruned(families: &mut [prometheus::proto::MetricFamily], pruned: &PrunedCounts) {
    let family = families
        .iter_mut()
        .find(|f| f.name() == "sluice_deployment_duration_seconds");
    for m in family.into_iter().flat_map(|f| f.mut_metric().iter_mut()) {
        let label = |n: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == n)
                .map(|l| l.value().to_string())
                .unwrap_or_default()
        };
        let (service, status) = (label("service"), label("status"));
        let Some(t) = pruned
            .iter()
            .find(|(s, _)| s.as_str() == service)
            .and_then(|(_, by)| by.get(&status))
        else {
            continue;
        };
        let mut h = m.get_histogram().clone();
        h.set_sample_count(h.get_sample_count() + t.count);
        h.set_sample_sum(h.get_sample_sum() + t.duration_ms as f64 / 1000.0);
        let mut buckets = h.get_bucket().to_vec();
        for (b, n) in buckets.iter_mut().zip(&t.within) {
            b.set_cumulative_count(b.cumulative_count() + n);
        }
        h.set_bucket(buckets);
        m.set_histogram(h);
    }
}
