//! Two checks of validation's: the plan's read-only port check ([`peek_port`]), and
//! `container_policy` ([`container_policy`]): what a target server's agent would refuse of the
//! container spec, judged with the policy the agent reports (`GET /agent/v1/health`), so
//! validation lists it beside every other failed check instead of the deploy step failing
//! on one server after others were touched. The agent still holds every request to its
//! policy on its own.

use sluice_common::container::{ContainerPolicy, ContainerSpec};
use sluice_common::names::{ServerName, ServiceName};
use sluice_common::ports::Port;

use super::Driver;
use crate::state::Response;

/// The port an `AllocatePort` would answer, read from a copy of the ledger (a plan
/// allocates nothing), in the shape the proposal answers.
pub(super) fn peek_port(
    driver: &Driver,
    server: &ServerName,
    service: &ServiceName,
    port: Option<Port>,
) -> Response {
    let outcome = driver.node.read(|a| {
        let mut ledger = a.state.ports.clone();
        match port {
            Some(p) => ledger.reserve(server, service, p),
            None => ledger.allocate(server, service),
        }
    });
    Response::Port { outcome }
}

/// The check's verdict: what passes, or every field the policy forbids.
pub fn container_policy(
    policy: Option<&ContainerPolicy>,
    spec: &ContainerSpec,
) -> Result<String, String> {
    let Some(policy) = policy else {
        // An agent from before the container spec: it cannot run one at all.
        return Err(
            "the agent does not report a container policy (it predates the container spec): upgrade it"
                .into(),
        );
    };
    let denied = policy.violations(spec);
    if denied.is_empty() {
        return Ok("the container spec is within this server's policy".into());
    }
    Err(denied
        .into_iter()
        .map(|(field, why)| format!("{field}: {why}"))
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forbidden_field_is_named_and_an_old_agent_fails() {
        let spec: ContainerSpec = serde_json::from_value(serde_json::json!({
            "privileged": true, "volumes": ["/etc:/etc"], "command": ["x"]
        }))
        .unwrap();
        let e = container_policy(Some(&ContainerPolicy::default()), &spec).unwrap_err();
        assert!(
            e.contains("spec.privileged") && e.contains("spec.volumes.0"),
            "{e}"
        );
        let open = ContainerPolicy {
            allow_privileged: true,
            allow_host_mounts: true,
            ..Default::default()
        };
        assert!(container_policy(Some(&open), &spec).is_ok());
        assert!(container_policy(None, &spec)
            .unwrap_err()
            .contains("upgrade"));
    }
}
