//! CI bearer tokens in the replicated state: name, role, service scope and the SHA-256 of
//! the secret. The secret itself is never replicated, stored or logged: the API generates
//! it, hashes it, proposes only the hash, and shows the secret once to whoever created it.
//!
//! Pure like the rest of `state`: creating and revoking are commands; the clock comes from
//! the entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::names::ServiceName;
use sluice_common::time::Timestamp;

// The wire types (what `GET /v1/tokens` shows) live in `sluice_common::api`, where the
// typed client reads them too.
pub use sluice_common::api::{TokenName, TokenRole, TokenView};

/// A token as the cluster remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its name (unique, never reused: a revoked token keeps its name).
    pub name: TokenName,
    /// What it may do.
    pub role: TokenRole,
    /// For deployers: the services it may deploy; empty means all.
    pub services: Vec<ServiceName>,
    /// Lower-case hex SHA-256 of the secret.
    pub hash: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl TokenRecord {
    /// The record without its hash.
    pub fn view(&self) -> TokenView {
        TokenView {
            name: self.name.clone(),
            role: self.role,
            services: self.services.clone(),
            created_at: self.created_at,
            revoked: self.revoked,
            revoked_at: self.revoked_at,
        }
    }
}

/// Token commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TokenCommand {
    /// Add a token.
    Create {
        /// Its name.
        name: TokenName,
        /// Its role.
        role: TokenRole,
        /// Its service scope.
        services: Vec<ServiceName>,
        /// SHA-256 of the secret, lower-case hex.
        hash: String,
    },
    /// Revoke a token (idempotent).
    Revoke {
        /// Its name.
        name: TokenName,
    },
}

/// Why a token command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum TokenError {
    /// The name is taken (names are never reused, even after revocation).
    #[error("a token named {name} already exists")]
    Exists {
        /// The name.
        name: TokenName,
    },
    /// No such token.
    #[error("token {name} does not exist")]
    NotFound {
        /// The name.
        name: TokenName,
    },
}

/// Every token, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The tokens.
    pub by_name: BTreeMap<TokenName, TokenRecord>,
}

impl Tokens {
    /// Applies one command at time `now`.
    pub fn apply(&mut self, cmd: &TokenCommand, now: Timestamp) -> Result<TokenView, TokenError> {
        match cmd {
            TokenCommand::Create {
                name,
                role,
                services,
                hash,
            } => {
                if self.by_name.contains_key(name) {
                    return Err(TokenError::Exists { name: name.clone() });
                }
                let rec = TokenRecord {
                    name: name.clone(),
                    role: *role,
                    services: services.clone(),
                    hash: hash.clone(),
                    created_at: now,
                    revoked: false,
                    revoked_at: None,
                };
                let view = rec.view();
                self.by_name.insert(name.clone(), rec);
                Ok(view)
            }
            TokenCommand::Revoke { name } => {
                let rec = self
                    .by_name
                    .get_mut(name)
                    .ok_or_else(|| TokenError::NotFound { name: name.clone() })?;
                if !rec.revoked {
                    rec.revoked = true;
                    rec.revoked_at = Some(now);
                }
                Ok(rec.view())
            }
        }
    }

    /// The live (not revoked) token whose secret hashes to `hash`.
    pub fn find_live(&self, hash: &str) -> Option<&TokenRecord> {
        self.by_name.values().find(|r| !r.revoked && r.hash == hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, role: TokenRole, hash: &str) -> TokenCommand {
        TokenCommand::Create {
            name: TokenName::parse(name).unwrap(),
            role,
            services: vec![ServiceName::parse("api").unwrap()],
            hash: hash.into(),
        }
    }

    #[test]
    fn create_find_revoke() {
        let mut t = Tokens::default();
        let v = t
            .apply(&create("ci", TokenRole::Deployer, "aa"), Timestamp(5))
            .unwrap();
        assert_eq!(v.created_at, Timestamp(5));
        assert_eq!(t.find_live("aa").unwrap().role, TokenRole::Deployer);
        assert!(t.find_live("bb").is_none());
        let name = TokenName::parse("ci").unwrap();
        let v = t
            .apply(&TokenCommand::Revoke { name: name.clone() }, Timestamp(9))
            .unwrap();
        assert!(v.revoked);
        assert_eq!(v.revoked_at, Some(Timestamp(9)));
        assert!(t.find_live("aa").is_none());
        // Idempotent, and the first revocation time stays.
        let v = t
            .apply(&TokenCommand::Revoke { name }, Timestamp(12))
            .unwrap();
        assert_eq!(v.revoked_at, Some(Timestamp(9)));
    }

    #[test]
    fn names_are_never_reused_and_unknown_names_refused() {
        let mut t = Tokens::default();
        t.apply(&create("ci", TokenRole::Viewer, "aa"), Timestamp(1))
            .unwrap();
        assert!(matches!(
            t.apply(&create("ci", TokenRole::Admin, "bb"), Timestamp(2)),
            Err(TokenError::Exists { .. })
        ));
        assert!(matches!(
            t.apply(
                &TokenCommand::Revoke {
                    name: TokenName::parse("nope").unwrap()
                },
                Timestamp(3)
            ),
            Err(TokenError::NotFound { .. })
        ));
    }

    #[test]
    fn names_are_validated_and_views_carry_no_hash() {
        for bad in ["", "CI", "-x", "a b", &"x".repeat(65)] {
            assert!(TokenName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<TokenName>("\"Bad Name\"").is_err());
        let mut t = Tokens::default();
        let v = t
            .apply(&create("ci", TokenRole::Viewer, "deadbeef"), Timestamp(1))
            .unwrap();
        assert!(!serde_json::to_string(&v).unwrap().contains("deadbeef"));
    }
}
