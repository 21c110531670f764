//! An HTTPS client for Sluice links: `reqwest` over the very rustls configuration of
//! [`super::client_config`], so it trusts only the project CA, uses the same aws-lc-rs
//! provider, and can insist on the server's role.

use super::config::client_config;
use super::identity::Role;
use super::TlsError;

/// A `reqwest` builder that trusts only the CA in `ca_pem`, presents `identity`
/// (certificate PEM, key PEM) if given, and refuses servers whose certificate names a role
/// outside `server_roles` (empty: any role). Add timeouts and build.
pub fn https_client(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    server_roles: &[Role],
) -> Result<reqwest::ClientBuilder, TlsError> {
    let config = client_config(ca_pem, identity, server_roles)?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .https_only(true))
}
