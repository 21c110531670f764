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
use super::registries::RegistryCommand;
use super::sessions::SessionCommand;
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
        Command::Deployment { cmd } => state.deployments.all.meta(&cmd.id()).map(|m| m.state),
        _ => None,
    };
    Before { deployment }
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
        (Command::CordonServer { server, cordoned }, resp) => {
            let action = if *cordoned {
                "server.cordon"
            } else {
                "server.uncordon"
            };
            let e = Entry::ok(action, format!("server/{server}"));
            match resp {
                Response::UnknownServer { .. } => refused(e, &"unknown server"),
                _ => e,
            }
        }
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
        (Command::Session { cmd }, Response::Done) => match cmd {
            // The record names the token, never the session's hash.
            SessionCommand::Open { session, .. } => Entry::ok("console.sign_in", "console")
                .details(json!({
                    "token": session.token, "role": session.role,
                    "expires_at": session.expires_at,
                })),
            SessionCommand::Close { .. } => Entry::ok("console.sign_out", "console"),
        },
        (Command::Session { .. }, _) => return None,
        (Command::Prune { retention: r }, Response::Pruned { summary }) => {
            Entry::ok("deployments.pruned", "deployments").details(json!({
                "deployments": summary.deployments,
                "idempotency_keys": summary.idempotency_keys,
                "per_service": r.per_service,
                "max_age_ms": r.max_age.map(ms),
                "idempotency_ttl_ms": ms(r.idempotency_ttl),
            }))
        }
        (Command::Prune { .. }, _) => return None,
        (Command::CheckpointAudit { upto }, Response::Done) => {
            let b = after.audit.archived()?;
            Entry::ok("audit.checkpoint", "audit")
                .details(json!({"upto": upto, "archived_seq": b.seq, "archived_hash": b.hash}))
        }
        (Command::CheckpointAudit { .. }, _) => return None,
        // The host and username only: the password never reaches a record.
        (Command::Registry { cmd }, resp) => {
            let host = cmd.host();
            let e = match cmd {
                RegistryCommand::Put { username, .. } => {
                    Entry::ok("registry.login", format!("registry/{host}"))
                        .details(json!({ "username": username }))
                }
                RegistryCommand::Remove { .. } => {
                    Entry::ok("registry.remove", format!("registry/{host}"))
                }
                // Maintenance after a key rotation: nobody's decision.
                RegistryCommand::Reseal { .. } => return None,
            };
            if *resp == Response::Unchanged {
                return None;
            }
            e
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
    let id = cmd.id();
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
            C::Renew { .. }
            | C::Progress { .. }
            | C::CanaryMeasured { .. }
            | C::ResealEnv { .. } => None,
            _ => Some(refused(
                e.details(json!({"command": command_name(cmd)})),
                err,
            )),
        };
    }
    let d = after.deployments.all.get(&id);
    let d = d.as_deref();
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
        C::PinImage { digest, .. } => with_service(
            Entry::ok("deployment.image_pinned", &target).details(json!({ "digest": digest })),
        ),
        C::GiveUp { failure, .. } => with_service(
            Entry::ok("deployment.rollback_failed", &target).details(json!({ "failure": failure })),
        ),
        C::CanaryStep { step, .. } => {
            let d = d?;
            with_service(Entry::ok("deployment.canary_step", &target).details(json!({
                "step": step + 1, "steps": d.canary_steps(), "weight": d.canary_weight(*step),
            })))
        }
        C::CanaryControl {
            control, reason, ..
        } => {
            let action = match control {
                sluice_common::api::CanaryControl::Promote => "deployment.canary_promoted",
                sluice_common::api::CanaryControl::Pause => "deployment.canary_paused",
                sluice_common::api::CanaryControl::Resume => "deployment.canary_resumed",
            };
            with_service(Entry::ok(action, &target).details(json!({ "reason": reason })))
        }
        // Measurements are in the record; a failed analysis is audited with the failure.
        // Re-sealing after a key rotation is nobody's decision.
        C::Renew { .. } | C::Progress { .. } | C::CanaryMeasured { .. } | C::ResealEnv { .. } => {
            return None
        }
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
        C::CanaryStep { .. } => "canary_step",
        C::CanaryMeasured { .. } => "canary_measured",
        C::CanaryControl { .. } => "canary_control",
        C::PinImage { .. } => "pin_image",
        C::ResealEnv { .. } => "reseal_env",
    }
}

#[cfg(test)]
mod tests;
