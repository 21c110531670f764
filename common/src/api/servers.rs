//! `/v1/servers` and `/v1/policy`.

use serde::{Deserialize, Serialize};

use crate::names::{Label, ServerName};
use crate::ports::PortRange;

/// `PUT /v1/servers/{name}`: register or update a server (admin).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutServerRequest {
    /// Where its agent listens (`host:port`).
    pub agent_addr: String,
    /// Labels for policy and selectors.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Its port range. Default 20000–32000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = "20000-32000"))]
    pub port_range: PortRange,
    /// Forbidden servers refuse every deployment.
    #[serde(default)]
    pub forbidden: bool,
}

/// A server as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// Its name.
    pub name: ServerName,
    /// Its agent's address.
    pub agent_addr: String,
    /// Labels.
    pub labels: Vec<Label>,
    /// Port range.
    pub port_range: PortRange,
    /// Whether deployments to it are refused.
    pub forbidden: bool,
    /// Cordoned: no new deployment is placed on it (validation says so); what runs there
    /// keeps serving. `sluice servers uncordon` ends it.
    #[serde(default)]
    pub cordoned: bool,
    /// Whether its agent is up (replicated: changes when heartbeats stop or resume).
    #[serde(default)]
    pub up: bool,
    /// Milliseconds since the agent's last heartbeat, when the answering node is the
    /// leader (heartbeats live in the leader's memory only).
    #[serde(default)]
    pub last_heartbeat_ms: Option<u64>,
    /// The Docker version the agent reported.
    #[serde(default)]
    pub docker_version: Option<String>,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Ports of the range in use (ledger or bound on the host).
    #[serde(default)]
    pub ports_used: u32,
    /// Ports of the range free.
    #[serde(default)]
    pub ports_free: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// `DELETE /v1/servers/{name}`.
pub struct ServerRemoved {
    /// The server forgotten.
    pub removed: ServerName,
}

/// `PUT /v1/servers/{name}/labels`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLabelsRequest {
    /// The server's labels, replacing the current ones.
    pub labels: Vec<Label>,
}
