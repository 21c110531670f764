//! Raft plumbing: the type configuration, the sled store, the HTTP transport.
//!
//! - [`store`]: log storage and state machine on one sled `Db` (separate trees).
//! - [`archive`]: checkpointed audit records written to this node's disk.
//! - [`network`]: the outgoing side of Raft RPC (reqwest).
//! - [`rpc`]: the incoming side (axum routes under `/raft/`).
//!
//! The transport lives in `network` + `rpc` only, so putting mutual TLS under it touches
//! those two files and the listener.

use std::io::Cursor;

use crate::state::{Payload, Response};

pub mod archive;
pub mod network;
pub mod store;

openraft::declare_raft_types!(
    /// Sluice's Raft type configuration.
    pub TypeConfig:
        D = Payload,
        R = Vec<Response>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Raft node ids.
pub type NodeId = u64;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
