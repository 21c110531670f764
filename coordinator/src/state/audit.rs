//! What each applied command says in the audit trail. Pure: a function of the command, its
//! response and the state around it, run by [`super::State::apply`] on every replica.
//!
//! Left out on purpose: refused lock acquisitions and deployment starts refused because the
//! service lock is held (waiters retry them), the
//! sequencer's progress notes and lease renewals (many per deployment, no decision in
//! them), and the notifier's delivery cursor. Secrets never reach a record: deployment
//! records name environment variables but carry no values, token records no hashes.

use serde_json::json;
use sluice_common::audit::Entry;
use sluice_common::deployment::DeploymentState;
use sluice_common::locks::LockError;
use sluice_common::names::LockKey;

use super::deployments::{DeploymentCommand, DeploymentError, DeploymentOutcome};
use super::tokens::TokenCommand;
use super::{Command, Response, State};

/// What the record needs from before the command ran.
#[derive(Debug, Clone, Copy)]
pub(super) struct Before {
    deployment: Option<DeploymentState>,
}

/// Captures [`Before`] for `cmd`.
pub(super) fn before(state: &State, cmd: &Command) -> Before {
    let deployment = match cmd {
        Command::Deployment { cmd } => deployment_id(cmd)
            .and_then(|id| state.deployments.all.get(&id))
            .map(|d| d.state()),
        _ => None,
    };
    Before { deployment }
}

fn deployment_id(cmd: &DeploymentCommand) -> Option<uuid::Uuid> {
    use DeploymentCommand as C;
    match cmd {
        C::Create { id, .. }
        | C::Start { id, .. }
        | C::Refence { id, .. }
        | C::Renew { id, .. }
        | C::Event { id, .. }
        | C::Progress { id, .. }
        | C::RequestRollback { id }
        | C::RequestCancel { id }
        | C::BeginRollback { id }
        | C::GiveUp { id, .. } => Some(*id),
    }
}

fn lock_entry(action: &str, key: &LockKey) -> Entry {
    let e = Entry::ok(action, format!("lock/{key}"));
    match key.as_str().strip_prefix("service/") {
        Some(service) => e.service(service),
        None => e,
    }
}

fn refused(e: Entry, why: &impl std::fmt::Display) -> Entry {
    e.outcome(format!("refused: {why}"))
}

