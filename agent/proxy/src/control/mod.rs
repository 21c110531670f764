//! The control API: HTTP/1.1 + JSON over a Unix socket that only allowed uids may use.
//!
//! - [`server`]: the socket, the peer-credential check, the routes.
//! - [`client`]: the typed client the agent uses.
//! - [`problem`]: the stable error codes and their statuses.

pub mod client;
pub mod problem;
pub mod server;
mod wire;

pub use client::{Client, ControlError};
