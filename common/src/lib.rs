//! # sluice-common
//!
//! Sluice's domain core: everything every part must agree on, as pure code. Nothing in
//! this crate reads a clock, touches a file or opens a socket; callers hand in time
//! ([`time::Timestamp`]) and Raft log indices ([`locks::FencingToken`]), so the coordinator's
//! replicas and the agents reach identical verdicts from identical inputs.
//!
//! # Layout
//! - [`names`]: validated names (services, servers, env vars, lock keys, labels).
//! - [`image`]: Docker image references.
//! - [`time`]: timestamps, the deterministic max-clock, operator-written durations.
//! - [`ports`]: ports, ranges and the per-server port ledger.
//! - [`locks`]: the lock table and fencing tokens (Raft log indices).
//! - [`fence`]: the agent-side fence (highest token seen per key).
//! - [`deployment`]: the deployment state machine.
//! - [`container`]: the container spec (command, mounts, limits, networks, logs) and the
//!   container policy that gates what it may ask of a host.
//! - [`analysis`]: canary analysis verdicts (a measurement's outcome, an analysis's verdict).
//! - [`problem`]: RFC 9457 problem+json bodies with stable codes.
//! - [`codec`]: the one versioned storage envelope every store writes its values in.
//! - [`backoff`]: the one retry policy (exponential, with jitter) of every retry loop.
//! - [`sse`]: an incremental `text/event-stream` parser (the CLI follows deployments).
//! - [`api`], [`agent_api`]: versioned wire types of the two HTTP APIs.
//! - [`proxy`]: wire types of `sluice-proxy`'s control API (routes, targets, drains).
//! - `client` (feature `client`): the typed client of the coordinator API (reqwest; the
//!   caller brings the runtime and the TLS settings).
//! - `openapi` (feature `openapi`): OpenAPI schemas of the validated types; the wire types
//!   derive `utoipa::ToSchema` under the same feature.
//! - `tls` (features `tls` and `serve`, off by default): the project CA, certificate
//!   identities, rustls configurations and the mTLS accept loop. It is the one exception to
//!   "no clock, no files, no sockets", which is why it is opt-in: the default build, which
//!   the coordinator's state machine and the agent's fence rely on, stays pure.

pub mod agent_api;
pub mod analysis;
pub mod api;
pub mod audit;
pub mod backoff;
#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod container;
pub mod deployment;
#[cfg(feature = "serve")]
pub mod edge;
pub mod fence;
#[cfg(feature = "serve")]
pub mod http_problem;
pub mod image;
pub mod locks;
pub mod names;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod ports;
pub mod problem;
pub mod proxy;
pub mod sse;
#[cfg(feature = "serve")]
pub mod systemd;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
