//! `/v1/ports`: the per-server port ledger.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::names::{ServerName, ServiceName};
use crate::ports::{Port, PortRange};

/// `POST /v1/ports/{server}/{service}`: allocate (idempotent).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocatePortRequest {
    /// An explicit port; else the lowest free one in the server's range.
    #[serde(default)]
    pub port: Option<Port>,
}

/// A port held by a service on a server.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAllocationView {
    /// The server.
    pub server: ServerName,
    /// The service.
    pub service: ServiceName,
    /// The port.
    pub port: u16,
    /// False when the service already had it.
    pub newly_allocated: bool,
}

/// One server's port usage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPortsView {
    /// The server.
    pub server: ServerName,
    /// Its range.
    pub range: PortRange,
    /// Ports of the range that are not free.
    pub used: u32,
    /// Ports of the range that are free.
    pub free: u32,
    /// Service → port.
    pub assignments: BTreeMap<ServiceName, u16>,
    /// Ports the agent reported bound on the host.
    pub host_bound: Vec<u16>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// `DELETE /v1/ports/{server}/{service}`.
pub struct PortReleased {
    /// The freed port; null when the service had none there.
    pub released: Option<u16>,
}

/// `GET /v1/ports`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsList {
    /// Every server's ports.
    pub servers: Vec<ServerPortsView>,
}
