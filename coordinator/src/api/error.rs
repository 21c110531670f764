//! The coordinator's side of the HTTP edge.
//!
//! The error type, the JSON extractor and the fallbacks are the ones both daemons share
//! ([`sluice_common::edge`]); each layer maps its own typed errors onto [`ApiError`] next
//! to where they are defined (the node layer's in `node::error`).

pub use sluice_common::edge::{method_not_allowed, not_found, optional_json, ApiError, ApiJson};
