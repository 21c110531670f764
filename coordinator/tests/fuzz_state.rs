//! Fuzzing the replicated state machine: random command sequences against `State::apply`.
//!
//! Commands are drawn from a small world (three servers, three services, four lock keys,
//! four deployment ids, narrow port ranges) so they collide: locks are contended, ranges
//! run out, deployments get events their state does not allow. Tokens in renew/release are
//! mostly ones actually granted earlier in the run. The proposer's clock jumps forward
//! past leases and sometimes backwards (a new leader whose clock is behind).
//!
//! Checked after every step, against the state before it:
//! - locks: a grant never replaces a live lease (except a deployment re-fencing its own),
//!   its token is the entry's index and larger than every earlier grant; renew and release
//!   are compare-and-set on the token; refused operations change nothing;
//! - ports: a port is never held by two services on a server; automatic allocations are the
//!   lowest free port of the range; the free count matches a brute-force recount;
//! - deployments: states move only along `sluice_common::deployment::transition`, their
//!   recorded transitions form that chain, and the service history holds exactly the
//!   successful deployments that changed something;
//! - tokens are never un-revoked; the audit chain verifies; the clock never goes back;
//!   every response and request survives its serde round trip.
//!
//! And for the whole sequence: apply is deterministic (a second replica fed the same log,
//! decoded from JSON, ends equal with equal responses), and snapshotting at a random point
//! then continuing from the restored snapshot ends equal too.
//!
//! A bounded run is part of `cargo test`; `PROPTEST_CASES=20000 cargo test -p
//! sluice-coordinator --test fuzz_state --release` is the long run (see FUZZING.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::json;
use sluice_common::api::{CreateDeploymentRequest, Policy, ServerStepState, ServerStepView};
use sluice_common::deployment::{transition, DeploymentEvent, DeploymentState, Input, Phase};
use sluice_common::locks::{Acquire, FencingToken, Lease};
use sluice_common::names::{Holder, Label, LockKey, ServerName, ServiceName};
use sluice_common::ports::{Allocation, Port, PortError, PortRange};
use sluice_common::time::Timestamp;
use sluice_coordinator::state::deployments::DeploymentCommand;
use sluice_coordinator::state::tokens::{TokenCommand, TokenName, TokenRole};
use sluice_coordinator::state::{Command, Request, Response, State};
use uuid::Uuid;

