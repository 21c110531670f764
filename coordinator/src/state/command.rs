//! The commands in the Raft log, and the answers applying them gives.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_common::agent_api::AgentRegistration;
use sluice_common::locks::{Acquire, FencingToken, Lease, LockError};
use sluice_common::names::{Label, LockKey, ServerName, ServiceName};
use sluice_common::ports::{Allocation, Port, PortError, PortRange};
use sluice_common::time::Timestamp;

use super::deployments::{
    DeploymentCommand, DeploymentError, DeploymentOutcome, PruneSummary, Retention,
};
use super::registries::RegistryCommand;
use super::sessions::SessionCommand;
use super::tokens::{TokenCommand, TokenError, TokenView};

/// A command and the proposing leader's clock reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's wall clock when it proposed this.
    pub at: Timestamp,
    /// Who asked, for the audit trail (see [`sluice_common::audit::AuditRecord::actor`]).
    #[serde(default)]
    pub actor: String,
    /// What to do.
    pub cmd: Command,
}

/// Everything that changes replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Take a lock; the token is this entry's log index.
    AcquireLock {
        /// The request.
        acquire: Acquire,
    },
    /// Extend a lease (compare-and-set on the token).
    RenewLock {
        /// The key.
        key: LockKey,
        /// The holder's token.
        token: FencingToken,
        /// New lease length from now.
        ttl: Duration,
    },
    /// Release a lease (compare-and-set on the token).
    ReleaseLock {
        /// The key.
        key: LockKey,
        /// The holder's token.
        token: FencingToken,
    },
    /// Allocate a port for a service on a server (idempotent), or reserve an explicit one.
    AllocatePort {
        /// The server.
        server: ServerName,
        /// The service.
        service: ServiceName,
        /// An explicit port.
        port: Option<Port>,
    },
    /// Release a service's port on a server.
    ReleasePort {
        /// The server.
        server: ServerName,
        /// The service.
        service: ServiceName,
    },
    /// Register or update a server by hand (admin).
    PutServer {
        /// The server.
        server: ServerName,
        /// Its agent's address.
        agent_addr: String,
        /// Labels.
        labels: Vec<Label>,
        /// Port range.
        port_range: PortRange,
        /// Whether deployments to it are refused.
        forbidden: bool,
    },
    /// Cordon a server (no new deployment placed on it) or end that.
    CordonServer {
        /// The server.
        server: ServerName,
        /// Cordoned from now on.
        cordoned: bool,
    },
    /// Forget a server and its port assignments.
    RemoveServer {
        /// The server.
        server: ServerName,
    },
    /// An agent announced itself.
    RegisterAgent {
        /// What it said.
        registration: AgentRegistration,
    },
    /// The leader saw an agent come up or go down.
    SetAgentUp {
        /// The server.
        server: ServerName,
        /// Up or down.
        up: bool,
    },
    /// The agent reported a different set of ports bound on its host.
    SetHostBound {
        /// The server.
        server: ServerName,
        /// Bound ports.
        ports: BTreeSet<u16>,
    },
    /// Replace the cluster's deployment policy.
    SetPolicy {
        /// The new policy.
        policy: sluice_common::api::Policy,
    },
    /// A deployment command.
    Deployment {
        /// The command.
        cmd: DeploymentCommand,
    },
    /// A CI token command.
    Token {
        /// The command.
        cmd: TokenCommand,
    },
    /// A private registry login command (admin).
    Registry {
        /// The command.
        cmd: RegistryCommand,
    },
    /// A web console session command.
    Session {
        /// The command.
        cmd: SessionCommand,
    },
    /// The leader noticed a lock held longer than the configured limit: record it once per
    /// grant (the audit record is what the notifier announces).
    FlagLock {
        /// The key.
        key: LockKey,
        /// The grant that is overdue.
        token: FencingToken,
    },
    /// Forget deployments and `Idempotency-Key`s beyond the limits (proposed by the leader;
    /// the limits travel in the entry so every replica forgets the same records).
    Prune {
        /// The limits.
        retention: Retention,
    },
    /// Archive the audit chain's live records up to `upto`: each node's store writes them
    /// to its archive (durably) before the state drops them and keeps the boundary.
    CheckpointAudit {
        /// The last sequence number archived.
        upto: u64,
    },
    /// A notification sink delivered everything up to audit record `seq`.
    NotifyDelivered {
        /// The sink's name.
        sink: String,
        /// The last delivered audit sequence number.
        seq: u64,
    },
}

/// What applying a command produced. Domain refusals (a held lock, no free port) are values
/// here, not storage errors: the entry was applied, and the answer is "no".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// For blank and membership entries, and commands with nothing to say.
    #[default]
    Done,
    /// A lock operation's outcome.
    Lock {
        /// The lease, or why not.
        outcome: Result<Lease, LockError>,
    },
    /// A port allocation's outcome.
    Port {
        /// The allocation, or why not.
        outcome: Result<Allocation, PortError>,
    },
    /// A port release: the port freed, if the service had one.
    PortReleased {
        /// The freed port.
        port: Option<u16>,
    },
    /// A deployment command's outcome.
    Deployment {
        /// The outcome.
        outcome: Result<DeploymentOutcome, DeploymentError>,
    },
    /// A token command's outcome.
    Token {
        /// The token (without its hash), or why not.
        outcome: Result<TokenView, TokenError>,
    },
    /// What a prune forgot.
    Pruned {
        /// The counts.
        summary: PruneSummary,
    },
    /// Nothing to do: the command was already in effect.
    Unchanged,
    /// A command naming an unknown server.
    UnknownServer {
        /// The server.
        server: ServerName,
    },
}
