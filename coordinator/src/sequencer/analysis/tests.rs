use std::collections::BTreeMap;

use sluice_common::agent_api::{OperationTraffic, TargetTraffic};
use sluice_common::analysis::Outcome;
use sluice_common::api::AnalysisCheck;
use sluice_common::names::ServerName;
use sluice_common::time::Timestamp;

use super::*;

fn traffic(ok: u64, failed: u64, slow: u64) -> TargetTraffic {
    TargetTraffic {
        target: "t".into(),
        by_class: [("2xx".to_string(), ok), ("5xx".to_string(), failed)]
            .into_iter()
            .collect(),
        // Everything under 10 ms but `slow` requests between 0.5 s and 1 s.
        buckets: vec![
            (0.01, ok + failed),
            (0.5, ok + failed),
            (1.0, ok + failed + slow),
        ],
        count: ok + failed + slow,
    }
}

fn readings(at: u64, servers: &[(u64, u64, u64, u64)]) -> Readings {
    Readings {
        step: 0,
        at: Timestamp(at),
        servers: servers
            .iter()
            .enumerate()
            .map(|(i, &(new_ok, new_bad, old_ok, slow))| {
                (
                    ServerName::parse(&format!("s{i}")).unwrap(),
                    Ok(OperationTraffic {
                        new: Some(traffic(new_ok, new_bad, slow)),
                        previous: Some(traffic(old_ok, 0, 0)),
                    }),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn checks() -> Vec<AnalysisCheck> {
    serde_json::from_value(serde_json::json!([
        {"kind": "error_ratio", "max": 0.05},
        {"kind": "error_ratio_increase", "max": 0.01},
        {"kind": "latency_p99", "max_ms": 100.0},
        {"kind": "latency_p99_increase", "max_ms": 50.0},
        {"kind": "prometheus", "query": "up", "success": {"op": ">=", "threshold": 1.0}},
    ]))
    .unwrap()
}

#[test]
fn the_error_ratio_sums_every_servers_window_of_the_new_version() {
    let before = readings(0, &[(100, 0, 900, 0), (50, 0, 450, 0)]);
    // 40 + 40 new requests, 8 + 8 of them failed: 20 %.
    let after = readings(2000, &[(132, 8, 1260, 0), (82, 8, 810, 0)]);
    let m = builtins(&checks(), 0, &before, &after);
    assert_eq!(m.len(), 4, "the prometheus check is not a built-in");
    assert_eq!(m[0].check, "error_ratio");
    assert_eq!(m[0].value, Some(0.2));
    assert_eq!(m[0].outcome, Outcome::Failed);
    assert_eq!(m[0].condition, "value <= 0.05");
    assert_eq!(m[0].detail, "16 of 80 requests to the new version failed");
    assert_eq!(m[0].at, Timestamp(2000));
    assert_eq!(m[1].value, Some(0.2), "the old version failed nothing");
    assert_eq!(m[1].outcome, Outcome::Failed);
    // Every request under 10 ms: p99 within the first bucket.
    assert!(m[2].value.unwrap() <= 10.0);
    assert_eq!(m[2].outcome, Outcome::Successful);
}

#[test]
fn slow_requests_fail_the_latency_checks() {
    let before = readings(0, &[(0, 0, 0, 0)]);
    let after = readings(1000, &[(90, 0, 900, 10)]);
    let m = builtins(&checks(), 0, &before, &after);
    assert!(m[2].value.unwrap() > 500.0, "{:?}", m[2]);
    assert_eq!(m[2].outcome, Outcome::Failed);
    assert_eq!(m[3].outcome, Outcome::Failed);
    assert_eq!(m[0].outcome, Outcome::Successful);
}

#[test]
fn no_request_to_the_new_version_is_no_data_and_fails() {
    let before = readings(0, &[(10, 0, 100, 0)]);
    let after = readings(1000, &[(10, 0, 200, 0)]);
    let m = builtins(&checks(), 0, &before, &after);
    assert_eq!(m[0].value, None);
    assert_eq!(m[0].outcome, Outcome::Failed);
    assert!(
        m[0].detail.starts_with("no data: 0 of 0"),
        "{}",
        m[0].detail
    );
}

#[test]
fn an_unreadable_server_makes_every_builtin_an_error() {
    let before = readings(0, &[(10, 0, 100, 0), (10, 0, 100, 0)]);
    let mut after = readings(1000, &[(20, 0, 200, 0), (20, 0, 200, 0)]);
    *after.servers.values_mut().next().unwrap() = Err("agent unreachable".into());
    let m = builtins(&checks(), 0, &before, &after);
    assert!(m
        .iter()
        .all(|m| m.outcome == Outcome::Error && m.value.is_none()));
    assert_eq!(m[0].detail, "proxy counters: s0: agent unreachable");
}

#[test]
fn a_proxy_restart_counts_from_zero() {
    let before = readings(0, &[(1000, 0, 9000, 0)]);
    let after = readings(1000, &[(30, 3, 270, 0)]);
    let m = builtins(&checks(), 0, &before, &after);
    let r = m[0].value.unwrap();
    assert!((r - 3.0 / 33.0).abs() < 1e-9, "{r}");
}
