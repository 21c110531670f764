//! Mutual TLS for every Sluice link: the project CA, identities carried in certificates,
//! rustls configurations with exactly one crypto provider (aws-lc-rs), and certificates that
//! are reloaded from disk without a restart.
//!
//! Behind the `tls` feature, so the domain core's default build stays free of crypto and
//! files; the accept loop and the HTTPS client are behind `serve` (which pulls tokio).
//!
//! # How an identity is carried
//! Every certificate the project CA issues names its holder twice: the Subject CN is the
//! name (for people reading it), and exactly one SAN URI `urn:sluice:<role>:<name>` is the
//! machine-checked identity. A certificate whose chain verifies against the project CA but
//! which lacks that URI, or carries two, has no identity and is refused; nothing ever
//! trusts the CN.
//!
//! # Layout
//! - [`identity`]: [`Role`], [`PeerIdentity`] parsed from a verified certificate.
//! - [`ca`]: creating the CA and issuing certificates (rcgen).
//! - [`config`]: rustls server and client configurations pinned to the project CA.
//! - [`files`]: certificate files on disk, and [`ServerTls`], the handle that swaps in a
//!   fresh server configuration when they change.
//! - `server` (feature `serve`): [`serve_tls`], the mTLS accept loop.
//! - `unread` (feature `serve`): request bodies a handler left unread are read to their
//!   end, so an early refusal reaches an HTTP/2 client instead of a stream reset.
//! - `client` (feature `serve`): a `reqwest` client that trusts only the project CA.

pub mod ca;
pub mod config;
pub mod files;
pub mod identity;

#[cfg(feature = "serve")]
pub mod client;
#[cfg(feature = "serve")]
pub mod server;
#[cfg(feature = "serve")]
pub mod unread;

pub use ca::{ca_init, ca_init_at, issue, issue_at, CertifiedKeyPem};
pub use config::{client_config, provider, server_config, ClientAuth};
pub use files::{ServerTls, TlsFiles, TlsMaterial};
pub use identity::{cert_not_after, describe, CertSummary, IdentityError, PeerIdentity, Role};

#[cfg(feature = "serve")]
pub use client::https_client;
#[cfg(feature = "serve")]
pub use server::{serve_tls, serve_tls_with, spawn_reloader, ServeOptions};

use std::path::PathBuf;

/// Why a TLS operation failed. Messages name files and causes, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A private key file is readable by group or others.
    #[error(
        "{path}: private key is readable by group or others (mode {mode:o}); run chmod 600 on it"
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// PEM input held nothing usable.
    #[error("{what}: {reason}")]
    Pem {
        /// What was being read ("CA certificate", "private key", ...).
        what: &'static str,
        /// Why it was unusable.
        reason: String,
    },
    /// A certificate carries no valid Sluice identity.
    #[error("certificate identity: {0}")]
    Identity(#[from] IdentityError),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the {0} certificate")]
    KeyMismatch(&'static str),
    /// A role, name or SAN given to the CA was invalid.
    #[error("{0}")]
    Invalid(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// The HTTPS client could not be built.
    #[cfg(feature = "serve")]
    #[error("HTTPS client: {0}")]
    Client(#[from] reqwest::Error),
}
