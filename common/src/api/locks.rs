//! `/v1/locks`: leases fenced by Raft log indices.

use serde::{Deserialize, Serialize};

use crate::locks::FencingToken;
use crate::names::{Holder, LockKey};
use crate::time::{DurationSpec, Timestamp};

/// `POST /v1/locks/{key}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireLockRequest {
    /// Who takes the lock (a CI job id, a person).
    pub holder: Holder,
    /// Why, shown to whoever finds it held.
    #[serde(default)]
    pub reason: String,
    /// Lease length; renew before it lapses. Default 60 s.
    #[serde(default = "default_lock_ttl")]
    #[cfg_attr(feature = "openapi", schema(default = "60s"))]
    pub ttl: DurationSpec,
    /// How long to wait for a held lock before answering 409. Default: do not wait.
    #[serde(default)]
    pub wait: Option<DurationSpec>,
}

fn default_lock_ttl() -> DurationSpec {
    DurationSpec::secs(60)
}

/// `PATCH /v1/locks/{key}`: renew (compare-and-set on the token). A release is
/// `DELETE /v1/locks/{key}?token=N`, without a body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewLockRequest {
    /// The token of the grant being renewed.
    pub token: FencingToken,
    /// New lease length from now. Default 60 s.
    #[serde(default = "default_lock_ttl")]
    #[cfg_attr(feature = "openapi", schema(default = "60s"))]
    pub ttl: DurationSpec,
}

/// A lock as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockView {
    /// The key.
    pub key: LockKey,
    /// Who holds it.
    pub holder: Holder,
    /// Why.
    pub reason: String,
    /// The fencing token: the Raft log index of the grant.
    pub token: FencingToken,
    /// When it was granted.
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

impl From<crate::locks::Lease> for LockView {
    fn from(l: crate::locks::Lease) -> Self {
        Self {
            key: l.key,
            holder: l.holder,
            reason: l.reason,
            token: l.token,
            acquired_at: l.acquired_at,
            expires_at: l.expires_at,
        }
    }
}

/// `GET /v1/locks`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockList {
    /// Live leases.
    pub locks: Vec<LockView>,
}
