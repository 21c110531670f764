//! Who is on the other end: the role and name a certificate carries in its one
//! `urn:sluice:<role>:<name>` SAN URI.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;

use crate::names::ServerName;

/// The URI prefix that marks a Sluice identity SAN.
pub const URI_PREFIX: &str = "urn:sluice:";

/// What a certificate holder may do. A coordinator talks Raft and commands agents; an
/// agent runs workloads for the one server its certificate names; a client is an operator
/// or CI job using the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A coordinator node.
    Coordinator,
    /// An agent on one server.
    Agent,
    /// An operator or CI client.
    Client,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 3] = [Role::Coordinator, Role::Agent, Role::Client];

    /// The lowercase spelling used in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Agent => "agent",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::Role(s.chars().take(40).collect()))
    }
}

/// Why a certificate has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a parseable X.509 certificate.
    #[error("not a valid X.509 certificate")]
    Unparseable,
    /// No `urn:sluice:` SAN URI.
    #[error("no {URI_PREFIX}<role>:<name> SAN URI")]
    Missing,
    /// More than one `urn:sluice:` SAN URI: ambiguous, so refused.
    #[error("{0} {URI_PREFIX} SAN URIs; exactly one is allowed")]
    Several(usize),
    /// The URI is not `urn:sluice:<role>:<name>`.
    #[error("malformed identity URI {0:?}")]
    Malformed(String),
    /// Unknown role.
    #[error("unknown role {0:?} (expected coordinator, agent or client)")]
    Role(String),
    /// The name breaks the naming rules.
    #[error("{0}")]
    Name(#[from] crate::names::InvalidValue),
}

/// The verified identity of a TLS peer. Only ever built from a certificate whose chain
/// rustls has already verified against the project CA (or by the CA when issuing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// What the peer may do.
    pub role: Role,
    /// Its name: a coordinator's node name, an agent's server name, a client's name. Follows
    /// the server-name rules (RFC 1123 label), so it can be compared with a `ServerName`.
    pub name: String,
}

impl PeerIdentity {
    /// Checks the name and builds an identity.
    pub fn new(role: Role, name: &str) -> Result<Self, IdentityError> {
        ServerName::parse(name)?;
        Ok(Self {
            role,
            name: name.to_string(),
        })
    }

    /// The SAN URI that carries this identity.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}:{}", self.role, self.name)
    }

    /// Parses `urn:sluice:<role>:<name>`.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let malformed = || IdentityError::Malformed(uri.chars().take(100).collect());
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(malformed)?;
        let (role, name) = rest.split_once(':').ok_or_else(malformed)?;
        Self::new(role.parse()?, name)
    }

    /// Reads the identity of a certificate (DER). The chain must already be verified: this
    /// only reads names. Exactly one `urn:sluice:` URI is required.
    pub fn from_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::Unparseable)?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| IdentityError::Unparseable)?;
        let uris: Vec<&str> = san
            .iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .filter_map(|n| match n {
                GeneralName::URI(u) if u.starts_with(URI_PREFIX) => Some(*u),
                _ => None,
            })
            .collect();
        match uris.as_slice() {
            [] => Err(IdentityError::Missing),
            [uri] => Self::from_uri(uri),
            more => Err(IdentityError::Several(more.len())),
        }
    }

    /// Fails unless the role is one of `allowed`: the check an endpoint makes after the
    /// handshake ("only coordinators may call the agent API").
    pub fn require_role(&self, allowed: &[Role]) -> Result<(), IdentityError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(IdentityError::Role(self.role.to_string()))
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// The end of a certificate's validity (DER), for expiry metrics and `sluice ca show`.
pub fn cert_not_after(der: &[u8]) -> Result<SystemTime, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::Unparseable)?;
    Ok(unix_to_system(cert.validity().not_after.timestamp()))
}

/// What `sluice ca show` prints: everything a person needs to recognise a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The Subject CN, if any.
    pub common_name: Option<String>,
    /// The identity, or why there is none.
    pub identity: Result<PeerIdentity, IdentityError>,
    /// Every SAN, printed (`DNS:x`, `IP:1.2.3.4`, `URI:...`).
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
}

/// Describes a certificate (DER) without verifying it.
pub fn describe(der: &[u8]) -> Result<CertSummary, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::Unparseable)?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let sans = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparseable)?
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::IPAddress(b) => match b.len() {
                4 => format!("IP:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])),
                16 => {
                    let a: [u8; 16] = (*b).try_into().unwrap_or([0; 16]);
                    format!("IP:{}", std::net::Ipv6Addr::from(a))
                }
                _ => "IP:?".to_string(),
            },
            other => format!("{other}"),
        })
        .collect();
    Ok(CertSummary {
        common_name,
        identity: PeerIdentity::from_der(der),
        sans,
        not_before: unix_to_system(cert.validity().not_before.timestamp()),
        not_after: unix_to_system(cert.validity().not_after.timestamp()),
        is_ca: cert.is_ca(),
    })
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trips() {
        let id = PeerIdentity::new(Role::Agent, "web-1").unwrap();
        assert_eq!(id.uri(), "urn:sluice:agent:web-1");
        assert_eq!(PeerIdentity::from_uri(&id.uri()).unwrap(), id);
    }

    #[test]
    fn bad_uris_are_refused() {
        for uri in [
            "urn:sluice:agent",
            "urn:sluice:root:x",
            "urn:sluice:agent:Web",
            "urn:sluice:agent:a:b",
            "urn:other:agent:x",
            "urn:sluice:agent:",
        ] {
            assert!(PeerIdentity::from_uri(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn roles_parse() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("Agent".parse::<Role>().is_err());
    }
}
