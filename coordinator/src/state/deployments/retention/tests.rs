//! Pruning through the whole state's `apply`, with injected timestamps.

use std::time::Duration;

use sluice_common::api::{CreateDeploymentRequest, ServerStepState, ServerStepView};
use sluice_common::deployment::{DeploymentEvent, DeploymentState};
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::time::Timestamp;
use uuid::Uuid;

use super::Retention;
use crate::state::deployments::{DeploymentCommand, DeploymentError, DeploymentOutcome};
use crate::state::{Command, Request, Response, State};

const HOUR: u64 = 3_600_000;

fn req(service: &str, image: &str) -> CreateDeploymentRequest {
    serde_json::from_value(serde_json::json!({
        "service": service, "image": image, "servers": ["web-1"],
        "container_port": 8080, "health": {"kind": "tcp"}
    }))
    .unwrap()
}

struct World {
    s: State,
    index: u64,
    now: u64,
}

impl World {
    fn new() -> Self {
        Self {
            s: State::default(),
            index: 0,
            now: 1_000,
        }
    }

    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        self.now += 1;
        let r = Request {
            at: Timestamp(self.now),
            actor: "token:test".into(),
            cmd,
        };
        self.s.apply(&r, self.index)
    }

    fn dep(&mut self, cmd: DeploymentCommand) -> Result<DeploymentOutcome, DeploymentError> {
        match self.apply(Command::Deployment { cmd }) {
            Response::Deployment { outcome } => outcome,
            other => panic!("{other:?}"),
        }
    }

    fn create(&mut self, service: &str, image: &str, key: Option<(&str, &str)>) -> Uuid {
        self.dep(DeploymentCommand::Create {
            id: Uuid::new_v4(),
            request: Box::new(req(service, image)),
            targets: vec![ServerName::parse("web-1").unwrap()],
            idempotency: key.map(|(k, h)| (k.into(), h.into())),
            actor: "ci".into(),
        })
        .unwrap()
        .id
    }

    fn event(&mut self, id: Uuid, event: DeploymentEvent) {
        self.dep(DeploymentCommand::Event {
            id,
            event,
            reason: format!("{event:?}"),
            failure: None,
            noop: false,
        })
        .unwrap();
    }

    fn start(&mut self, id: Uuid) {
        self.dep(DeploymentCommand::Start {
            id,
            lock_ttl: Duration::from_secs(60),
        })
        .unwrap();
    }

    /// A deployment that fails validation (touches nothing).
    fn fail(&mut self, service: &str) -> Uuid {
        let id = self.create(service, "app:bad", None);
        self.start(id);
        self.event(id, DeploymentEvent::ChecksFailed);
        id
    }

    fn succeed(&mut self, service: &str, image: &str) -> Uuid {
        let id = self.create(service, image, None);
        self.start(id);
        self.event(id, DeploymentEvent::ChecksPassed);
        self.dep(DeploymentCommand::Progress {
            id,
            phase: None,
            validation: None,
            server: Some(ServerStepView {
                server: ServerName::parse("web-1").unwrap(),
                port: Some(20000),
                state: ServerStepState::Succeeded,
                operation: Some(id),
                rollback_operation: None,
                detail: String::new(),
                log_tail: None,
            }),
        })
        .unwrap();
        self.event(id, DeploymentEvent::AllHealthy);
        id
    }

    fn prune(&mut self, r: Retention) -> (u64, u64) {
        match self.apply(Command::Prune { retention: r }) {
            Response::Pruned { summary } => (summary.deployments, summary.idempotency_keys),
            other => panic!("{other:?}"),
        }
    }

    fn count(&self, service: &str) -> usize {
        let s = ServiceName::parse(service).unwrap();
        self.s.deployments.of_service(&s).count()
    }
}

fn keep(n: u32) -> Retention {
    Retention {
        per_service: Some(n),
        max_age: None,
        idempotency_ttl: Duration::from_millis(24 * HOUR),
    }
}

#[test]
fn two_thousand_deployments_with_a_limit_of_fifty_leave_fifty_in_the_snapshot() {
    let mut w = World::new();
    let first = w.succeed("api", "app:v0");
    let mut ids = vec![first];
    for i in 1..2000 {
        ids.push(if i % 10 == 0 {
            w.succeed("api", &format!("app:v{i}"))
        } else {
            w.fail("api")
        });
    }
    w.succeed("web", "web:v1");
    let in_flight = w.create("api", "app:next", None);
    assert!(w.s.deployments.prune_due(&keep(50), Timestamp(w.now)));
    let (gone, _) = w.prune(keep(50));
    assert_eq!(gone, 2001 - 50);
    assert!(!w.s.deployments.prune_due(&keep(50), Timestamp(w.now)));
    assert!(w.s.deployments.indexes_consistent());

    // The snapshot is the state, serialized: it holds the newest 50 of the service (the
    // pending one among them), and the other service's only deployment.
    let bytes = serde_json::to_vec(&w.s).unwrap();
    let back: State = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, w.s);
    assert!(back.deployments.indexes_consistent());
    assert_eq!(w.count("api"), 50);
    assert_eq!(w.count("web"), 1);
    assert_eq!(back.deployments.all.len(), 51);
    let kept: Vec<Uuid> = back
        .deployments
        .of_service(&ServiceName::parse("api").unwrap())
        .map(|d| d.id)
        .collect();
    assert_eq!(kept[0], in_flight);
    assert_eq!(
        &kept[1..],
        &ids[1951..].iter().rev().copied().collect::<Vec<_>>()[..]
    );
    assert_eq!(back.deployments.in_flight().count(), 1);

    // The service's history names only deployments kept, current last.
    let api = &back.deployments.services[&ServiceName::parse("api").unwrap()];
    assert!(api
        .history
        .iter()
        .all(|id| back.deployments.all.contains_key(id)));
    assert_eq!(api.history.last(), Some(&ids[1990]));
    // Forgotten deployments still count in the totals.
    let pruned = &back.deployments.pruned[&ServiceName::parse("api").unwrap()];
    assert_eq!(pruned.values().map(|t| t.count).sum::<u64>(), 1951);
    assert_eq!(pruned["success"].count + pruned["failed"].count, 1951);
    // Each took a few ms of injected time: within the first bucket.
    assert_eq!(pruned["failed"].within[0], pruned["failed"].count);
}

