//! `POST /v1/deployments/plan`: what a deployment would change, per server, without doing
//! it (like `nomad job plan`). The diff is a pure function of what runs and what is asked;
//! environment values never appear in it, only names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CheckResult, CreateDeploymentRequest};
use crate::image::ImageRef;
use crate::names::{EnvName, ServerName, ServiceName};

/// What a deployment would do on one server.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// The service does not run there yet: it would be started.
    Create,
    /// Something differs: a new container would replace the running one.
    Update,
    /// The same image, environment, spec and port already run there: nothing would change.
    None,
}

/// An old and a new value.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    /// What runs now (absent: nothing).
    pub from: Option<T>,
    /// What would run.
    pub to: Option<T>,
}

/// Environment variables that would change, by name only (values are never shown).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnvDiff {
    /// Names that would be new.
    pub added: Vec<EnvName>,
    /// Names that would go.
    pub removed: Vec<EnvName>,
    /// Names whose value (or secrecy) would change.
    pub changed: Vec<EnvName>,
}

impl EnvDiff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One target server's plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPlan {
    /// The server.
    pub server: ServerName,
    /// What would happen there.
    pub action: PlanAction,
    /// The image, when it would change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub image: Option<Change<ImageRef>>,
    /// The host port, when it would change (`to` absent: not known until allocated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub port: Option<Change<u16>>,
    /// Environment variable names that would change.
    #[serde(default, skip_serializing_if = "EnvDiff::is_empty")]
    pub env: EnvDiff,
    /// Container spec fields that would change (`resources`, `command`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spec: Vec<String>,
    /// Other request fields that would change (`container_port`, `health`, `strategy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

/// The answer to `POST /v1/deployments/plan`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// The service.
    pub service: ServiceName,
    /// The service's version index: the sequence number of its latest deployment (0: none
    /// yet). Pass it as `check_index` to deploy only if nothing changed since this plan.
    pub index: u64,
    /// Whether every check passed (a deployment of this request would pass validation as
    /// far as can be told without allocating anything).
    pub valid: bool,
    /// Whether any server would change.
    pub changes: bool,
    /// The digest the image's tag resolves to in its registry now (`image_in_registry`;
    /// absent for an image without a registry); a deployment pins the one it resolves
    /// at its own validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Every check's result.
    pub validation: Vec<CheckResult>,
    /// Per target server.
    pub servers: Vec<ServerPlan>,
}

/// What runs on a server now: its image and port, and the request that put it there.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    /// The image.
    pub image: &'a ImageRef,
    /// The host port.
    pub port: u16,
    /// The request of the deployment that put it there.
    pub request: &'a CreateDeploymentRequest,
}

/// The plan for one server: what `next` would change over `running` (nothing runs there:
/// `None`), `port` being the host port it would get, when known.
pub fn diff_server(
    server: &ServerName,
    running: Option<Running<'_>>,
    next: &CreateDeploymentRequest,
    port: Option<u16>,
) -> ServerPlan {
    let Some(now) = running else {
        return ServerPlan {
            server: server.clone(),
            action: PlanAction::Create,
            image: Some(Change {
                from: None,
                to: Some(next.image.clone()),
            }),
            port: Some(Change {
                from: None,
                to: port,
            }),
            env: EnvDiff {
                added: next.env.keys().cloned().collect(),
                ..EnvDiff::default()
            },
            spec: changed_fields(&Default::default(), &next.spec),
            settings: Vec::new(),
        };
    };
    let image = (now.image != &next.image).then(|| Change {
        from: Some(now.image.clone()),
        to: Some(next.image.clone()),
    });
    let port = port.filter(|p| *p != now.port).map(|p| Change {
        from: Some(now.port),
        to: Some(p),
    });
    let env = env_diff(&now.request.env, &next.env);
    let spec = changed_fields(&now.request.spec, &next.spec);
    let prev = now.request;
    let settings: Vec<String> = [
        ("container_port", prev.container_port != next.container_port),
        ("health", prev.health != next.health),
        ("strategy", prev.strategy != next.strategy),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(f, _)| f.to_string())
    .collect();
    // What the no-op rule compares (image, port, env, container port, spec) decides the
    // action; health and strategy alone change how, not what, runs.
    let same = image.is_none()
        && port.is_none()
        && env.is_empty()
        && spec.is_empty()
        && !settings.iter().any(|s| s == "container_port");
    ServerPlan {
        server: server.clone(),
        action: if same {
            PlanAction::None
        } else {
            PlanAction::Update
        },
        image,
        port,
        env,
        spec,
        settings,
    }
}

fn env_diff(
    now: &BTreeMap<EnvName, super::EnvVar>,
    next: &BTreeMap<EnvName, super::EnvVar>,
) -> EnvDiff {
    EnvDiff {
        added: next
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect(),
        removed: now
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect(),
        changed: next
            .iter()
            .filter(|(k, v)| now.get(*k).is_some_and(|old| old != *v))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// The top-level fields of two container specs that differ, by name.
fn changed_fields(
    now: &crate::container::ContainerSpec,
    next: &crate::container::ContainerSpec,
) -> Vec<String> {
    let as_map = |s: &crate::container::ContainerSpec| match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(now), as_map(next));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
