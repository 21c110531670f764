//! `/v1/cluster`: Raft membership.

use serde::{Deserialize, Serialize};

/// A coordinator node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Raft node id.
    pub id: u64,
    /// Its advertised address.
    pub addr: String,
    /// Voter or learner.
    pub voter: bool,
}

/// `GET /v1/cluster`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    /// Its role: leader, follower, candidate, learner.
    pub state: String,
    /// The leader, as this node knows it.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Last log index on this node.
    pub last_log_index: Option<u64>,
    /// Committed index as this node knows it.
    pub committed: Option<u64>,
    /// Last applied index on this node.
    pub applied: Option<u64>,
    /// Index of the last snapshot.
    pub snapshot: Option<u64>,
    /// Index of the last log entry purged (entries up to it exist only in snapshots).
    #[serde(default)]
    pub purged: Option<u64>,
    /// Members.
    pub members: Vec<ClusterMember>,
}

/// `POST /v1/cluster/members`: add a node (as learner, then voter).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Raft node id (unique, non-zero).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub id: u64,
    /// Its advertised address (`host:port`).
    #[cfg_attr(feature = "openapi", schema(pattern = ":"))]
    pub addr: String,
    /// Promote to voter once caught up. Default true.
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub voter: bool,
}

fn yes() -> bool {
    true
}
