//! The replicated state and its pure `apply`.
//!
//! Every decision the coordinator makes is a [`Command`] in the Raft log. Each replica runs
//! [`State::apply`] on the same commands in the same order with the same log indices, and so
//! holds the same state: no clock is read (time comes stamped on the [`Request`]), no file or
//! socket is touched. The sled store in `raft/store.rs` only decodes entries, calls this, and
//! persists snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::audit::AuditChain;
use sluice_common::locks::{FencingToken, LockTable};
use sluice_common::names::{Label, LockKey, ServerName};
use sluice_common::ports::{PortLedger, PortRange};
use sluice_common::time::{MaxClock, Timestamp};

mod audit;
mod command;
pub mod deployments;
mod payload;
pub mod registries;
pub mod sessions;
pub mod tokens;

pub use command::{Command, Request, Response};
pub use payload::{Batch, Payload, BATCH_FORMAT};

use deployments::Deployments;
use registries::Registries;
use sessions::Sessions;
use tokens::Tokens;

/// A server known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Its agent's address.
    pub agent_addr: String,
    /// Labels.
    pub labels: Vec<Label>,
    /// Labels were set through the API: they win over the ones the agent is configured
    /// with, when it registers again (until the server is removed).
    #[serde(default)]
    pub labels_pinned: bool,
    /// Port range.
    pub port_range: PortRange,
    /// Deployments refused.
    pub forbidden: bool,
    /// No new deployment placed on it (running services keep serving).
    #[serde(default)]
    pub cordoned: bool,
    /// Whether the leader last saw its agent heartbeat.
    pub up: bool,
    /// Docker version last reported.
    pub docker_version: Option<String>,
    /// Agent version last reported.
    pub agent_version: Option<String>,
    /// When it last changed.
    pub changed_at: Timestamp,
}

impl ServerRecord {
    /// A server nothing is known about yet but its range.
    fn new(port_range: PortRange, now: Timestamp) -> Self {
        Self {
            agent_addr: String::new(),
            labels: Vec::new(),
            labels_pinned: false,
            port_range,
            forbidden: false,
            cordoned: false,
            up: false,
            docker_version: None,
            agent_version: None,
            changed_at: now,
        }
    }
}

/// The replicated state. Snapshots are this struct, serialized.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The deterministic clock: the largest command timestamp seen.
    pub clock: MaxClock,
    /// Locks.
    pub locks: LockTable,
    /// Ports.
    pub ports: PortLedger,
    /// Servers.
    pub servers: BTreeMap<ServerName, ServerRecord>,
    /// Deployments and what runs where.
    #[serde(default)]
    pub deployments: Deployments,
    /// The deployment policy.
    #[serde(default)]
    pub policy: sluice_common::api::Policy,
    /// CI tokens (hashes only).
    #[serde(default)]
    pub tokens: Tokens,
    /// Web console sessions (hashes only).
    #[serde(default)]
    pub sessions: Sessions,
    /// The hash-chained audit trail.
    #[serde(default)]
    pub audit: AuditChain,
    /// Per notification sink, the last audit record delivered.
    #[serde(default)]
    pub notify_cursor: BTreeMap<String, u64>,
    /// Grants already flagged as held too long.
    #[serde(default)]
    pub lock_overdue: BTreeMap<LockKey, FencingToken>,
    /// Private registry logins, by host.
    #[serde(default)]
    pub registries: Registries,
}

impl State {
    /// Applies one request at log index `index` and appends its audit record, in the
    /// same step. Pure and deterministic.
    pub fn apply(&mut self, req: &Request, index: u64) -> Response {
        let now = self.clock.observe(req.at);
        let before = audit::before(self, &req.cmd);
        let resp = self.apply_command(&req.cmd, index, now);
        if let Some(entry) = audit::describe(&req.cmd, &resp, before, self) {
            self.audit.append(index, now, &req.actor, entry);
        }
        resp
    }

