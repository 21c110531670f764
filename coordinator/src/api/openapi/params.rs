//! The path parameters several operations share, each declared once: a handler's
//! `#[utoipa::path]` names the type (`params(LockKeyPath)`) for the parameter's name, schema
//! and description. Handlers still take the segment as text and parse it themselves, so a
//! bad one is refused with the parser's own message; these types only document it.

use sluice_common::names::{LockKey, ServerName, ServiceName};
use utoipa::IntoParams;

/// `{id}` of `/v1/deployments/{id}/...`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeploymentPath {
    /// The deployment id.
    pub id: uuid::Uuid,
}

/// `{key}` of `/v1/locks/{key}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LockKeyPath {
    /// The lock key. It may contain `/` (`service/api`): the rest of the path after `/v1/locks/` is the key, with its slashes sent as they are or percent-encoded (`%2F`).
    pub key: LockKey,
}

/// `{name}` of `/v1/servers/{name}/...`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServerNamePath {
    /// The server.
    pub name: ServerName,
}

/// `{server}` of `/v1/ports/{server}` and `/v1/agents/{server}/...`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServerPath {
    /// The server.
    pub server: ServerName,
}

/// `{server}/{service}` of `/v1/ports/{server}/{service}`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServerServicePath {
    /// The server.
    pub server: ServerName,
    /// The service.
    pub service: ServiceName,
}
