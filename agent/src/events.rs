//! Follows Docker's event stream for this server's managed containers, so a container that
//! dies (crash, OOM kill) is noticed at once: it is logged, and the next heartbeat is sent
//! right away instead of at its interval. If the stream breaks (daemon restart), it is
//! re-subscribed with backoff. The in-memory engine has no events to follow. The in-memory engine has no events to follow.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::docker::{LABEL_DEPLOYMENT, LABEL_SERVICE};
use crate::Agent;

/// Runs until shutdown.
pub async fn follow(agent: Arc<Agent>) {
    let policy =
        sluice_common::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut retries = policy.retries(crate::jitter_seed("docker events"));
    let Some(docker) = agent.engine.docker() else {
        // The in-memory engine's containers never die behind the agent's back.
        return agent.cancel.cancelled().await;
    };
    loop {
        match docker.events().await {
            Ok(stream) => {
                futures_util::pin_mut!(stream);
                loop {
                    tokio::select! {
                        _ = agent.cancel.cancelled() => return,
                        ev = stream.next() => match ev {
                            Some(Ok(msg)) => {
                                retries.reset();
                                handle(&agent, msg);
                            }
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "docker event stream broke");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot follow docker events"),
        }
        tokio::select! {
            _ = agent.cancel.cancelled() => return,
            _ = tokio::time::sleep(retries.next_delay()) => {}
        }
    }
}

fn handle(agent: &Agent, msg: bollard::models::EventMessage) {
    let action = msg.action.unwrap_or_default();
    let attrs = msg.actor.and_then(|a| a.attributes).unwrap_or_default();
    let get = |k: &str| attrs.get(k).map(String::as_str).unwrap_or("?");
    match action.as_str() {
        "die" => tracing::warn!(
            service = get(LABEL_SERVICE),
            deployment = get(LABEL_DEPLOYMENT),
            container = get("name"),
            exit_code = get("exitCode"),
            "container died"
        ),
        "oom" => tracing::warn!(
            service = get(LABEL_SERVICE),
            container = get("name"),
            "container ran out of memory"
        ),
        _ => tracing::debug!(
            service = get(LABEL_SERVICE),
            container = get("name"),
            action = %action,
            "container event"
        ),
    }
    agent.state_changed.notify_one();
}
