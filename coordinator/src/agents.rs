//! Agent liveness, held in the leader's memory.
//!
//! Heartbeats arrive every few seconds; writing each through Raft would fill the log with
//! noise. The leader keeps the last beat per server here and proposes only changes: an
//! agent going down (no beat for `timeout`), coming back up, or reporting a different set
//! of bound ports. A new leader starts with an empty table and gives every agent a full
//! `timeout` of grace before declaring it down.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_common::agent_api::AgentHeartbeat;
use sluice_common::names::ServerName;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::state::Command;

#[derive(Debug, Clone)]
struct Beat {
    at: Instant,
}

/// The last heartbeat of every agent, on the leader.
#[derive(Debug)]
pub struct AgentTracker {
    beats: Mutex<HashMap<ServerName, Beat>>,
    leader_since: Mutex<Option<Instant>>,
    timeout: Duration,
}

/// What a heartbeat requires the leader to write.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// The server was marked down; it is up again.
    Up,
    /// The bound ports differ from the ledger's.
    Ports(BTreeSet<u16>),
}

impl AgentTracker {
    /// A tracker declaring agents down after `timeout` without a beat.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            beats: Mutex::default(),
            leader_since: Mutex::default(),
            timeout,
        })
    }

    /// Records a beat and returns the Raft writes it calls for.
    pub fn beat(&self, node: &Node, hb: &AgentHeartbeat) -> Option<Vec<Change>> {
        let (known, up, bound) = node.read(|a| {
            let rec = a.state.servers.get(&hb.server);
            (
                rec.is_some(),
                rec.is_some_and(|r| r.up),
                a.state
                    .ports
                    .server(&hb.server)
                    .map(|p| p.host_bound().clone()),
            )
        });
        if !known {
            return None;
        }
        self.beats
            .lock()
            .expect("beats lock")
            .insert(hb.server.clone(), Beat { at: Instant::now() });
        let mut changes = Vec::new();
        if !up {
            changes.push(Change::Up);
        }
        let reported: BTreeSet<u16> = hb.bound_ports.iter().copied().collect();
        if bound.as_ref() != Some(&reported) {
            changes.push(Change::Ports(reported));
        }
        Some(changes)
    }

    /// Time since `server`'s last heartbeat, if this node (as leader) has seen one.
    pub fn since_last_beat(&self, server: &ServerName) -> Option<Duration> {
        self.beats
            .lock()
            .expect("beats lock")
            .get(server)
            .map(|b| b.at.elapsed())
    }

    /// Servers marked up whose agent has not beaten within the timeout (counting from when
    /// this node became leader, for agents it has not heard from yet).
    fn overdue(&self, node: &Node, now: Instant) -> Vec<ServerName> {
        let since = match *self.leader_since.lock().expect("leader lock") {
            Some(s) => s,
            None => return Vec::new(),
        };
        let beats = self.beats.lock().expect("beats lock");
        node.read(|a| {
            a.state
                .servers
                .iter()
                .filter(|(_, r)| r.up)
                .filter(|(name, _)| {
                    let last = beats.get(*name).map_or(since, |b| b.at.max(since));
                    now.duration_since(last) > self.timeout
                })
                .map(|(n, _)| n.clone())
                .collect()
        })
    }

    /// Runs on every node; acts only while this node leads.
    pub async fn monitor(self: Arc<Self>, node: Arc<Node>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leading = node.is_leader();
            {
                let mut since = self.leader_since.lock().expect("leader lock");
                match (leading, *since) {
                    (true, None) => *since = Some(Instant::now()),
                    (false, Some(_)) => {
                        *since = None;
                        self.beats.lock().expect("beats lock").clear();
                    }
                    _ => {}
                }
            }
            if !leading {
                continue;
            }
            for server in self.overdue(&node, Instant::now()) {
                tracing::warn!(%server, "agent missed its heartbeats; marking it down");
                if let Err(e) = node
                    .propose(
                        "system:heartbeat-monitor",
                        Command::SetAgentUp {
                            server: server.clone(),
                            up: false,
                        },
                    )
                    .await
                {
                    tracing::warn!(%server, error = %e, "could not record agent down");
                }
            }
        }
    }
}
