//! The container policy: what a deploy request may ask of the host. The agent enforces it
//! whatever the coordinator says, because the agent is the last line of defence: a
//! compromised or buggy coordinator must not be able to get a privileged container onto a
//! server whose operator did not allow it.

use sluice_common::agent_api::DeployRequest;
use sluice_common::container::ContainerPolicy;

use crate::config::Policy;

/// A rule a request breaks: the field, and why.
pub type Violation = (String, String);

/// Shape errors (400): values the agent cannot interpret at all.
pub fn malformed(req: &DeployRequest) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(m) = &req.network_mode {
        let ok = !m.is_empty()
            && !m.starts_with("container:")
            && m.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            out.push((
                "network_mode".into(),
                format!("{m:?} is not a network name (container:<id> is never allowed)"),
            ));
        }
    }
    if let Some(p) = &req.pid_mode {
        if p != "host" {
            out.push((
                "pid_mode".into(),
                format!("{p:?}: only \"host\" is supported"),
            ));
        }
    }
    for (i, c) in req.cap_add.iter().enumerate() {
        if c.is_empty() || !c.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            out.push((
                format!("cap_add/{i}"),
                format!("{c:?} is not a capability name"),
            ));
        }
    }
    for (i, m) in req.mounts.iter().enumerate() {
        let parts: Vec<&str> = m.split(':').collect();
        let ok = matches!(parts.len(), 2 | 3)
            && !parts[0].is_empty()
            && parts[1].starts_with('/')
            && parts.get(2).is_none_or(|o| matches!(*o, "ro" | "rw"));
        if !ok {
            out.push((
                format!("mounts/{i}"),
                format!("{m:?} is not source:/target[:ro|rw]"),
            ));
        }
    }
    if let sluice_common::api::HealthCheck::Http { path, .. } = &req.health {
        if !path.starts_with('/') {
            out.push(("health/path".into(), "must start with '/'".into()));
        }
    }
    out.extend(req.spec.problems());
    out
}

/// The policy as the wire states it (reported in the agent's health answer, so a
/// coordinator's validation can say what this agent would refuse).
pub fn container(policy: &Policy) -> ContainerPolicy {
    ContainerPolicy {
        allow_privileged: policy.allow_privileged,
        allow_host_network: policy.allow_host_network,
        allow_host_pid: policy.allow_host_pid,
        allow_cap_add: policy.allow_cap_add,
        allow_host_mounts: policy.allow_host_mounts,
    }
}

/// Policy violations (403): allowed shapes this agent's config forbids.
pub fn violations(policy: &Policy, req: &DeployRequest) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut deny = |allowed: bool, field: &str, what: &str, key: &str| {
        if !allowed {
            out.push((
                field.to_string(),
                format!("{what} is not allowed on this server (policy.{key} = false)"),
            ));
        }
    };
    if req.privileged {
        deny(
            policy.allow_privileged,
            "privileged",
            "a privileged container",
            "allow_privileged",
        );
    }
    if req.network_mode.as_deref() == Some("host") {
        deny(
            policy.allow_host_network,
            "network_mode",
            "the host network",
            "allow_host_network",
        );
    }
    if req.pid_mode.as_deref() == Some("host") {
        deny(
            policy.allow_host_pid,
            "pid_mode",
            "the host PID namespace",
            "allow_host_pid",
        );
    }
    if !req.cap_add.is_empty() {
        deny(
            policy.allow_cap_add,
            "cap_add",
            "adding capabilities",
            "allow_cap_add",
        );
    }
    for (i, m) in req.mounts.iter().enumerate() {
        if m.starts_with('/') {
            deny(
                policy.allow_host_mounts,
                &format!("mounts/{i}"),
                "a host path mount",
                "allow_host_mounts",
            );
        }
    }
    // The container spec's fields, by the same rules (one implementation, shared with the
    // coordinator's validation).
    out.extend(container(policy).violations(&req.spec));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: serde_json::Value) -> DeployRequest {
        let mut v = serde_json::json!({
            "fence": {"key": "service/api", "token": 1},
            "service": "api", "image": "app:v1", "container_port": 8080, "host_port": 20000,
            "health": {"kind": "none"}
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn everything_is_off_by_default_and_each_rule_is_named() {
        let r = req(serde_json::json!({
            "privileged": true, "network_mode": "host", "pid_mode": "host",
            "cap_add": ["NET_ADMIN"], "mounts": ["/etc:/host-etc:ro", "data:/data"]
        }));
        assert!(malformed(&r).is_empty());
        let v = violations(&Policy::default(), &r);
        let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "privileged",
                "network_mode",
                "pid_mode",
                "cap_add",
                "mounts/0"
            ]
        );
        assert!(v[0].1.contains("allow_privileged"));
        let all = Policy {
            allow_privileged: true,
            allow_host_network: true,
            allow_host_pid: true,
            allow_cap_add: true,
            allow_host_mounts: true,
        };
        assert!(violations(&all, &r).is_empty());
        assert!(violations(&Policy::default(), &req(serde_json::json!({}))).is_empty());
    }

    #[test]
    fn the_container_spec_is_held_to_the_same_policy() {
        let r = req(serde_json::json!({"spec": {
            "privileged": true, "volumes": ["data:/data", "/srv:/srv"],
            "resources": {"memory": "1m"}
        }}));
        let fields: Vec<String> = violations(&Policy::default(), &r)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["spec.privileged", "spec.volumes.1"]);
        let bad: Vec<String> = malformed(&r).into_iter().map(|(f, _)| f).collect();
        assert_eq!(bad, ["spec.resources.memory"]);
    }

    #[test]
    fn malformed_values_are_named() {
        let r = req(serde_json::json!({
            "network_mode": "container:abc", "pid_mode": "private",
            "cap_add": ["net admin"], "mounts": ["nocolon"]
        }));
        let fields: Vec<String> = malformed(&r).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["network_mode", "pid_mode", "cap_add/0", "mounts/0"]
        );
    }
}
