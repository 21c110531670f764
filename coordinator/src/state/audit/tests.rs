use std::time::Duration;

use serde_json::json;
use sluice_common::audit::verify;
use sluice_common::deployment::DeploymentEvent;
use sluice_common::locks::Acquire;
use sluice_common::names::{Holder, ServerName};
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::super::{Command, Request, State};
use super::*;

fn run(state: &mut State, actor: &str, cmd: Command) -> Response {
    let index = state.audit.len() + 100;
    state.apply(
        &Request {
            at: Timestamp(index * 1000),
            actor: actor.into(),
            cmd,
        },
        index,
    )
}

fn acquire(key: &str, who: &str) -> Command {
    Command::AcquireLock {
        acquire: Acquire {
            key: LockKey::parse(key).unwrap(),
            holder: Holder::parse(who).unwrap(),
            reason: "migration".into(),
            ttl: Duration::from_secs(60),
        },
    }
}

#[test]
fn a_deployment_leaves_a_verifiable_trail_without_its_secrets() {
    let mut s = State::default();
    let id = Uuid::new_v4();
    let request = serde_json::from_value(json!({
        "service": "api", "image": "registry/api:v2", "servers": ["web-1"],
        "container_port": 8080, "health": {"kind": "tcp"},
        "env": {"PLAIN": {"value": "shown-value"},
                "DB_PASSWORD": {"value": "hunter2-secret", "secret": true}},
    }))
    .unwrap();
    let web1 = ServerName::parse("web-1").unwrap();
    let dep = |cmd| Command::Deployment { cmd };
    run(
        &mut s,
        "token:ci",
        dep(DeploymentCommand::Create {
            id,
            request: Box::new(request),
            targets: vec![web1],
            idempotency: None,
            actor: "token:ci".into(),
        }),
    );
    run(
        &mut s,
        "system:sequencer",
        dep(DeploymentCommand::Start {
            id,
            lock_ttl: Duration::from_secs(30),
        }),
    );
    // Progress notes and renewals are not audited.
    run(
        &mut s,
        "system:sequencer",
        dep(DeploymentCommand::Renew {
            id,
            lock_ttl: Duration::from_secs(30),
        }),
    );
    for event in [DeploymentEvent::ChecksPassed, DeploymentEvent::AllHealthy] {
        run(
            &mut s,
            "system:sequencer",
            dep(DeploymentCommand::Event {
                id,
                event,
                reason: "ok".into(),
                failure: None,
                noop: false,
            }),
        );
    }
    // An event the state machine refuses is recorded as refused.
    run(
        &mut s,
        "system:sequencer",
        dep(DeploymentCommand::Event {
            id,
            event: DeploymentEvent::ChecksPassed,
            reason: "late".into(),
            failure: None,
            noop: false,
        }),
    );
    let recs = s.audit.records();
    let actions: Vec<&str> = recs.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "deployment.create",
            "deployment.validating",
            "deployment.in_progress",
            "deployment.success",
            "deployment.refused_command",
        ]
    );
    assert_eq!(recs[0].actor, "token:ci");
    assert_eq!(recs[1].actor, "system:sequencer");
    assert!(recs.iter().all(|r| r.service.as_deref() == Some("api")));
    assert_eq!(recs[3].details["from"], "in_progress");
    assert_eq!(recs[3].details["to"], "success");
    assert_eq!(recs[1].details["token"], recs[1].index);
    assert!(
        recs[4].outcome.starts_with("refused: "),
        "{}",
        recs[4].outcome
    );
    assert_eq!(recs[0].details["secret_env"], json!(["DB_PASSWORD"]));
    let all = serde_json::to_string(recs).unwrap();
    assert!(!all.contains("hunter2-secret") && !all.contains("shown-value"));
    assert_eq!(verify(recs), Ok(5));
}

#[test]
fn a_start_waiting_for_the_service_lock_is_not_recorded() {
    let mut s = State::default();
    run(&mut s, "token:ci", acquire("service/api", "someone"));
    let id = Uuid::new_v4();
    let request = serde_json::from_value(json!({
        "service": "api", "image": "registry/api:v2", "servers": ["web-1"],
        "container_port": 8080, "health": {"kind": "tcp"},
    }))
    .unwrap();
    let dep = |cmd| Command::Deployment { cmd };
    run(
        &mut s,
        "token:ci",
        dep(DeploymentCommand::Create {
            id,
            request: Box::new(request),
            targets: vec![ServerName::parse("web-1").unwrap()],
            idempotency: None,
            actor: "token:ci".into(),
        }),
    );
    for _ in 0..3 {
        let start = dep(DeploymentCommand::Start {
            id,
            lock_ttl: Duration::from_secs(30),
        });
        assert!(matches!(
            run(&mut s, "system:sequencer", start),
            Response::Deployment { outcome: Err(_) }
        ));
    }
    let actions: Vec<&str> = s
        .audit
        .records()
        .iter()
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(actions, ["lock.acquire", "deployment.create"]);
}

#[test]
fn locks_are_audited_and_an_overdue_one_is_flagged_once_per_grant() {
    let mut s = State::default();
    run(&mut s, "token:ci", acquire("service/api", "ci-1"));
    // A refused acquisition is not recorded (waiters retry).
    run(&mut s, "token:other", acquire("service/api", "ci-2"));
    assert_eq!(s.audit.len(), 1);
    let token = s.locks.live(s.clock.now()).next().unwrap().token;
    let key = LockKey::parse("service/api").unwrap();
    let flag = || Command::FlagLock {
        key: key.clone(),
        token,
    };
    run(&mut s, "system:notifier", flag());
    run(&mut s, "system:notifier", flag());
    let stale = Command::FlagLock {
        key: key.clone(),
        token: sluice_common::locks::FencingToken(token.0 - 1),
    };
    run(&mut s, "system:notifier", stale);
    let recs = s.audit.records();
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(recs[1].action, "lock.held_too_long");
    assert_eq!(recs[1].service.as_deref(), Some("api"));
    assert_eq!(recs[1].details["holder"], "ci-1");
    // The delivery cursor is bookkeeping, not an audited action.
    run(
        &mut s,
        "system:notifier",
        Command::NotifyDelivered {
            sink: "telegram".into(),
            seq: 2,
        },
    );
    assert_eq!(s.audit.len(), 2);
    assert_eq!(s.notify_cursor["telegram"], 2);
    // The chain survives the snapshot encoding.
    let back: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(back.audit, s.audit);
    assert_eq!(verify(back.audit.records()), Ok(2));
}
