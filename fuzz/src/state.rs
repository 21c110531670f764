//! Bytes → a command sequence for `State::apply`, in a small world (three servers, three
//! services, four lock keys, four deployment ids, narrow port ranges) so commands collide.
//! The richer generator and the full invariant set live in `coordinator/tests/fuzz_state.rs`;
//! this one lets libFuzzer's coverage feedback find the orderings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use serde_json::json;
use sluice_common::api::{ServerStepState, ServerStepView};
use sluice_common::deployment::{transition, DeploymentEvent, DeploymentState};
use sluice_common::locks::{Acquire, FencingToken};
use sluice_common::names::{Holder, LockKey, ServerName, ServiceName};
use sluice_common::ports::{Port, PortRange};
use sluice_common::time::Timestamp;
use sluice_coordinator::state::deployments::DeploymentCommand as D;
use sluice_coordinator::state::{Command, Request, Response, State};
use uuid::Uuid;

const T0: u64 = 1_764_000_000_000;
const SERVERS: [&str; 3] = ["web-1", "web-2", "web-3"];
const SERVICES: [&str; 3] = ["api", "web", "db"];
const KEYS: [&str; 4] = ["service/api", "service/web", "migration/db", "k"];
const RANGES: [(u16, u16); 4] = [(100, 102), (100, 105), (103, 110), (100, 100)];
const STEPS: [ServerStepState; 4] = [
    ServerStepState::Deploying,
    ServerStepState::Succeeded,
    ServerStepState::Failed,
    ServerStepState::RolledBack,
];

fn pick<'a, T>(u: &mut Unstructured<'_>, xs: &'a [T]) -> Result<&'a T> {
    u.choose(xs)
}

fn server(u: &mut Unstructured<'_>) -> Result<ServerName> {
    Ok(ServerName::parse(pick(u, &SERVERS)?).unwrap())
}
fn service(u: &mut Unstructured<'_>) -> Result<ServiceName> {
    Ok(ServiceName::parse(pick(u, &SERVICES)?).unwrap())
}
fn key(u: &mut Unstructured<'_>) -> Result<LockKey> {
    Ok(LockKey::parse(pick(u, &KEYS)?).unwrap())
}
fn id(u: &mut Unstructured<'_>) -> Result<Uuid> {
    Ok(Uuid::from_u128(
        0x5100_0000 + u128::from(u.int_in_range(0u8..=3)?),
    ))
}
fn ttl(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(Duration::from_millis(*pick(
        u,
        &[0u64, 1, 500, 5_000, 60_000],
    )?))
}
fn token(u: &mut Unstructured<'_>, granted: &[FencingToken]) -> Result<FencingToken> {
    if granted.is_empty() || u.ratio(1, 5)? {
        return Ok(FencingToken(u.int_in_range(0..=40)?));
    }
    Ok(*pick(u, granted)?)
}

fn command(u: &mut Unstructured<'_>, granted: &[FencingToken], s: &State) -> Result<Command> {
    Ok(match u.int_in_range(0u8..=14)? {
        0 | 1 => Command::AcquireLock {
            acquire: Acquire {
                key: key(u)?,
                holder: Holder::parse(pick(u, &["ci-1", "ci-2"])?).unwrap(),
                reason: String::new(),
                ttl: ttl(u)?,
            },
        },
        2 => Command::RenewLock {
            key: key(u)?,
            token: token(u, granted)?,
            ttl: ttl(u)?,
        },
        3 => Command::ReleaseLock {
            key: key(u)?,
            token: token(u, granted)?,
        },
        4 => Command::AllocatePort {
            server: server(u)?,
            service: service(u)?,
            port: if u.arbitrary()? {
                Some(Port::new(u.int_in_range(98..=112)?).unwrap())
            } else {
                None
            },
        },
        5 => Command::ReleasePort {
            server: server(u)?,
            service: service(u)?,
        },
        6 => {
            let (a, b) = *pick(u, &RANGES)?;
            Command::PutServer {
                server: server(u)?,
                agent_addr: "127.0.0.1:1".into(),
                labels: vec![],
                port_range: PortRange::new(a, b).unwrap(),
                forbidden: u.arbitrary()?,
            }
        }
        7 => Command::RemoveServer { server: server(u)? },
        8 => Command::SetHostBound {
            server: server(u)?,
            ports: (0..u.int_in_range(0..=3)?)
                .map(|_| u.int_in_range(98..=112))
                .collect::<Result<BTreeSet<u16>>>()?,
        },
        9 => Command::Deployment {
            cmd: D::Create {
                id: id(u)?,
                request: Box::new(
                    serde_json::from_value(json!({
                        "service": pick(u, &SERVICES)?, "image": "api:v1",
                        "container_port": 8080, "health": {"kind": "tcp"}
                    }))
                    .unwrap(),
                ),
                targets: vec![server(u)?],
                idempotency: None,
                actor: "fuzz".into(),
            },
        },
        10 => Command::Deployment {
            cmd: D::Start {
                id: id(u)?,
                lock_ttl: ttl(u)?,
            },
        },
        11 => {
            // Mostly an event the state allows, sometimes any.
            let d = id(u)?;
            let state = s.deployments.all.get(&d).map(|x| x.state());
            let allowed: Vec<DeploymentEvent> = DeploymentEvent::ALL
                .into_iter()
                .filter(|e| state.is_some_and(|st| transition(st, *e).is_ok()))
                .collect();
            let event = if allowed.is_empty() || u.ratio(1, 4)? {
                *pick(u, &DeploymentEvent::ALL)?
            } else {
                *pick(u, &allowed)?
            };
            Command::Deployment {
                cmd: D::Event {
                    id: d,
                    event,
                    reason: String::new(),
                    failure: None,
                    noop: u.ratio(1, 5)?,
                },
            }
        }
        12 => Command::Deployment {
            cmd: D::Progress {
                id: id(u)?,
                phase: None,
                validation: None,
                server: Some(ServerStepView {
                    server: server(u)?,
                    port: Some(u.int_in_range(100..=103)?),
                    state: *pick(u, &STEPS)?,
                    operation: None,
                    rollback_operation: None,
                    detail: String::new(),
                    log_tail: None,
                }),
            },
        },
        13 => Command::Deployment {
            cmd: match u.int_in_range(0u8..=3)? {
                0 => D::Refence {
                    id: id(u)?,
                    lock_ttl: ttl(u)?,
                },
                1 => D::Renew {
                    id: id(u)?,
                    lock_ttl: ttl(u)?,
                },
                2 => D::RequestRollback { id: id(u)? },
                _ => D::GiveUp {
                    id: id(u)?,
                    failure: "x".into(),
                },
            },
        },
        _ => Command::FlagLock {
            key: key(u)?,
            token: token(u, granted)?,
        },
    })
}

