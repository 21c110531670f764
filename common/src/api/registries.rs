//! `/v1/registries`: credentials for private container registries, per registry host.
//!
//! Admin only. A password goes in (`PUT`) and never comes out: the list shows each host
//! and its username, and the password travels only to the agent that pulls an image from
//! that host, over mTLS, inside its deploy request. Its `Debug` says `<redacted>`, so a
//! stray `{:?}` in a log line cannot leak it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A registry host as image references name it: `registry.example.com`, `127.0.0.1:5000`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, example = "registry.example.com:5000"))]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RegistryHost(String);

impl RegistryHost {
    /// Validates a host (`name[:port]`, what [`crate::image::ImageRef::registry`] gives).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 255 {
            return Err(format!("registry host {s:?} must be 1-255 characters"));
        }
        crate::image::check_registry(s)?;
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The host.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RegistryHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registry password or token: serialized as itself (it has to travel), shown by `Debug`
/// as `<redacted>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Password, min_length = 1, max_length = 4096))]
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RegistryPassword(String);

impl RegistryPassword {
    /// Validates a password: 1-4096 characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().count() > 4096 {
            return Err("the password must be 1-4096 characters".into());
        }
        Ok(Self(s.to_string()))
    }

    /// The plaintext: only for the registry request and the agent's pull.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RegistryPassword {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for RegistryPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A registry username: 1-255 printable characters without spaces or `:` (basic auth's
/// separator).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 255, pattern = "^[!-9;-~]+$"))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RegistryUsername(String);

impl RegistryUsername {
    /// Validates a username.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok =
            !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !ok {
            return Err(format!(
                "username {s:?} must be 1-255 printable ASCII characters without spaces or ':'"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RegistryUsername {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RegistryUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Credentials for one registry host (the wire form sent to an agent).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// The username.
    pub username: RegistryUsername,
    /// The password or access token.
    pub password: RegistryPassword,
}

/// `PUT /v1/registries/{host}`: store (or replace) the credentials for `host`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRegistryRequest {
    /// The username.
    pub username: RegistryUsername,
    /// The password or access token; never shown again.
    pub password: RegistryPassword,
}

/// A stored registry login as the API shows it: no password.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryView {
    /// The registry host.
    pub host: RegistryHost,
    /// The username.
    pub username: RegistryUsername,
    /// When the credentials were stored.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_usernames_and_passwords_are_validated_and_passwords_never_debug() {
        assert_eq!(
            RegistryHost::parse("Registry.Example.com:5000")
                .unwrap()
                .as_str(),
            "registry.example.com:5000"
        );
        assert!(RegistryHost::parse("127.0.0.1:65536").is_err());
        assert!(RegistryHost::parse("bad host").is_err());
        assert!(RegistryHost::parse("").is_err());
        assert!(RegistryUsername::parse("acc2").is_ok());
        assert!(RegistryUsername::parse("a:b").is_err());
        assert!(RegistryUsername::parse("a b").is_err());
        assert!(RegistryPassword::parse("").is_err());
        let req: PutRegistryRequest =
            serde_json::from_str(r#"{"username":"acc2","password":"??>>~~"}"#).unwrap();
        assert_eq!(req.password.expose(), "??>>~~");
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("??>>~~") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(serde_json::from_str::<PutRegistryRequest>(
            r#"{"username":"a","password":"p","x":1}"#
        )
        .is_err());
    }
}