#[test]
fn the_current_and_previous_deployments_and_those_in_flight_are_always_kept() {
    let mut w = World::new();
    let v1 = w.succeed("api", "app:v1");
    let v2 = w.succeed("api", "app:v2");
    for _ in 0..5 {
        w.fail("api");
    }
    let pending = w.create("api", "app:v3", None);
    w.prune(keep(0));
    let mut left: Vec<Uuid> = w.s.deployments.all.keys().copied().collect();
    left.sort();
    let mut want = vec![v1, v2, pending];
    want.sort();
    assert_eq!(left, want);
    // A manual rollback of the current one still finds the previous.
    w.start(pending);
    w.event(pending, DeploymentEvent::ChecksFailed);
    w.prune(keep(0));
    assert_eq!(w.s.deployments.all.len(), 2);
    w.dep(DeploymentCommand::RequestRollback { id: v2 })
        .unwrap();
    w.prune(keep(0));
    assert!(
        w.s.deployments.all.contains_key(&v2),
        "a rollback asked for is in flight"
    );
    assert!(w.s.deployments.indexes_consistent());
}

#[test]
fn an_age_limit_forgets_settled_deployments_by_their_last_change() {
    let mut w = World::new();
    let v1 = w.succeed("api", "app:v1");
    let old = w.fail("api");
    let v2 = w.succeed("api", "app:v2");
    w.now += 100 * 24 * HOUR;
    let recent = w.fail("api");
    let r = Retention {
        per_service: None,
        max_age: Some(Duration::from_millis(90 * 24 * HOUR)),
        idempotency_ttl: Duration::from_millis(24 * HOUR),
    };
    assert_eq!(w.prune(r), (1, 0));
    assert!(!w.s.deployments.all.contains_key(&old));
    for id in [v1, v2, recent] {
        assert!(w.s.deployments.all.contains_key(&id));
    }
}

#[test]
fn idempotency_keys_older_than_their_expiry_are_forgotten() {
    let mut w = World::new();
    let r = Retention {
        per_service: Some(100),
        max_age: None,
        idempotency_ttl: Duration::from_millis(24 * HOUR),
    };
    let a = w.create("api", "app:v1", Some(("k1", "h1")));
    w.prune(r);
    let replay = |w: &mut World, hash: &str| {
        w.dep(DeploymentCommand::Create {
            id: Uuid::new_v4(),
            request: Box::new(req("api", "app:v2")),
            targets: vec![],
            idempotency: Some(("k1".into(), hash.into())),
            actor: "ci".into(),
        })
    };
    // Within the day: the original, or a conflict with another body.
    w.now += 23 * HOUR;
    assert_eq!(replay(&mut w, "h1").unwrap().id, a);
    assert!(matches!(
        replay(&mut w, "h2"),
        Err(DeploymentError::IdempotencyConflict { .. })
    ));
    // A day after its first use the key is forgotten, even before a prune removes it:
    // the same key makes a new deployment.
    w.now += HOUR;
    let b = replay(&mut w, "h2").unwrap();
    assert!(b.created);
    assert_ne!(b.id, a);
    assert_eq!(w.s.deployments.idempotency["k1"].deployment, b.id);
    // A prune a day later removes the new key too.
    w.now += 24 * HOUR;
    assert!(w.s.deployments.prune_due(&r, Timestamp(w.now)));
    assert_eq!(w.prune(r), (0, 1));
    assert!(w.s.deployments.idempotency.is_empty());
}

#[test]
fn keys_from_before_expiry_are_stamped_by_the_first_prune_and_the_old_encoding_loads() {
    let mut w = World::new();
    let a = w.create("api", "app:v1", None);
    let mut v = serde_json::to_value(&w.s).unwrap();
    v["deployments"]["idempotency"] = serde_json::json!({"old": [a, "h"]});
    let mut s: State = serde_json::from_value(v).unwrap();
    assert_eq!(s.deployments.idempotency["old"].at, None);
    assert_eq!(
        s.deployments.in_flight().count(),
        1,
        "indexes rebuilt on load"
    );
    let r = keep(10);
    assert!(s.deployments.prune_due(&r, Timestamp(5)));
    s.deployments.prune(&r, Timestamp(5));
    assert_eq!(s.deployments.idempotency["old"].at, Some(Timestamp(5)));
    let day = Timestamp(5 + 24 * HOUR);
    assert_eq!(s.deployments.prune(&r, day).idempotency_keys, 1);
}

#[test]
fn a_prune_is_audited_and_replicas_agree() {
    let run = || {
        let mut w = World::new();
        for _ in 0..7 {
            w.fail("api");
        }
        w.prune(keep(3));
        w.s
    };
    let (a, b) = (run(), run());
    assert_eq!(a.deployments.all.len(), 3);
    assert_eq!(
        a.deployments.all.keys().count(),
        b.deployments.all.keys().count()
    );
    let last = a.audit.records().last().unwrap();
    assert_eq!(last.action, "deployments.pruned");
    assert_eq!(last.details["deployments"], 4);
    assert!(a
        .deployments
        .all
        .values()
        .all(|d| d.state() == DeploymentState::Failed));
}
