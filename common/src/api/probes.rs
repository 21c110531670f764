//! `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};

/// `GET /healthz`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ok$"))]
    pub status: String,
}

/// `GET /readyz` (fields in the order serde_json's maps wrote them before this type existed).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The last index this node applied.
    pub applied: Option<u64>,
    /// The leader this node follows (or is).
    pub leader: Option<u64>,
    /// Always `ready`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^ready$"))]
    pub status: String,
}
