//! Outgoing Raft RPC over HTTP (reqwest).
//!
//! Requests are JSON except snapshot chunks, which are framed as
//! `[u32 header length][header JSON][raw bytes]` so a snapshot is not inflated 3–4× by JSON's
//! number arrays. A successful call is a 200 with the response; a Raft-level error is a
//! non-2xx problem+json whose `raft_error` member carries openraft's error (never an error
//! inside a 200).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{NodeId, TypeConfig};
use crate::http::Transport;

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

/// The header of a framed snapshot chunk: everything of the request but its bytes.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub vote: openraft::Vote<NodeId>,
    pub meta: openraft::SnapshotMeta<NodeId, BasicNode>,
    pub offset: u64,
    pub done: bool,
}

/// Frames a snapshot chunk.
pub(crate) fn frame_snapshot(req: InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    let header = serde_json::to_vec(&SnapshotHeader {
        vote: req.vote,
        meta: req.meta,
        offset: req.offset,
        done: req.done,
    })
    .expect("plain data serializes");
    let mut body = Vec::with_capacity(4 + header.len() + req.data.len());
    body.extend_from_slice(&(header.len() as u32).to_be_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(&req.data);
    body
}

/// Parses a framed snapshot chunk.
pub(crate) fn unframe_snapshot(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    if body.len() < 4 {
        return Err("snapshot frame shorter than its length prefix".into());
    }
    let n = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    let header = body
        .get(4..4 + n)
        .ok_or("snapshot frame shorter than its header")?;
    let h: SnapshotHeader =
        serde_json::from_slice(header).map_err(|e| format!("bad snapshot header: {e}"))?;
    Ok(InstallSnapshotRequest {
        vote: h.vote,
        meta: h.meta,
        offset: h.offset,
        data: body[4 + n..].to_vec(),
        done: h.done,
    })
}

/// Makes one [`Peer`] per target; all share one connection pool.
#[derive(Debug, Clone)]
pub struct Network {
    transport: Transport,
    append_timeout: Duration,
}

impl Network {
    /// A network over `transport`; an append RPC counts as failed after `append_timeout`
    /// (see [`append_timeout`]).
    pub fn new(transport: Transport, append_timeout: Duration) -> Self {
        Self {
            transport,
            append_timeout,
        }
    }
}

/// How long one append RPC (replication, heartbeat, a read's leadership confirmation) may
/// take: openraft 0.9 gives it the heartbeat interval, which a loaded machine misses (a
/// batch of entries plus the follower's `fdatasync` on two busy cores). Cutting it off
/// there re-sends the same entries and lets the leader lease lapse though the follower
/// answered; so it is waited for up to the shortest election timeout, after which the
/// follower would campaign anyway.
pub fn append_timeout(heartbeat: Duration, election_timeout_min: Duration) -> Duration {
    heartbeat.max(election_timeout_min)
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            transport: self.transport.clone(),
            target,
            addr: node.addr.clone(),
            append_timeout: self.append_timeout,
        }
    }
}

/// How long append RPCs (replication and heartbeats) took against their budget, the
/// heartbeat interval (openraft's timeout for them): process-wide, for `/metrics`.
#[derive(Debug)]
pub struct RpcTimes {
    /// RPCs sent.
    pub sent: AtomicU64,
    /// RPCs that took their whole budget or more (timed out, or nearly).
    pub over_budget: AtomicU64,
    /// The slowest, in microseconds.
    pub max_micros: AtomicU64,
}

impl RpcTimes {
    const fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, took: Duration, budget: Duration) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if took >= budget {
            self.over_budget.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.max_micros.fetch_max(us, Ordering::Relaxed);
    }
}

/// This process's append RPC times.
pub static APPENDS: RpcTimes = RpcTimes::new();

/// The client side of Raft RPC to one node.
#[derive(Debug)]
pub struct Peer {
    transport: Transport,
    target: NodeId,
    addr: String,
    append_timeout: Duration,
}

impl Peer {
    async fn send<Resp, E>(
        &self,
        path: &str,
        body: reqwest::RequestBuilder,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let resp = body.timeout(option.hard_ttl()).send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)));
        }
        // A Raft error travels in the problem's `raft_error` member.
        #[derive(Deserialize)]
        struct Body<E> {
            raft_error: Option<E>,
            detail: Option<String>,
        }
        match serde_json::from_slice::<Body<RaftError<NodeId, E>>>(&bytes) {
            Ok(Body {
                raft_error: Some(e),
                ..
            }) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(Body { detail, .. }) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!(
                    "{path} on node {} answered {status}: {}",
                    self.target,
                    detail.unwrap_or_default()
                )),
            ))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    async fn json<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let b = self
            .transport
            .client()
            .post(self.transport.url(&self.addr, path))
            .json(req);
        self.send(path, b, option).await
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let started = std::time::Instant::now();
        let patient = RPCOption::new(append_timeout(option.hard_ttl(), self.append_timeout));
        let r = self.json("/raft/append", &rpc, &patient).await;
        APPENDS.record(started.elapsed(), option.hard_ttl());
        r
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let b = self
            .transport
            .client()
            .post(self.transport.url(&self.addr, "/raft/snapshot"))
            .header("content-type", "application/octet-stream")
            .body(frame_snapshot(rpc));
        self.send("/raft/snapshot", b, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.json("/raft/vote", &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_frames_round_trip_and_reject_garbage() {
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: openraft::Vote::new(3, 1),
            meta: Default::default(),
            offset: 42,
            data: vec![0, 1, 2, 255],
            done: true,
        };
        let back = unframe_snapshot(&frame_snapshot(req.clone())).unwrap();
        assert_eq!(back, req);
        assert!(unframe_snapshot(&[0, 0]).is_err());
        assert!(unframe_snapshot(&[0, 0, 0, 9, b'{']).is_err());
        assert!(unframe_snapshot(&[0, 0, 0, 1, b'x']).is_err());
    }
}
