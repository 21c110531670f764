//! rustls configurations pinned to the project CA, all built on one explicitly chosen
//! crypto provider (aws-lc-rs). Nothing here relies on a process-wide default provider, so
//! no other crate in the process can change which cryptography Sluice uses.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::identity::{PeerIdentity, Role};
use super::TlsError;

/// ALPN for the HTTP servers and clients: h2 first, HTTP/1.1 as the fallback.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The one crypto provider Sluice uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Whether a server demands a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate from the project CA (agent API, Raft, the
    /// agent-facing coordinator endpoints).
    Required,
    /// Anonymous clients are let in (the CI API, where bearer tokens authenticate); a
    /// certificate that is presented must still verify against the project CA.
    Optional,
}

/// Parses every certificate in a PEM bundle; an empty bundle is an error.
pub fn certs_from_pem(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// Parses a PEM private key. The error never quotes the input.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| TlsError::Pem {
        what: "private key",
        reason: "no usable PRIVATE KEY block".into(),
    })
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem("CA certificate", ca_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration: presents `cert_pem`/`key_pem`, verifies client certificates
/// against the CA in `ca_pem` only.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone());
    let verifier = match auth {
        ClientAuth::Required => verifier.build()?,
        ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem("certificate", cert_pem)?,
            key_from_pem(key_pem)?,
        )
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch("server"),
            e => TlsError::Rustls(e),
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration that trusts only the CA in `ca_pem`, optionally presents
/// `identity` (certificate PEM, key PEM), and, when `server_roles` is not empty, refuses a
/// server whose certificate names another role (a coordinator calling an agent passes
/// `[Role::Agent]`). The server's DNS name or IP is checked against its SANs as usual.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    server_roles: &[Role],
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider.clone())
        .build()
        .map_err(|e| TlsError::Invalid(format!("server verifier: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RoleCheckingVerifier {
            inner: webpki,
            roles: server_roles.to_vec(),
        }));
    let mut config = match identity {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                certs_from_pem("client certificate", cert_pem)?,
                key_from_pem(key_pem)?,
            )
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch("client"),
                e => TlsError::Rustls(e),
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// WebPKI verification against the project CA, then (optionally) the role in the server's
/// identity URI. Only `verify_server_cert` adds anything; signatures are WebPKI's.
#[derive(Debug)]
struct RoleCheckingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roles: Vec<Role>,
}

impl ServerCertVerifier for RoleCheckingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if !self.roles.is_empty() {
            let id = PeerIdentity::from_der(end_entity).map_err(|_| {
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
            })?;
            if !self.roles.contains(&id.role) {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}
