//! The project CA: one self-signed ECDSA P-256 root that signs every coordinator, agent and
//! client certificate. Pure apart from key generation: callers pass the time, so tests can
//! issue certificates that are already expired.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::identity::{PeerIdentity, Role};
use super::TlsError;

/// How long `ca_init` makes the CA valid: ten years; rotating the root is a planned event.
pub const CA_DAYS: u32 = 3650;

/// Freshly issued certificates start this long before "now", so a peer whose clock is a
/// little behind does not see them as not yet valid.
const BACKDATE: Duration = Duration::from_secs(300);

/// A certificate and its private key, both PEM. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKeyPem {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key. Secret: write it with mode 0600, never log it.
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKeyPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Creates a new project CA valid from now for [`CA_DAYS`].
pub fn ca_init() -> Result<CertifiedKeyPem, TlsError> {
    ca_init_at(SystemTime::now() - BACKDATE, CA_DAYS)
}

/// Creates a new project CA valid from `not_before` for `days` days.
pub fn ca_init_at(not_before: SystemTime, days: u32) -> Result<CertifiedKeyPem, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, "Sluice project CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Sluice");
    // Path length 0: the CA signs leaves only, never an intermediate.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, not_before, days)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKeyPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `role`/`name`, valid from now for `days` days. `sans` are extra
/// DNS names or IP addresses (the name itself is always a DNS SAN).
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    role: Role,
    name: &str,
    sans: &[String],
    days: u32,
) -> Result<CertifiedKeyPem, TlsError> {
    issue_at(
        ca_cert_pem,
        ca_key_pem,
        role,
        name,
        sans,
        SystemTime::now() - BACKDATE,
        days,
    )
}

/// [`issue`] with an explicit start of validity.
pub fn issue_at(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    role: Role,
    name: &str,
    sans: &[String],
    not_before: SystemTime,
    days: u32,
) -> Result<CertifiedKeyPem, TlsError> {
    let identity = PeerIdentity::new(role, name)?;
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|_| TlsError::Pem {
        what: "CA private key",
        reason: "not a PEM PKCS#8 private key".into(),
    })?;
    check_key_matches(ca_cert_pem, &ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key).map_err(|_| TlsError::Pem {
        what: "CA certificate",
        reason: "not a PEM X.509 certificate".into(),
    })?;

    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Sluice");
    params.subject_alt_names = vec![
        SanType::URI(identity.uri().try_into()?),
        SanType::DnsName(name.try_into()?),
    ];
    for san in sans {
        let san = san.trim();
        let entry = match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if is_dns_name(san) => SanType::DnsName(san.try_into()?),
            Err(_) => {
                return Err(TlsError::Invalid(format!(
                    "SAN {san:?} is neither an IP address nor a DNS name"
                )))
            }
        };
        if !params.subject_alt_names.contains(&entry) {
            params.subject_alt_names.push(entry);
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Coordinators and agents are servers and clients both; clients only ever present it.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, not_before, days)?;

    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKeyPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn set_validity(
    params: &mut CertificateParams,
    not_before: SystemTime,
    days: u32,
) -> Result<(), TlsError> {
    if days == 0 {
        return Err(TlsError::Invalid(
            "validity must be at least one day".into(),
        ));
    }
    let start = OffsetDateTime::from(not_before);
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(days));
    Ok(())
}

/// A CA key that does not belong to the CA certificate would sign certificates nobody can
/// verify; say so at once instead.
fn check_key_matches(ca_cert_pem: &str, key: &KeyPair) -> Result<(), TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let der =
        CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|_| TlsError::Pem {
            what: "CA certificate",
            reason: "not a PEM X.509 certificate".into(),
        })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| TlsError::Pem {
        what: "CA certificate",
        reason: "not a valid X.509 certificate".into(),
    })?;
    if !cert.is_ca() {
        return Err(TlsError::Invalid(
            "the CA certificate is not a CA (basicConstraints CA:FALSE)".into(),
        ));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(TlsError::KeyMismatch("CA"));
    }
    Ok(())
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::{cert_not_after, describe};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn issued_certificate_carries_role_name_and_sans() {
        let ca = ca_init().unwrap();
        let leaf = issue(
            &ca.cert_pem,
            &ca.key_pem,
            Role::Agent,
            "web-1",
            &["10.0.0.7".into(), "web-1.example.com".into()],
            30,
        )
        .unwrap();
        let d = der(&leaf.cert_pem);
        let id = PeerIdentity::from_der(&d).unwrap();
        assert_eq!((id.role, id.name.as_str()), (Role::Agent, "web-1"));
        let s = describe(&d).unwrap();
        assert_eq!(s.common_name.as_deref(), Some("web-1"));
        assert!(s.sans.contains(&"IP:10.0.0.7".to_string()), "{:?}", s.sans);
        assert!(s.sans.contains(&"DNS:web-1.example.com".to_string()));
        assert!(!s.is_ca);
        let left = cert_not_after(&d)
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(29 * 86400) && left < Duration::from_secs(31 * 86400));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let ca = ca_init().unwrap();
        let other = ca_init().unwrap();
        let no_sans: &[String] = &[];
        assert!(issue(&ca.cert_pem, &ca.key_pem, Role::Agent, "Web_1", no_sans, 1).is_err());
        assert!(issue(
            &ca.cert_pem,
            &ca.key_pem,
            Role::Agent,
            "a",
            &["no way".into()],
            1
        )
        .is_err());
        assert!(issue(&ca.cert_pem, &ca.key_pem, Role::Agent, "a", no_sans, 0).is_err());
        assert!(matches!(
            issue(&ca.cert_pem, &other.key_pem, Role::Agent, "a", no_sans, 1),
            Err(TlsError::KeyMismatch(_))
        ));
        let leaf = issue(&ca.cert_pem, &ca.key_pem, Role::Agent, "a", no_sans, 1).unwrap();
        assert!(issue(&leaf.cert_pem, &leaf.key_pem, Role::Agent, "b", no_sans, 1).is_err());
    }

    #[test]
    fn debug_never_prints_the_key() {
        let ca = ca_init().unwrap();
        let printed = format!("{ca:?}");
        assert!(!printed.contains("PRIVATE KEY"));
        assert!(printed.contains("redacted"));
    }
}
