//! Response schemas against what serde writes for real values.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_common::api::*;
use sluice_common::audit::{AuditChain, AuditPage, Entry};
use sluice_common::deployment::{DeploymentState, Phase};
use sluice_common::locks::FencingToken;
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::ports::PortRange;

use super::tests::{assert_fits, lease, ts};

#[test]
fn response_schemas_describe_what_serde_emits() {
    let lock = LockView::from(lease());
    assert_fits("LockView", &lock);
    assert_fits("LockList", &LockList { locks: vec![lock] });

    let web1 = ServerName::parse("web-1").unwrap();
    let web = ServiceName::parse("web").unwrap();
    let image = sluice_common::image::ImageRef::parse("registry.example.com/web:1.4.2").unwrap();
    let id = uuid::Uuid::new_v4();
    let step = |state, some: bool| ServerStepView {
        server: web1.clone(),
        port: some.then_some(20000),
        state,
        operation: some.then(uuid::Uuid::new_v4),
        rollback_operation: some.then(uuid::Uuid::new_v4),
        detail: "healthy".into(),
        log_tail: some.then(|| "boom".into()),
    };
    let view = |some: bool| DeploymentView {
        id,
        service: web.clone(),
        image: image.clone(),
        image_digest: some.then(|| format!("sha256:{}", "a".repeat(64))),
        state: DeploymentState::InProgress,
        sub_state: sluice_common::deployment::SubState::CancelRequested,
        phase: Phase::new("pulling").unwrap(),
        token: some.then_some(FencingToken(9)),
        targets: vec![web1.clone()],
        transitions: vec![TransitionView {
            from: DeploymentState::Pending,
            to: DeploymentState::Validating,
            at: ts("2026-11-25T10:30:00.000Z"),
            reason: "lock taken".into(),
        }],
        validation: vec![CheckResult {
            check: "agent_reachable".into(),
            server: web1.clone(),
            ok: true,
            detail: "ok".into(),
            duration_ms: 3,
        }],
        servers: vec![
            step(ServerStepState::RestoredByAgent, some),
            step(ServerStepState::Pending, false),
        ],
        failure: some.then(|| "health check failed".into()),
        canary: some.then(|| sluice_common::api::CanaryView {
            step: 1,
            steps: 2,
            weight: 50,
            step_at: ts("2026-11-25T10:30:00.500Z"),
            paused: Some("paused by token:ci".into()),
            promoted: false,
            measurements: vec![sluice_common::api::Measurement {
                step: 1,
                check: "error_ratio".into(),
                at: ts("2026-11-25T10:30:00.900Z"),
                value: Some(0.25),
                condition: "value <= 0.05".into(),
                outcome: sluice_common::analysis::Outcome::Failed,
                detail: "10 of 40 requests to the new version failed".into(),
            }],
        }),
        noop: false,
        rollback_requested: false,
        cancel_requested: some,
        env: BTreeMap::from([(
            sluice_common::names::EnvName::parse("DATABASE_URL").unwrap(),
            "<redacted>".to_string(),
        )]),
        spec: if some {
            serde_json::from_value(serde_json::json!({
                "command": ["serve"], "entrypoint": ["/app"], "working_dir": "/srv",
                "user": "1000:1000", "volumes": ["data:/data", "/etc/ssl:/etc/ssl:ro"],
                "tmpfs": ["/tmp:size=64m"], "privileged": true, "network_mode": "host",
                "cap_add": ["NET_ADMIN"],
                "resources": {"memory": "256m", "memory_reservation": "128m", "cpus": 0.5, "pids_limit": 64},
                "restart": "on-failure:3", "networks": [{"name": "backend", "aliases": ["web"]}],
                "labels": {"com.example.team": "web"}, "stop_signal": "SIGQUIT",
                "stop_grace": "20s", "log": {"driver": "local", "options": {"max-size": "5m"}}
            }))
            .unwrap()
        } else {
            Default::default()
        },
        actor: "token:ci".into(),
        created_at: ts("2026-11-25T10:30:00.000Z"),
        updated_at: ts("2026-11-25T10:30:01.000Z"),
    };
    assert_fits("DeploymentView", &view(true));
    assert_fits("DeploymentView", &view(false));
    for next in [None, Some("12".to_string())] {
        let list = DeploymentList {
            deployments: vec![view(true)],
            next,
        };
        assert_fits("DeploymentList", &list);
    }
    for active in [None, Some(id)] {
        assert_fits(
            "ServiceView",
            &ServiceView {
                service: web.clone(),
                servers: vec![ServiceServerView {
                    server: web1.clone(),
                    image: image.clone(),
                    port: 20000,
                    deployment: id,
                    agent_up: true,
                }],
                active_deployment: active,
            },
        );
    }

    let mut chain = AuditChain::default();
    let at = ts("2026-11-25T10:30:00.000Z");
    chain.append(
        3,
        at,
        "token:ci",
        Entry::ok("lock.acquire", "lock/service/web"),
    );
    chain.append(
        4,
        at,
        "token:ci",
        Entry::ok("deployment.create", format!("deployment/{id}"))
            .service("web")
            .details(json!({"image": "web:1"})),
    );
    for r in chain.records() {
        assert_fits("AuditRecord", r);
    }
    for next_after in [None, Some(2)] {
        let page = AuditPage {
            records: chain.records().to_vec(),
            next_after,
        };
        assert_fits("AuditPage", &page);
    }

    let range = PortRange::parse("20000-32000").unwrap();
    let ports = ServerPortsView {
        server: web1.clone(),
        range,
        used: 1,
        free: 12000,
        assignments: BTreeMap::from([(web.clone(), 20000)]),
        host_bound: vec![20001],
    };
    assert_fits("ServerPortsView", &ports);
    assert_fits(
        "PortsList",
        &PortsList {
            servers: vec![ports],
        },
    );
    assert_fits(
        "PortAllocationView",
        &PortAllocationView {
            server: web1.clone(),
            service: web.clone(),
            port: 20000,
            newly_allocated: true,
        },
    );
    assert_fits("PortReleased", &json!({ "released": 20000 }));
    assert_fits("PortReleased", &json!({ "released": null }));
    assert_fits("ServerRemoved", &json!({ "removed": web1 }));

    for some in [false, true] {
        let server = ServerView {
            name: web1.clone(),
            agent_addr: "10.0.0.1:7100".into(),
            labels: vec![sluice_common::names::Label::parse("env=prod").unwrap()],
            port_range: range,
            forbidden: false,
            cordoned: some,
            up: some,
            last_heartbeat_ms: some.then_some(800),
            docker_version: some.then(|| "27.0".into()),
            agent_version: some.then(|| "0.1.0".into()),
            ports_used: 1,
            ports_free: 2,
        };
        assert_fits("ServerView", &server);
        let status = ClusterStatus {
            node_id: 1,
            state: "leader".into(),
            leader: some.then_some(1),
            term: 2,
            last_log_index: some.then_some(10),
            committed: some.then_some(10),
            applied: some.then_some(10),
            snapshot: some.then_some(5),
            purged: some.then_some(4),
            members: vec![ClusterMember {
                id: 1,
                addr: "127.0.0.1:7000".into(),
                voter: true,
            }],
        };
        assert_fits("ClusterStatus", &status);
        let token = TokenView {
            name: TokenName::parse("ci").unwrap(),
            role: TokenRole::Deployer,
            services: vec![web.clone()],
            created_at: at,
            revoked: some,
            revoked_at: some.then_some(at),
        };
        assert_fits("TokenView", &token);
        assert_fits(
            "CreatedToken",
            &CreatedToken {
                token,
                secret: format!("sluice_{}", "ab".repeat(32)),
            },
        );
    }
    assert_fits("Empty", &crate::node::Empty {});
    assert_fits("Health", &json!({"status": "ok"}));
    assert_fits(
        "Ready",
        &json!({"status": "ready", "leader": 1, "applied": 7}),
    );
}