/// Decodes and applies a sequence, checking the core invariants after every step and
/// determinism and snapshot equivalence at the end. Panics on a violation.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut state = State::default();
    let mut log: Vec<(u64, Request)> = Vec::new();
    let mut responses: Vec<Response> = Vec::new();
    let mut granted: Vec<FencingToken> = Vec::new();
    let (mut index, mut clock) = (0u64, 0i64);
    let mut snapshot: Option<(usize, Vec<u8>)> = None;
    while !u.is_empty() && log.len() < 200 {
        let Ok(cmd) = command(&mut u, &granted, &state) else {
            break;
        };
        index += u.int_in_range(1..=2).unwrap_or(1);
        clock = (clock + i64::from(u.int_in_range(-30i16..=620).unwrap_or(1)) * 100).max(0);
        let req = Request {
            at: Timestamp(T0 + clock as u64),
            actor: "fuzz".into(),
            cmd,
        };
        let pre = state.clone();
        let resp = state.apply(&req, index);
        check(&pre, &state, index, &mut granted);
        if snapshot.is_none() && u.ratio(1, 16).unwrap_or(false) {
            snapshot = Some((log.len() + 1, serde_json::to_vec(&state).unwrap()));
        }
        log.push((index, req));
        responses.push(resp);
    }
    let replay = |mut s: State, from: usize| {
        let rs: Vec<Response> = log[from..].iter().map(|(i, r)| s.apply(r, *i)).collect();
        (s, rs)
    };
    let (replica, rs) = replay(State::default(), 0);
    assert_eq!(replica, state, "replicas diverge");
    assert_eq!(rs, responses);
    if let Some((from, bytes)) = snapshot {
        let restored: State = serde_json::from_slice(&bytes).expect("snapshot restores");
        let (end, rs) = replay(restored, from);
        assert_eq!(end, state, "snapshot + continue diverges");
        assert_eq!(rs[..], responses[from..]);
    }
}

fn check(pre: &State, post: &State, index: u64, granted: &mut Vec<FencingToken>) {
    let now = post.clock.now();
    assert!(now >= pre.clock.now());
    let before: BTreeMap<_, _> = pre.locks.live(Timestamp(0)).map(|l| (&l.key, l)).collect();
    for l in post.locks.live(Timestamp(0)) {
        match before.get(&l.key) {
            Some(old) if old.token == l.token => {}
            old => {
                assert_eq!(l.token, FencingToken(index), "grant token is the index");
                assert!(
                    granted.last().is_none_or(|g| *g < l.token),
                    "tokens increase"
                );
                if let Some(old) = old.filter(|o| o.is_live(now)) {
                    // Only a deployment re-fencing its own live lease may replace it.
                    let own = pre
                        .deployments
                        .all
                        .values()
                        .any(|d| d.token == Some(old.token));
                    assert!(own, "live lease {old:?} replaced by {l:?}");
                }
                granted.push(l.token);
            }
        }
    }
    for (name, ports) in post.ports.servers() {
        let mut seen = BTreeSet::new();
        for p in ports.assignments().values() {
            assert!(seen.insert(*p), "port {p} held twice on {name}");
        }
        let r = ports.range();
        let free = (r.start()..=r.end())
            .filter(|p| !seen.contains(p) && !ports.host_bound().contains(p))
            .count() as u32;
        assert_eq!(ports.free_count(), free);
    }
    for (id, d) in &post.deployments.all {
        if let Some(old) = pre.deployments.all.get(id) {
            assert!(
                old.state() == d.state()
                    || DeploymentEvent::ALL
                        .iter()
                        .any(|e| transition(old.state(), *e) == Ok(d.state())),
                "{id}: {} -> {}",
                old.state(),
                d.state()
            );
        }
        if matches!(
            d.state(),
            DeploymentState::Validating | DeploymentState::InProgress
        ) {
            assert!(d.token.is_some(), "{id} is {} without its lock", d.state());
        }
    }
}