    fn apply_command(&mut self, cmd: &Command, index: u64, now: Timestamp) -> Response {
        match cmd {
            Command::AcquireLock { acquire } => Response::Lock {
                outcome: self
                    .locks
                    .acquire(acquire.clone(), FencingToken(index), now)
                    .map(|g| g.lease),
            },
            Command::RenewLock { key, token, ttl } => Response::Lock {
                outcome: self.locks.renew(key, *token, *ttl, now),
            },
            Command::ReleaseLock { key, token } => Response::Lock {
                outcome: self.locks.release(key, *token),
            },
            Command::AllocatePort {
                server,
                service,
                port,
            } => Response::Port {
                outcome: match port {
                    Some(p) => self.ports.reserve(server, service, *p),
                    None => self.ports.allocate(server, service),
                },
            },
            Command::ReleasePort { server, service } => Response::PortReleased {
                port: self.ports.release(server, service),
            },
            Command::PutServer {
                server,
                agent_addr,
                labels,
                port_range,
                forbidden,
            } => {
                let rec = self
                    .servers
                    .entry(server.clone())
                    .or_insert_with(|| ServerRecord::new(*port_range, now));
                rec.agent_addr = agent_addr.clone();
                if rec.labels != *labels {
                    rec.labels = labels.clone();
                    rec.labels_pinned = true;
                }
                rec.port_range = *port_range;
                rec.forbidden = *forbidden;
                rec.changed_at = now;
                self.ports.set_range(server, *port_range);
                Response::Done
            }
            Command::CordonServer { server, cordoned } => match self.servers.get_mut(server) {
                Some(rec) => {
                    rec.cordoned = *cordoned;
                    rec.changed_at = now;
                    Response::Done
                }
                None => Response::UnknownServer {
                    server: server.clone(),
                },
            },
            Command::RemoveServer { server } => {
                if self.servers.remove(server).is_none() {
                    return Response::UnknownServer {
                        server: server.clone(),
                    };
                }
                self.ports.remove_server(server);
                Response::Done
            }
            Command::RegisterAgent { registration: r } => {
                let rec = self
                    .servers
                    .entry(r.server.clone())
                    .or_insert_with(|| ServerRecord::new(r.port_range, now));
                rec.agent_addr = r.agent_addr.clone();
                if !rec.labels_pinned {
                    rec.labels = r.labels.clone();
                }
                rec.port_range = r.port_range;
                rec.docker_version = r.docker_version.clone();
                rec.agent_version = Some(r.agent_version.clone());
                rec.up = true;
                rec.changed_at = now;
                self.ports.set_range(&r.server, r.port_range);
                if let Some(bound) = &r.bound_ports {
                    let _ = self
                        .ports
                        .set_host_bound(&r.server, bound.iter().copied().collect());
                }
                Response::Done
            }
            Command::SetAgentUp { server, up } => match self.servers.get_mut(server) {
                Some(rec) => {
                    rec.up = *up;
                    rec.changed_at = now;
                    Response::Done
                }
                None => Response::UnknownServer {
                    server: server.clone(),
                },
            },
            Command::SetPolicy { policy } => {
                self.policy = policy.clone();
                Response::Done
            }
            Command::Deployment { cmd } => Response::Deployment {
                outcome: self.deployments.apply(&mut self.locks, cmd, index, now),
            },
            Command::Token { cmd } => Response::Token {
                outcome: self.tokens.apply(cmd, now),
            },
            Command::Registry { cmd } => {
                if self.registries.apply(cmd, now) {
                    Response::Done
                } else {
                    Response::Unchanged
                }
            }
            Command::Session { cmd } => {
                if self.sessions.apply(cmd, now) {
                    Response::Done
                } else {
                    Response::Unchanged
                }
            }
            Command::FlagLock { key, token } => {
                let current = self.locks.get(key, now).map(|l| l.token);
                if current == Some(*token) && self.lock_overdue.get(key) != Some(token) {
                    self.lock_overdue.insert(key.clone(), *token);
                    Response::Done
                } else {
                    Response::Unchanged
                }
            }
            Command::Prune { retention } => Response::Pruned {
                summary: self.deployments.prune(retention, now),
            },
            Command::CheckpointAudit { upto } => {
                if self.audit.checkpoint(*upto) > 0 {
                    Response::Done
                } else {
                    Response::Unchanged
                }
            }
            Command::NotifyDelivered { sink, seq } => {
                let c = self.notify_cursor.entry(sink.clone()).or_default();
                *c = (*c).max(*seq);
                Response::Done
            }
            Command::SetHostBound { server, ports } => {
                match self.ports.set_host_bound(server, ports.clone()) {
                    Ok(()) => Response::Done,
                    Err(_) => Response::UnknownServer {
                        server: server.clone(),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::locks::{Acquire, LockError};
    use sluice_common::names::{Holder, ServiceName};
    use std::time::Duration;

    fn at(ms: u64, cmd: Command) -> Request {
        Request {
            at: Timestamp(ms),
            actor: "token:test".into(),
            cmd,
        }
    }

    fn acquire(key: &str, who: &str, ttl_ms: u64) -> Command {
        Command::AcquireLock {
            acquire: Acquire {
                key: LockKey::parse(key).unwrap(),
                holder: Holder::parse(who).unwrap(),
                reason: "test".into(),
                ttl: Duration::from_millis(ttl_ms),
            },
        }
    }

    #[test]
    fn token_is_the_log_index() {
        let mut s = State::default();
        match s.apply(&at(0, acquire("k", "a", 1000)), 17) {
            Response::Lock { outcome: Ok(l) } => assert_eq!(l.token, FencingToken(17)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expiry_uses_the_replicated_clock_not_the_command_time() {
        let mut s = State::default();
        s.apply(&at(1000, acquire("k", "a", 500)), 1);
        // A later command from a leader whose clock runs behind (time 0) must not revive
        // the lease: the state machine's clock stays at the maximum seen.
        s.apply(
            &at(
                2000,
                Command::ReleasePort {
                    server: ServerName::parse("x").unwrap(),
                    service: ServiceName::parse("y").unwrap(),
                },
            ),
            2,
        );
        match s.apply(&at(0, acquire("k", "b", 500)), 3) {
            Response::Lock { outcome: Ok(l) } => {
                assert_eq!(l.holder.as_str(), "b");
                assert_eq!(l.acquired_at, Timestamp(2000));
                assert_eq!(l.token, FencingToken(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn labels_set_through_the_api_survive_the_agent_registering_again() {
        let web1 = ServerName::parse("web-1").unwrap();
        let label = |s: &str| Label::parse(s).unwrap();
        let register = |labels: Vec<Label>| Command::RegisterAgent {
            registration: serde_json::from_value(serde_json::json!({
                "server": "web-1", "agent_addr": "127.0.0.1:7100",
                "port_range": "20000-20099", "labels": labels,
                "agent_version": "0.1.0",
            }))
            .unwrap(),
        };
        let mut s = State::default();
        s.apply(&at(0, register(vec![label("env=staging")])), 1);
        assert_eq!(s.servers[&web1].labels, [label("env=staging")]);
        // An unchanged PUT (forbid/allow keep the labels) pins nothing.
        let put = |labels: Vec<Label>, forbidden| Command::PutServer {
            server: web1.clone(),
            agent_addr: "127.0.0.1:7100".into(),
            labels,
            port_range: PortRange::new(20000, 20099).unwrap(),
            forbidden,
        };
        s.apply(&at(1, put(vec![label("env=staging")], true)), 2);
        s.apply(&at(2, register(vec![label("env=qa")])), 3);
        assert_eq!(s.servers[&web1].labels, [label("env=qa")]);
        // Labels set by an admin stay when the agent restarts with its configured ones.
        s.apply(&at(3, put(vec![label("env=prod")], false)), 4);
        s.apply(&at(4, register(vec![label("env=qa")])), 5);
        assert_eq!(s.servers[&web1].labels, [label("env=prod")]);
        assert!(s.servers[&web1].labels_pinned);
    }

    #[test]
    fn replicas_agree() {
        let cmds = [
            at(
                0,
                Command::PutServer {
                    server: ServerName::parse("web-1").unwrap(),
                    agent_addr: "127.0.0.1:1".into(),
                    labels: vec![],
                    port_range: PortRange::new(100, 101).unwrap(),
                    forbidden: false,
                },
            ),
            at(
                1,
                Command::AllocatePort {
                    server: ServerName::parse("web-1").unwrap(),
                    service: ServiceName::parse("api").unwrap(),
                    port: None,
                },
            ),
            at(2, acquire("service/api", "ci", 1000)),
            at(3, acquire("service/api", "ci-2", 1000)),
        ];
        let run = || {
            let mut s = State::default();
            let out: Vec<Response> = cmds
                .iter()
                .enumerate()
                .map(|(i, c)| s.apply(c, i as u64 + 1))
                .collect();
            (s, out)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        assert!(matches!(
            ra[3],
            Response::Lock {
                outcome: Err(LockError::Held { .. })
            }
        ));
        // Round trip through the snapshot encoding keeps everything, ledger included.
        let back: State = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