/// `cases` unless `PROPTEST_CASES` asks for more (or fewer).
fn config(cases: u32) -> Config {
    let mut c = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

// ------------------------------------------------------------------ the small world

const SERVERS: &[&str] = &["web-1", "web-2", "web-3"];
const SERVICES: &[&str] = &["api", "web", "db"];
const KEYS: &[&str] = &["service/api", "service/web", "migration/db", "k"];
const HOLDERS: &[&str] = &["ci-1", "ci-2", "alice"];
const IMAGES: &[&str] = &["api:v1", "api:v2", "localhost:5000/team/api:v3"];
const RANGES: &[(u16, u16)] = &[(100, 102), (100, 105), (103, 110), (98, 99), (100, 100)];
const LABELS: &[&str] = &["env=prod", "env=dev", "zone=a"];
const TOKEN_NAMES: &[&str] = &["ci", "deploy-bot", "viewer"];
const TTLS_MS: &[u64] = &[0, 1, 500, 1_000, 5_000, 60_000];
/// The proposers' clocks start here (2025-11-24), far from any formatting limit.
const T0: u64 = 1_764_000_000_000;

fn server(i: usize) -> ServerName {
    ServerName::parse(SERVERS[i % SERVERS.len()]).unwrap()
}
fn service(i: usize) -> ServiceName {
    ServiceName::parse(SERVICES[i % SERVICES.len()]).unwrap()
}
fn key(i: usize) -> LockKey {
    LockKey::parse(KEYS[i % KEYS.len()]).unwrap()
}
fn dep_id(i: usize) -> Uuid {
    Uuid::from_u128(0x5100_0000 + (i % 4) as u128)
}
fn range(i: usize) -> PortRange {
    let (a, b) = RANGES[i % RANGES.len()];
    PortRange::new(a, b).unwrap()
}
fn labels(picks: &[usize]) -> Vec<Label> {
    picks
        .iter()
        .map(|i| Label::parse(LABELS[i % LABELS.len()]).unwrap())
        .collect()
}
fn ttl(i: usize) -> Duration {
    Duration::from_millis(TTLS_MS[i % TTLS_MS.len()])
}

/// A token operand: one granted earlier in this run (counted from the newest), or any.
#[derive(Debug, Clone, Copy)]
enum TokenRef {
    Granted(usize),
    Raw(u64),
}

fn token_ref() -> impl Strategy<Value = TokenRef> {
    prop_oneof![
        4 => (0usize..4).prop_map(TokenRef::Granted),
        1 => (0u64..40).prop_map(TokenRef::Raw),
    ]
}

/// A command in terms of the small world; turned into a real [`Command`] when it runs.
#[derive(Debug, Clone)]
enum Op {
    Acquire(usize, usize, usize),
    Renew(usize, TokenRef, usize),
    Release(usize, TokenRef),
    Flag(usize, TokenRef),
    Allocate(usize, usize, Option<u16>),
    ReleasePort(usize, usize),
    PutServer(usize, usize, bool, Vec<usize>),
    RemoveServer(usize),
    Register(usize, usize, Vec<usize>),
    SetUp(usize, bool),
    HostBound(usize, BTreeSet<u16>),
    SetPolicy(Vec<usize>),
    Create {
        id: usize,
        service: usize,
        image: usize,
        targets: Vec<usize>,
        idempotency: Option<(usize, usize)>,
    },
    Start(usize, usize),
    Refence(usize, usize),
    RenewDeployment(usize, usize),
    Event(usize, usize, bool, bool),
    /// A move the deployment's current state allows (`Start` when pending), chosen at run
    /// time, so sequences reach success and rollback instead of mostly being refused.
    Advance(usize, usize, bool),
    Progress(usize, usize, usize, Option<u16>),
    RequestRollback(usize),
    RequestCancel(usize),
    GiveUp(usize),
    BeginRollback(usize),
    CreateToken(usize, usize, usize),
    RevokeToken(usize),
    NotifyDelivered(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let port = prop_oneof![96u16..=112, Just(1), Just(65535)];
    let few = || prop::collection::vec(0usize..3, 0..3);
    prop_oneof![
        // Locks.
        4 => (0usize..4, 0usize..3, 0usize..6).prop_map(|(k, h, t)| Op::Acquire(k, h, t)),
        3 => (0usize..4, token_ref(), 0usize..6).prop_map(|(k, t, l)| Op::Renew(k, t, l)),
        3 => (0usize..4, token_ref()).prop_map(|(k, t)| Op::Release(k, t)),
        1 => (0usize..4, token_ref()).prop_map(|(k, t)| Op::Flag(k, t)),
        // Servers and ports.
        4 => (0usize..3, 0usize..3, prop::option::of(port.clone()))
            .prop_map(|(s, v, p)| Op::Allocate(s, v, p)),
        2 => (0usize..3, 0usize..3).prop_map(|(s, v)| Op::ReleasePort(s, v)),
        2 => (0usize..3, 0usize..5, any::<bool>(), few())
            .prop_map(|(s, r, f, l)| Op::PutServer(s, r, f, l)),
        1 => (0usize..3).prop_map(Op::RemoveServer),
        1 => (0usize..3, 0usize..5, few()).prop_map(|(s, r, l)| Op::Register(s, r, l)),
        1 => (0usize..3, any::<bool>()).prop_map(|(s, u)| Op::SetUp(s, u)),
        1 => (0usize..3, prop::collection::btree_set(port, 0..4))
            .prop_map(|(s, p)| Op::HostBound(s, p)),
        1 => few().prop_map(Op::SetPolicy),
        // Deployments, in any order.
        3 => (0usize..4, 0usize..3, 0usize..3, few(), prop::option::of((0usize..2, 0usize..2)))
            .prop_map(|(id, service, image, targets, idempotency)| Op::Create {
                id, service, image, targets, idempotency,
            }),
        3 => (0usize..4, 0usize..6).prop_map(|(d, t)| Op::Start(d, t)),
        1 => (0usize..4, 0usize..6).prop_map(|(d, t)| Op::Refence(d, t)),
        1 => (0usize..4, 0usize..6).prop_map(|(d, t)| Op::RenewDeployment(d, t)),
        4 => (0usize..4, 0usize..8, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(d, e, f, n)| Op::Event(d, e, f, n)),
        12 => (0usize..4, 0usize..8, prop::bool::weighted(0.2))
            .prop_map(|(d, e, n)| Op::Advance(d, e, n)),
        3 => (0usize..4, 0usize..3, 0usize..8, prop::option::of(100u16..104))
            .prop_map(|(d, s, st, p)| Op::Progress(d, s, st, p)),
        1 => (0usize..4).prop_map(Op::RequestRollback),
        1 => (0usize..4).prop_map(Op::RequestCancel),
        1 => (0usize..4).prop_map(Op::GiveUp),
        1 => (0usize..4).prop_map(Op::BeginRollback),
        // CI tokens and notification cursors.
        1 => (0usize..3, 0usize..3, 0usize..2).prop_map(|(n, r, h)| Op::CreateToken(n, r, h)),
        1 => (0usize..3).prop_map(Op::RevokeToken),
        1 => (0usize..2, 0u64..20).prop_map(|(s, q)| Op::NotifyDelivered(s, q)),
    ]
}

/// One log entry to be: the op, how far the proposer's clock moved, the index gap.
#[derive(Debug, Clone)]
struct Step {
    op: Op,
    clock_ms: i64,
    index_gap: u64,
}

fn step() -> impl Strategy<Value = Step> {
    let clock = prop_oneof![
        6 => 0i64..1_500,
        2 => -3_000i64..0,
        1 => Just(61_000i64),
    ];
    (op(), clock, prop_oneof![4 => Just(1u64), 1 => 2u64..4]).prop_map(
        |(op, clock_ms, index_gap)| Step {
            op,
            clock_ms,
            index_gap,
        },
    )
}

fn deployment_request(service: usize, image: usize) -> CreateDeploymentRequest {
    serde_json::from_value(json!({
        "service": SERVICES[service % SERVICES.len()],
        "image": IMAGES[image % IMAGES.len()],
        "container_port": 8080,
        "env": {"PLAIN": {"value": "shown"}, "TOKEN": {"value": "s3cret", "secret": true}},
        "health": {"kind": "tcp"}
    }))
    .unwrap()
}

/// Every granted token so far, oldest first.
fn resolve(t: TokenRef, granted: &[FencingToken]) -> FencingToken {
    match t {
        TokenRef::Granted(i) if !granted.is_empty() => {
            granted[granted.len() - 1 - i % granted.len()]
        }
        TokenRef::Granted(_) => FencingToken(1),
        TokenRef::Raw(n) => FencingToken(n),
    }
}

fn command(op: &Op, granted: &[FencingToken], state: &State) -> Command {
    use DeploymentCommand as D;
    match op.clone() {
        Op::Advance(d, e, noop) => {
            // What the deployment's whole lifecycle allows now (a rollback completes only
            // when one is due).
            let current = state.deployments.all.get(&dep_id(d));
            let current = current.as_deref();
            let allowed: Vec<DeploymentEvent> = DeploymentEvent::ALL
                .into_iter()
                .filter(|ev| {
                    current.is_some_and(|x| {
                        let input = Input::Event {
                            event: *ev,
                            noop,
                            touched: x.touched(),
                        };
                        x.lifecycle.apply(input).is_ok()
                    })
                })
                .collect();
            match allowed.get(e % allowed.len().max(1)) {
                Some(DeploymentEvent::Start) | None => command(&Op::Start(d, 5), granted, state),
                // A deploy touches a server before it ends, as the sequencer's do, so that
                // successes and automatic rollbacks are reached too.
                Some(DeploymentEvent::StepFailed | DeploymentEvent::AllHealthy)
                    if current.is_some_and(|x| !x.touched()) =>
                {
                    command(&Op::Progress(d, 0, 1, Some(100)), granted, state)
                }
                Some(ev) => {
                    let i = DeploymentEvent::ALL.iter().position(|x| x == ev).unwrap();
                    command(&Op::Event(d, i, false, noop), granted, state)
                }
            }
        }
        Op::Acquire(k, h, t) => Command::AcquireLock {
            acquire: Acquire {
                key: key(k),
                holder: Holder::parse(HOLDERS[h % HOLDERS.len()]).unwrap(),
                reason: "fuzz".into(),
                ttl: ttl(t),
            },
        },
        Op::Renew(k, t, l) => Command::RenewLock {
            key: key(k),
            token: resolve(t, granted),
            ttl: ttl(l),
        },
        Op::Release(k, t) => Command::ReleaseLock {
            key: key(k),
            token: resolve(t, granted),
        },
        Op::Flag(k, t) => Command::FlagLock {
            key: key(k),
            token: resolve(t, granted),
        },
        Op::Allocate(s, v, p) => Command::AllocatePort {
            server: server(s),
            service: service(v),
            port: p.map(|p| Port::new(p.into()).unwrap()),
        },
        Op::ReleasePort(s, v) => Command::ReleasePort {
            server: server(s),
            service: service(v),
        },
        Op::PutServer(s, r, forbidden, l) => Command::PutServer {
            server: server(s),
            agent_addr: format!("127.0.0.1:{}", 7000 + s),
            labels: labels(&l),
            port_range: range(r),
            forbidden,
        },
        Op::RemoveServer(s) => Command::RemoveServer { server: server(s) },
        Op::Register(s, r, l) => Command::RegisterAgent {
            registration: serde_json::from_value(json!({
                "server": SERVERS[s % SERVERS.len()],
                "agent_addr": "127.0.0.1:7443",
                "labels": labels(&l),
                "port_range": range(r),
                "docker_version": "27.0",
                "agent_version": "0.1.0",
            }))
            .unwrap(),
        },
        Op::SetUp(s, up) => Command::SetAgentUp {
            server: server(s),
            up,
        },
        Op::HostBound(s, ports) => Command::SetHostBound {
            server: server(s),
            ports,
        },
        Op::SetPolicy(l) => Command::SetPolicy {
            policy: Policy {
                protected_labels: labels(&l),
            },
        },
        Op::Create {
            id,
            service,
            image,
            targets,
            idempotency,
        } => Command::Deployment {
            cmd: D::Create {
                id: dep_id(id),
                request: Box::new(deployment_request(service, image)),
                targets: targets.iter().map(|s| server(*s)).collect(),
                idempotency: idempotency.map(|(k, h)| (format!("key-{k}"), format!("hash-{h}"))),
                actor: "ci".into(),
            },
        },
        Op::Start(d, t) => Command::Deployment {
            cmd: D::Start {
                id: dep_id(d),
                lock_ttl: ttl(t),
            },
        },
        Op::Refence(d, t) => Command::Deployment {
            cmd: D::Refence {
                id: dep_id(d),
                lock_ttl: ttl(t),
            },
        },
        Op::RenewDeployment(d, t) => Command::Deployment {
            cmd: D::Renew {
                id: dep_id(d),
                lock_ttl: ttl(t),
            },
        },
        Op::Event(d, e, failure, noop) => Command::Deployment {
            cmd: D::Event {
                id: dep_id(d),
                event: DeploymentEvent::ALL[e % DeploymentEvent::ALL.len()],
                reason: "fuzz".into(),
                failure: failure.then(|| "it broke".to_string()),
                noop,
            },
        },
        Op::Progress(d, s, st, port) => Command::Deployment {
            cmd: D::Progress {
                id: dep_id(d),
                phase: Some(Phase::new("fuzzing").unwrap()),
                validation: None,
                server: Some(ServerStepView {
                    server: server(s),
                    port,
                    state: STEP_STATES[st % STEP_STATES.len()],
                    operation: Some(dep_id(d)),
                    rollback_operation: None,
                    detail: String::new(),
                    log_tail: None,
                }),
            },
        },
        Op::RequestRollback(d) => Command::Deployment {
            cmd: D::RequestRollback { id: dep_id(d) },
        },
        Op::RequestCancel(d) => Command::Deployment {
            cmd: D::RequestCancel { id: dep_id(d) },
        },
        Op::BeginRollback(d) => Command::Deployment {
            cmd: D::BeginRollback { id: dep_id(d) },
        },
        Op::GiveUp(d) => Command::Deployment {
            cmd: D::GiveUp {
                id: dep_id(d),
                failure: "rollback failed".into(),
            },
        },
        Op::CreateToken(n, r, h) => Command::Token {
            cmd: TokenCommand::Create {
                name: TokenName::parse(TOKEN_NAMES[n % TOKEN_NAMES.len()]).unwrap(),
                role: [TokenRole::Viewer, TokenRole::Deployer, TokenRole::Admin][r % 3],
                services: vec![service(n)],
                hash: format!("{h:064x}"),
            },
        },
        Op::RevokeToken(n) => Command::Token {
            cmd: TokenCommand::Revoke {
                name: TokenName::parse(TOKEN_NAMES[n % TOKEN_NAMES.len()]).unwrap(),
            },
        },
        Op::NotifyDelivered(s, seq) => Command::NotifyDelivered {
            sink: ["telegram", "webhook"][s % 2].into(),
            seq,
        },
    }
}

const STEP_STATES: [ServerStepState; 8] = [
    ServerStepState::Pending,
    ServerStepState::Deploying,
    ServerStepState::Succeeded,
    ServerStepState::RestoredByAgent,
    ServerStepState::Failed,
    ServerStepState::RollingBack,
    ServerStepState::RolledBack,
    ServerStepState::RollbackFailed,
];

// ------------------------------------------------------------------ invariants

/// Every lease, live or lapsed: a granted lease always expires after time 0.
fn leases(s: &State) -> BTreeMap<LockKey, Lease> {
    s.locks
        .live(Timestamp(0))
        .map(|l| (l.key.clone(), l.clone()))
        .collect()
}

/// The deployment a command names, if it is a deployment command.
fn deployment_of(cmd: &Command) -> Option<Uuid> {
    match cmd {
        Command::Deployment { cmd } => Some(cmd.id()),
        _ => None,
    }
}

/// What the run has seen so far.
#[derive(Default)]
struct Seen {
    /// Every token granted, oldest first: strictly increasing.
    granted: Vec<FencingToken>,
}

fn check_step(
    pre: &State,
    post: &State,
    req: &Request,
    index: u64,
    resp: &Response,
    seen: &mut Seen,
) -> Result<(), TestCaseError> {
    let now = post.clock.now();
    prop_assert_eq!(
        now,
        pre.clock.now().max(req.at),
        "the clock is the max seen"
    );
    let dep = deployment_of(&req.cmd);
    let dep_token = |s: &State| dep.and_then(|id| s.deployments.all.get(&id)?.token);

    // ---- locks
    let (before, after) = (leases(pre), leases(post));
    prop_assert!(post.locks.last_token() >= pre.locks.last_token());
    for (k, l) in &after {
        prop_assert!(l.token <= post.locks.last_token());
        prop_assert!(l.acquired_at <= now && l.expires_at > l.acquired_at);
        match before.get(k) {
            Some(old) if old.token == l.token => {
                if old.expires_at != l.expires_at {
                    // Renewed: only by its token, only while live, to now + ttl.
                    prop_assert!(
                        old.is_live(now),
                        "a lapsed lease was renewed: {:?}",
                        req.cmd
                    );
                    match &req.cmd {
                        Command::RenewLock { token, ttl, .. } => {
                            prop_assert_eq!(*token, l.token);
                            prop_assert_eq!(l.expires_at, now.plus(*ttl));
                        }
                        Command::Deployment {
                            cmd: DeploymentCommand::Renew { lock_ttl, .. },
                        } => {
                            prop_assert_eq!(dep_token(pre), Some(l.token));
                            prop_assert_eq!(l.expires_at, now.plus(*lock_ttl));
                        }
                        other => prop_assert!(false, "lease of {} extended by {:?}", k, other),
                    }
                }
                prop_assert_eq!((&old.holder, old.acquired_at), (&l.holder, l.acquired_at));
            }
            old => {
                // A new grant: this entry's index, above every earlier grant, and never
                // over a live lease unless a deployment re-fences its own.
                prop_assert_eq!(l.token, FencingToken(index), "grant token is the log index");
                prop_assert!(seen.granted.last().is_none_or(|g| *g < l.token));
                prop_assert_eq!(post.locks.last_token(), l.token);
                if let Some(old) = old.filter(|o| o.is_live(now)) {
                    let own_refence = matches!(
                        &req.cmd,
                        Command::Deployment {
                            cmd: DeploymentCommand::Refence { .. }
                        }
                    ) && dep_token(pre) == Some(old.token);
                    prop_assert!(
                        own_refence,
                        "live lease {:?} replaced by {:?}",
                        old,
                        req.cmd
                    );
                }
                seen.granted.push(l.token);
            }
        }
    }
    // No lock, live or lapsed, is held by a deployment that has ended.
    for l in after.values() {
        let Some(id) = l.holder.as_str().strip_prefix("deployment ") else {
            continue;
        };
        if let Some(d) = Uuid::parse_str(id)
            .ok()
            .and_then(|id| post.deployments.all.get(&id))
        {
            prop_assert!(
                d.needs_driving(),
                "{} holds {} after {:?}",
                d.state(),
                l.key,
                req.cmd
            );
        }
    }
    for (k, old) in &before {
        if !after.contains_key(k) {
            // Released: by its own token (a lock command or its deployment finishing).
            let by_token = match &req.cmd {
                Command::ReleaseLock { token, .. } => *token == old.token,
                Command::Deployment { .. } => dep_token(pre) == Some(old.token),
                _ => false,
            };
            prop_assert!(by_token, "lease {:?} dropped by {:?}", old, req.cmd);
        }
    }
    match (&req.cmd, resp) {
        (Command::AcquireLock { acquire }, Response::Lock { outcome }) => {
            let held = before.get(&acquire.key).is_some_and(|l| l.is_live(now));
            match outcome {
                Ok(l) => {
                    prop_assert!(!held && !acquire.ttl.is_zero());
                    prop_assert_eq!(l, &after[&acquire.key]);
                    prop_assert_eq!(&l.holder, &acquire.holder);
                }
                Err(_) => prop_assert_eq!(&before, &after, "a refused grant changed the table"),
            }
        }
        (
            Command::RenewLock { key, token, .. } | Command::ReleaseLock { key, token },
            Response::Lock { outcome },
        ) => match outcome {
            Ok(_) => prop_assert_eq!(before.get(key).map(|l| l.token), Some(*token)),
            Err(_) => prop_assert_eq!(&before, &after, "a refused renew/release changed the table"),
        },
        (
            Command::AcquireLock { .. } | Command::RenewLock { .. } | Command::ReleaseLock { .. },
            r,
        ) => {
            prop_assert!(false, "a lock command answered {:?}", r);
        }
        _ => {}
    }
    for (k, t) in &post.lock_overdue {
        prop_assert!(
            *t <= post.locks.last_token(),
            "overdue flag {} {} never granted",
            k,
            t
        );
    }

    // ---- servers and ports
    let ledger: BTreeSet<&ServerName> = post.ports.servers().map(|(s, _)| s).collect();
    prop_assert_eq!(ledger, post.servers.keys().collect::<BTreeSet<_>>());
    for (name, ports) in post.ports.servers() {
        let r = ports.range();
        let by_port: BTreeMap<u16, &ServiceName> =
            ports.assignments().iter().map(|(s, p)| (*p, s)).collect();
        prop_assert_eq!(
            by_port.len(),
            ports.assignments().len(),
            "a port held twice on {}",
            name
        );
        let mut free = 0;
        for p in r.start().saturating_sub(2)..=r.end().saturating_add(2) {
            let expect =
                r.contains(p) && !by_port.contains_key(&p) && !ports.host_bound().contains(&p);
            prop_assert_eq!(ports.is_free(p), expect, "port {} on {}", p, name);
            prop_assert_eq!(ports.holder_of(p), by_port.get(&p).copied());
            free += u32::from(expect);
        }
        prop_assert_eq!(ports.free_count(), free);
        prop_assert_eq!(ports.used_count(), r.len() - free);
        let untouched = !matches!(
            req.cmd,
            Command::AllocatePort { .. }
                | Command::ReleasePort { .. }
                | Command::RemoveServer { .. }
        );
        if let (true, Some(old)) = (untouched, pre.ports.server(name)) {
            prop_assert_eq!(
                old.assignments(),
                ports.assignments(),
                "{:?} moved ports",
                req.cmd
            );
        }
    }
    if let (
        Command::AllocatePort {
            server,
            service,
            port,
        },
        Response::Port { outcome },
    ) = (&req.cmd, resp)
    {
        let old = pre.ports.server(server);
        match (outcome, port) {
            (
                Ok(Allocation {
                    port: p,
                    newly_allocated: true,
                }),
                None,
            ) => {
                let old = old.expect("allocated on a known server");
                let r = old.range();
                let lowest = (r.start()..=r.end()).find(|q| old.is_free(*q));
                prop_assert_eq!(Some(*p), lowest, "not the lowest free port");
            }
            (
                Ok(Allocation {
                    port: p,
                    newly_allocated: true,
                }),
                Some(want),
            ) => {
                let old = old.expect("reserved on a known server");
                prop_assert_eq!(*p, want.get());
                prop_assert!(old.holder_of(*p).is_none() && !old.host_bound().contains(p));
            }
            (
                Ok(Allocation {
                    port: p,
                    newly_allocated: false,
                }),
                _,
            ) => {
                prop_assert_eq!(old.and_then(|o| o.assignments().get(service)), Some(p));
            }
            (Err(PortError::Exhausted { .. }), _) => {
                prop_assert_eq!(old.map(|o| o.free_count()), Some(0));
            }
            (Err(PortError::UnknownServer { .. }), _) => prop_assert!(old.is_none()),
            (Err(PortError::Taken { port: p, .. }), _) => {
                let old = old.expect("taken on a known server");
                prop_assert!(old.holder_of(*p).is_some() || old.host_bound().contains(p));
            }
        }
    }

    // ---- deployments
    let mut tokens = BTreeSet::new();
    for (id, d) in post.deployments.all.iter() {
        match pre.deployments.all.get(id) {
            Some(old) => {
                prop_assert!(
                    old.state() == d.state()
                        || DeploymentEvent::ALL
                            .iter()
                            .any(|e| transition(old.state(), *e) == Ok(d.state())),
                    "{} moved {} -> {}",
                    id,
                    old.state(),
                    d.state()
                );
                prop_assert!(
                    d.transitions.starts_with(&old.transitions),
                    "history rewritten"
                );
            }
            None => {
                prop_assert_eq!(dep, Some(*id), "{} appeared from {:?}", id, req.cmd);
                prop_assert_eq!(d.state(), DeploymentState::Pending);
            }
        }
        let mut state = DeploymentState::Pending;
        for t in &d.transitions {
            prop_assert_eq!(t.from, state);
            prop_assert!(DeploymentEvent::ALL
                .iter()
                .any(|e| transition(t.from, *e) == Ok(t.to)));
            state = t.to;
        }
        prop_assert_eq!(state, d.state(), "transitions do not end in the state");
        if matches!(
            d.state(),
            DeploymentState::Validating | DeploymentState::InProgress | DeploymentState::Success
        ) {
            prop_assert!(
                d.token.is_some(),
                "{} is {} without the lock ever taken",
                id,
                d.state()
            );
        }
        if let Some(t) = d.token {
            prop_assert!(tokens.insert(t), "two deployments share token {}", t);
        }
    }
    prop_assert!(pre
        .deployments
        .all
        .keys()
        .all(|id| post.deployments.all.contains_key(id)));
    for (svc, rec) in &post.deployments.services {
        let history: BTreeSet<&Uuid> = rec.history.iter().collect();
        prop_assert_eq!(
            history.len(),
            rec.history.len(),
            "duplicate in {}'s history",
            svc
        );
        let successes: BTreeSet<Uuid> = post
            .deployments
            .all
            .values()
            .filter(|d| {
                &d.request.service == svc
                    && d.state() == DeploymentState::Success
                    && !d.lifecycle.noop()
            })
            .map(|d| d.id)
            .collect();
        let history: BTreeSet<Uuid> = history.into_iter().copied().collect();
        prop_assert_eq!(history, successes, "{}'s history", svc);
    }

    // ---- tokens, notification cursors, audit
    for (name, old) in &pre.tokens.by_name {
        let new = post.tokens.by_name.get(name);
        prop_assert!(new.is_some(), "token {} vanished", name);
        let new = new.unwrap();
        prop_assert!(!old.revoked || new.revoked, "token {} un-revoked", name);
        prop_assert_eq!(&old.hash, &new.hash);
    }
    for (sink, c) in &pre.notify_cursor {
        prop_assert!(
            post.notify_cursor.get(sink) >= Some(c),
            "cursor {} went back",
            sink
        );
    }
    let (old_len, records) = (pre.audit.records().len(), post.audit.records());
    prop_assert!(records.len() >= old_len);
    prop_assert_eq!(&records[..old_len], pre.audit.records());
    let linked = &records[old_len.saturating_sub(1)..];
    prop_assert!(
        sluice_common::audit::verify(linked).is_ok(),
        "audit chain broken: {:?}",
        sluice_common::audit::verify(linked)
    );

    // ---- the wire: responses go back to the proposer as JSON
    let v = serde_json::to_value(resp).expect("a response serializes");
    let back: Response = serde_json::from_value(v.clone())
        .map_err(|e| TestCaseError::fail(format!("{v} does not decode: {e}")))?;
    prop_assert_eq!(&back, resp);
    Ok(())
}

/// A run: the log as applied (index, request), the responses, the state after each step.
type Run = (Vec<(u64, Request)>, Vec<Response>, Vec<State>);

/// Runs `steps` from the empty state, checking every step.
fn run(steps: &[Step]) -> Result<Run, TestCaseError> {
    let mut state = State::default();
    let mut seen = Seen::default();
    let (mut log, mut responses, mut states) = (Vec::new(), Vec::new(), Vec::new());
    let (mut index, mut clock) = (0u64, 0i64);
    for s in steps {
        index += s.index_gap;
        clock = (clock + s.clock_ms).max(0);
        let req = Request {
            at: Timestamp(T0 + clock as u64),
            actor: "fuzz".into(),
            cmd: command(&s.op, &seen.granted, &state),
        };
        let pre = state.clone();
        let resp = state.apply(&req, index);
        check_step(&pre, &state, &req, index, &resp, &mut seen)?;
        log.push((index, req));
        responses.push(resp);
        states.push(state.clone());
    }
    Ok((log, responses, states))
}

fn replay(mut state: State, log: &[(u64, Request)]) -> (State, Vec<Response>) {
    let responses = log.iter().map(|(i, r)| state.apply(r, *i)).collect();
    (state, responses)
}

proptest! {
    #![proptest_config(config(400))]

    /// Invariants after every step; determinism and snapshots over the whole sequence.
    #[test]
    fn random_command_sequences(
        steps in prop::collection::vec(step(), 1..70),
        cut in any::<prop::sample::Index>(),
    ) {
        let (log, responses, states) = run(&steps)?;

        // A second replica, fed the log as it travels (JSON), ends in the same place.
        let decoded: Vec<(u64, Request)> = log.iter().map(|(i, r)| {
            let v = serde_json::to_vec(r).expect("a request serializes");
            (*i, serde_json::from_slice(&v).expect("a request decodes"))
        }).collect();
        prop_assert_eq!(&decoded, &log, "requests survive JSON");
        let (replica, replica_responses) = replay(State::default(), &decoded);
        prop_assert_eq!(&replica, states.last().unwrap());
        prop_assert_eq!(&replica_responses, &responses);

        // Snapshot after step `cut`, restore, continue: same end, same answers.
        let k = cut.index(states.len());
        let snapshot = serde_json::to_vec(&states[k]).expect("a snapshot serializes");
        let restored: State = serde_json::from_slice(&snapshot).expect("a snapshot restores");
        prop_assert_eq!(&restored, &states[k]);
        let (end, rest) = replay(restored, &log[k + 1..]);
        prop_assert_eq!(&end, states.last().unwrap());
        prop_assert_eq!(&rest[..], &responses[k + 1..]);
    }
}

/// What a response (and the deployments after it) showed, for the coverage check.
fn outcomes(resp: &Response, state: &State, seen: &mut BTreeSet<String>) {
    let tag = |v: serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let label = match resp {
        Response::Lock { outcome: Ok(_) } => "lock ok".to_string(),
        Response::Lock { outcome: Err(e) } => {
            format!(
                "lock {}",
                tag(serde_json::to_value(e).unwrap(), "kind").unwrap()
            )
        }
        Response::Port { outcome: Ok(a) } => format!("port ok new={}", a.newly_allocated),
        Response::Port { outcome: Err(e) } => {
            format!(
                "port {}",
                tag(serde_json::to_value(e).unwrap(), "kind").unwrap()
            )
        }
        Response::Deployment { outcome: Ok(_) } => "deployment ok".to_string(),
        Response::Deployment { outcome: Err(e) } => {
            format!(
                "deployment {}",
                tag(serde_json::to_value(e).unwrap(), "error").unwrap()
            )
        }
        other => tag(serde_json::to_value(other).unwrap(), "result").unwrap(),
    };
    seen.insert(label);
    for d in state.deployments.all.values() {
        seen.insert(format!("state {}", d.state()));
    }
}

/// The generator reaches every deployment state and every kind of refusal, so the
/// invariants above are checked on deep states, not only on refusals at the door.
#[test]
fn sequences_go_deep() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(step(), 40..70);
    let mut seen = BTreeSet::new();
    for _ in 0..150 {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let (_, responses, states) = run(&steps).expect("invariants hold");
        for (r, s) in responses.iter().zip(&states) {
            outcomes(r, s, &mut seen);
        }
    }
    let want = [
        "lock ok",
        "lock held",
        "lock not_held",
        "lock token_mismatch",
        "lock expired",
        "lock zero_ttl",
        "port ok new=true",
        "port ok new=false",
        "port exhausted",
        "port unknown_server",
        "port taken",
        "deployment ok",
        "deployment not_found",
        "deployment lock",
        "deployment transition",
        "deployment conflict",
        "deployment idempotency_conflict",
        "state pending",
        "state validating",
        "state in_progress",
        "state success",
        "state failed",
        "state rolled_back",
        "unchanged",
        "unknown_server",
    ];
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|w| !seen.contains(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}; seen: {seen:?}"
    );
}

