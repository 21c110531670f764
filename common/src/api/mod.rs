//! Wire types of the coordinator's CI-facing API, version 1 (`/v1/...`).
//!
//! Request bodies use `deny_unknown_fields` and validated field types, so a typo in a CI
//! script is a 400 that names the field instead of a silently ignored option. Responses may
//! gain fields within v1; clients must ignore fields they do not know.

//! # Layout
//! One module per resource ([`canary`], [`locks`], [`ports`], [`servers`], [`cluster`],
//! [`deployments`], [`plan`], [`tokens`], [`registries`], [`probes`]), all re-exported here: callers name
//! `sluice_common::api::LockView`.

pub mod canary;
pub mod cluster;
pub mod deployments;
pub mod locks;
pub mod plan;
pub mod ports;
pub mod probes;
pub mod registries;
pub mod servers;
pub mod tokens;

pub use canary::*;
pub use cluster::*;
pub use deployments::*;
pub use locks::*;
pub use plan::*;
pub use ports::*;
pub use probes::*;
pub use registries::*;
pub use servers::*;
pub use tokens::*;

/// The API version these types describe; paths are prefixed `/v{API_VERSION}`.
pub const API_VERSION: u32 = 1;

#[cfg(test)]
mod tests;
