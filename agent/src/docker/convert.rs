//! Translations between bollard's models and the runtime's types: inspected containers,
//! creation bodies, Docker's timestamps.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, HostConfigLogConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use sluice_common::names::ServerName;
use uuid::Uuid;

use crate::runtime::{Container, ContainerSpec, LABEL_DEPLOYMENT, LABEL_HEALTH, LABEL_SERVER};

/// Docker's restart policy for the spec's (default `unless-stopped`).
fn restart_policy(p: Option<&sluice_common::container::RestartPolicy>) -> RestartPolicy {
    let (name, retries) = p.map(|p| p.split()).unwrap_or(("unless-stopped", None));
    let name = match name {
        "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries.map(i64::from),
    }
}

/// The creation body of `spec`, labelled as `server`'s.
pub(super) fn create_body(spec: &ContainerSpec, server: &ServerName) -> ContainerCreateBody {
    let port_key = format!("{}/tcp", spec.container_port);
    let extra = &spec.spec;
    // The user's labels first: Sluice's own (the `sluice.*` namespace, refused in a spec)
    // always win.
    let mut labels: HashMap<String, String> = extra
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    labels.extend(spec.labels.clone());
    labels.insert(LABEL_SERVER.into(), server.to_string());
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: nonempty(&extra.command),
        entrypoint: nonempty(&extra.entrypoint),
        working_dir: extra.working_dir.as_ref().map(|w| w.to_string()),
        user: extra.user.as_ref().map(|u| u.to_string()),
        stop_signal: extra.stop_signal.as_ref().map(|s| s.to_string()),
        // Whole seconds, rounded up: `docker stop` without a timeout waits this long.
        stop_timeout: extra
            .stop_grace
            .map(|g| g.get().as_millis().div_ceil(1000) as i64),
        labels: Some(labels),
        env: Some(spec.env.clone()),
        exposed_ports: Some(vec![port_key.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: Some(spec.host_ip.clone()),
                    // Empty: Docker assigns a free port (read back from the inspection).
                    host_port: Some(match spec.host_port {
                        0 => String::new(),
                        p => p.to_string(),
                    }),
                }]),
            )])),
            restart_policy: Some(restart_policy(extra.restart.as_ref())),
            memory: spec.memory_bytes.map(|m| m as i64),
            memory_reservation: extra
                .resources
                .memory_reservation
                .as_ref()
                .map(|m| m.bytes() as i64),
            pids_limit: extra.resources.pids_limit.map(i64::from),
            tmpfs: (!extra.tmpfs.is_empty()).then(|| {
                extra
                    .tmpfs
                    .iter()
                    .map(|t| {
                        let (path, opts) = t.split();
                        (path.to_string(), opts.to_string())
                    })
                    .collect()
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some(extra.log.driver.to_string()),
                config: Some(extra.log.effective_options().into_iter().collect()),
            }),
            nano_cpus: spec.millicpus.map(|m| i64::from(m) * 1_000_000),
            privileged: Some(spec.privileged),
            network_mode: spec.network_mode.clone(),
            pid_mode: spec.pid_mode.clone(),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Docker's RFC 3339 times with their fraction padded to 9 digits, so they sort as strings.
pub(super) fn sortable_time(t: Option<&str>) -> String {
    let Some(t) = t.filter(|t| !t.starts_with("0001-")) else {
        return String::new();
    };
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{secs}.{frac:0<9}Z")
}

pub(super) fn to_container(r: ContainerInspectResponse) -> Container {
    let state = r.state.unwrap_or_default();
    let labels = r
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let asked = r
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .and_then(|m| m.values().flatten().flatten().next().cloned());
    // What Docker bound, while the container runs (an asked-for "any port" is known only
    // there); else what was asked for.
    let bound = r
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .and_then(|m| m.values().flatten().flatten().next().cloned());
    let host_port = [&bound, &asked]
        .into_iter()
        .flatten()
        .filter_map(|b| b.host_port.as_deref())
        .find_map(|p| p.parse().ok().filter(|p: &u16| *p != 0));
    let host_ip = asked.and_then(|b| b.host_ip).filter(|ip| !ip.is_empty());
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let restart_count = r.restart_count.unwrap_or(0);
    let exited = matches!(status.as_str(), "exited" | "dead" | "restarting") || restart_count > 0;
    Container {
        id: r.id.unwrap_or_default(),
        image: r.config.and_then(|c| c.image).unwrap_or_default(),
        deployment: labels
            .get(LABEL_DEPLOYMENT)
            .and_then(|d| Uuid::parse_str(d).ok()),
        running: state.running.unwrap_or(false) || state.restarting.unwrap_or(false),
        exit_code: state.exit_code.filter(|_| exited),
        restart_count,
        finished_at: sortable_time(state.finished_at.as_deref()),
        created: sortable_time(r.created.as_deref()),
        health_check: labels
            .get(LABEL_HEALTH)
            .and_then(|h| serde_json::from_str(h).ok()),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        status,
        host_port,
        host_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_sort_as_strings() {
        let a = sortable_time(Some("2024-01-01T10:00:00.1Z"));
        let b = sortable_time(Some("2024-01-01T10:00:00.12Z"));
        assert!(a < b, "{a} {b}");
        assert_eq!(sortable_time(Some("0001-01-01T00:00:00Z")), "");
        assert!(sortable_time(Some("2024-01-01T10:00:00Z")) < b);
    }
}