/// The record for `cmd`, or `None` when it is not audited.
pub(super) fn describe(
    cmd: &Command,
    resp: &Response,
    before: Before,
    after: &State,
) -> Option<Entry> {
    Some(match (cmd, resp) {
        (Command::AcquireLock { acquire }, Response::Lock { outcome: Ok(l) }) => {
            lock_entry("lock.acquire", &acquire.key).details(json!({
                "holder": l.holder, "token": l.token.0, "reason": l.reason,
                "ttl_ms": ms(acquire.ttl),
            }))
        }
        (Command::AcquireLock { .. }, _) => return None,
        (Command::RenewLock { key, token, ttl }, Response::Lock { outcome }) => {
            let e = lock_entry("lock.renew", key)
                .details(json!({"token": token.0, "ttl_ms": ms(*ttl)}));
            match outcome {
                Ok(_) => e,
                Err(err) => refused(e, err),
            }
        }
        (Command::ReleaseLock { key, token }, Response::Lock { outcome }) => {
            let e = lock_entry("lock.release", key).details(json!({"token": token.0}));
            match outcome {
                Ok(_) => e,
                Err(err) => refused(e, err),
            }
        }
        (Command::FlagLock { key, token }, Response::Done) => {
            let lease = after.locks.get(key, after.clock.now())?;
            lock_entry("lock.held_too_long", key).details(json!({
                "holder": lease.holder, "token": token.0, "reason": lease.reason,
                "acquired_at": lease.acquired_at,
                "held_ms": after.clock.now().since(lease.acquired_at).as_millis() as u64,
            }))
        }
        (Command::FlagLock { .. }, _) | (Command::NotifyDelivered { .. }, _) => return None,
        (
            Command::AllocatePort {
                server,
                service,
                port,
            },
            Response::Port { outcome },
        ) => {
            let e = Entry::ok("port.allocate", format!("port/{server}/{service}"))
                .service(service.as_str());
            match outcome {
                // The service already had it: nothing changed (validation asks every time).
                Ok(a) if !a.newly_allocated => return None,
                Ok(a) => e.details(json!({"port": a.port})),
                Err(err) => refused(e.details(json!({"requested": port})), err),
            }
        }
        (Command::ReleasePort { server, service }, Response::PortReleased { port }) => {
            Entry::ok("port.release", format!("port/{server}/{service}"))
                .service(service.as_str())
                .details(json!({ "port": port }))
        }
        (
            Command::PutServer {
                server,
                agent_addr,
                labels,
                port_range,
                forbidden,
            },
            _,
        ) => Entry::ok("server.put", format!("server/{server}")).details(json!({
            "agent_addr": agent_addr, "labels": labels, "port_range": port_range,
            "forbidden": forbidden,
        })),
        (Command::RemoveServer { server }, resp) => {
            let e = Entry::ok("server.remove", format!("server/{server}"));
            match resp {
                Response::UnknownServer { .. } => refused(e, &"unknown server"),
                _ => e,
            }
        }
        (Command::RegisterAgent { registration: r }, _) => {
            Entry::ok("agent.register", format!("server/{}", r.server)).details(json!({
                "agent_addr": r.agent_addr, "agent_version": r.agent_version,
                "docker_version": r.docker_version, "labels": r.labels,
                "port_range": r.port_range,
            }))
        }
        (Command::SetAgentUp { server, up }, resp) => {
            let e = Entry::ok(
                if *up { "agent.up" } else { "agent.down" },
                format!("server/{server}"),
            );
            match resp {
                Response::UnknownServer { .. } => refused(e, &"unknown server"),
                _ => e,
            }
        }
        (Command::SetHostBound { server, ports }, _) => {
            Entry::ok("agent.ports_bound", format!("server/{server}"))
                .details(json!({ "ports": ports }))
        }
        (Command::SetPolicy { policy }, _) => {
            Entry::ok("policy.set", "policy").details(json!(policy))
        }
        (Command::Token { cmd }, Response::Token { outcome }) => {
            let (e, scope) = match cmd {
                TokenCommand::Create {
                    name,
                    role,
                    services,
                    ..
                } => (
                    Entry::ok("token.create", format!("token/{name}")),
                    json!({"role": role, "services": services}),
                ),
                TokenCommand::Revoke { name } => (
                    Entry::ok("token.revoke", format!("token/{name}")),
                    json!({}),
                ),
            };
            let e = e.details(scope);
            match outcome {
                Ok(_) => e,
                Err(err) => refused(e, err),
            }
        }
        (Command::Deployment { cmd }, Response::Deployment { outcome }) => {
            deployment_entry(cmd, outcome, before, after)?
        }
        (Command::Token { .. }, _) | (Command::Deployment { .. }, _) => return None,
        (Command::RenewLock { .. } | Command::ReleaseLock { .. }, _) => return None,
        (Command::AllocatePort { .. } | Command::ReleasePort { .. }, _) => return None,
    })
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn deployment_entry(
    cmd: &DeploymentCommand,
    outcome: &Result<DeploymentOutcome, DeploymentError>,
    before: Before,
    after: &State,
) -> Option<Entry> {
    use DeploymentCommand as C;
    let id = deployment_id(cmd)?;
    if let Err(err) = outcome {
        // A deployment waiting for its service lock retries `Start`; like a refused lock
        // acquisition, each "still held" is not an event.
        if matches!(
            (cmd, err),
            (
                C::Start { .. },
                DeploymentError::Lock(LockError::Held { .. })
            )
        ) {
            return None;
        }
        let e = Entry::ok("deployment.refused_command", format!("deployment/{id}"));
        let e = match after.deployments.all.get(&id) {
            Some(d) => e.service(d.request.service.as_str()),
            None => e,
        };
        return match cmd {
            C::Renew { .. } | C::Progress { .. } => None,
            _ => Some(refused(
                e.details(json!({"command": command_name(cmd)})),
                err,
            )),
        };
    }
    let d = after.deployments.all.get(&id);
    let target = format!("deployment/{id}");
    let with_service = |e: Entry| match d {
        Some(d) => e.service(d.request.service.as_str()),
        None => e,
    };
    let e = match cmd {
        C::Create {
            request, targets, ..
        } => {
            let (secret, plain): (Vec<_>, Vec<_>) = request.env.iter().partition(|(_, v)| v.secret);
            let names = |v: Vec<_>| -> Vec<String> {
                v.into_iter()
                    .map(|(k, _): (&sluice_common::names::EnvName, _)| k.to_string())
                    .collect()
            };
            Entry::ok("deployment.create", &target)
                .service(request.service.as_str())
                .details(json!({
                    "image": request.image, "targets": targets,
                    "env": names(plain), "secret_env": names(secret),
                    // An idempotent replay names the deployment it returned.
                    "replay_of": outcome.as_ref().ok().filter(|o| !o.created).map(|o| o.id),
                }))
        }
        C::Start { .. } | C::Event { .. } => {
            let to = d?.state();
            let (event, reason, failure) = match cmd {
                C::Event {
                    event,
                    reason,
                    failure,
                    ..
                } => (Some(*event), reason.as_str(), failure.as_deref()),
                _ => (None, "service lock granted", None),
            };
            with_service(
                Entry::ok(format!("deployment.{}", to.as_str()), &target).details(json!({
                    "from": before.deployment, "to": to, "event": event,
                    "reason": reason, "failure": failure,
                    "token": d.and_then(|d| d.token).map(|t| t.0),
                })),
            )
        }
        C::Refence { .. } => with_service(
            Entry::ok("deployment.refence", &target)
                .details(json!({"token": d.and_then(|d| d.token).map(|t| t.0)})),
        ),
        C::RequestRollback { .. } => {
            with_service(Entry::ok("deployment.rollback_requested", &target))
        }
        C::RequestCancel { .. } => with_service(Entry::ok("deployment.cancel_requested", &target)),
        C::BeginRollback { .. } => with_service(Entry::ok("deployment.rollback_started", &target)),
        C::GiveUp { failure, .. } => with_service(
            Entry::ok("deployment.rollback_failed", &target).details(json!({ "failure": failure })),
        ),
        C::Renew { .. } | C::Progress { .. } => return None,
    };
    Some(e)
}

fn command_name(cmd: &DeploymentCommand) -> &'static str {
    use DeploymentCommand as C;
    match cmd {
        C::Create { .. } => "create",
        C::Start { .. } => "start",
        C::Refence { .. } => "refence",
        C::Renew { .. } => "renew",
        C::Event { .. } => "event",
        C::Progress { .. } => "progress",
        C::RequestRollback { .. } => "rollback",
        C::RequestCancel { .. } => "cancel",
        C::GiveUp { .. } => "give_up",
        C::BeginRollback { .. } => "begin_rollback",
    }
}

#[cfg(test)]
mod tests {
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
}