// ------------------------------------------------------------------ regressions found by the suite above

/// `random_command_sequences`: `Event { event: start }` moved a pending deployment to
/// validating without taking the service lock (only `Start` takes it), so it could have
/// validated and deployed unfenced. The bare event is now refused.
#[test]
fn start_event_without_the_lock_is_refused() {
    let mut state = State::default();
    let apply = |state: &mut State, op: Op, index: u64| {
        let req = Request {
            at: Timestamp(T0 + index),
            actor: "test".into(),
            cmd: command(&op, &[], state),
        };
        state.apply(&req, index)
    };
    let create = Op::Create {
        id: 1,
        service: 0,
        image: 0,
        targets: vec![],
        idempotency: None,
    };
    apply(&mut state, create, 1);
    let resp = apply(&mut state, Op::Event(1, 0, false, false), 2);
    assert!(
        matches!(resp, Response::Deployment { outcome: Err(_) }),
        "{resp:?}"
    );
    let d = &state.deployments.all.get(&dep_id(1)).unwrap();
    assert_eq!((d.state(), d.token), (DeploymentState::Pending, None));
    // The real way still works, and takes the lock.
    apply(&mut state, Op::Start(1, 5), 3);
    let d = &state.deployments.all.get(&dep_id(1)).unwrap();
    assert_eq!(
        (d.state(), d.token),
        (DeploymentState::Validating, Some(FencingToken(3)))
    );
}

/// `random_command_sequences`: a second `Create` with an existing id replaced the
/// deployment, sending a failed (or running, lock-holding) one back to pending with its
/// history gone. A replayed `Create` now changes nothing.
#[test]
fn create_with_an_existing_id_changes_nothing() {
    let mut state = State::default();
    let mut index = 0;
    let mut apply = |state: &mut State, op: Op| {
        index += 1;
        let req = Request {
            at: Timestamp(T0 + index),
            actor: "test".into(),
            cmd: command(&op, &[], state),
        };
        state.apply(&req, index)
    };
    let create = || Op::Create {
        id: 3,
        service: 0,
        image: 0,
        targets: vec![],
        idempotency: None,
    };
    apply(&mut state, create());
    apply(&mut state, Op::Event(3, 1, false, false)); // cancel: pending -> failed
    let before = state.deployments.all.get(&dep_id(3)).unwrap().into_owned();
    let resp = apply(&mut state, create());
    match resp {
        Response::Deployment { outcome: Ok(o) } => assert!(!o.created && o.id == dep_id(3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(*state.deployments.all.get(&dep_id(3)).unwrap(), before);
}
