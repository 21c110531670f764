//! Web console sessions in the replicated state, kept like tokens: only the SHA-256 of the
//! cookie's secret is proposed, so every node accepts a session (the browser may reach any
//! of them behind a load balancer) and a sign-out, once applied, holds everywhere.
//!
//! A session carries the role and scope of the token that opened it, and the token's name:
//! revoking the token ends its sessions too (the route guard checks the token is live).
//! Expiry is judged with the replicated clock when records are pruned (every sign-in drops
//! the expired ones, so the table stays as small as the live sessions), and with the
//! answering node's wall clock when a cookie is presented.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::names::ServiceName;
use sluice_common::time::Timestamp;

use super::tokens::{TokenName, TokenRole};

/// A session as the cluster remembers it (keyed by its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Who, for audit records: the actor of the token that signed in.
    pub actor: String,
    /// The token behind it (`None` for the bootstrap admin secret).
    pub token: Option<TokenName>,
    /// Its role.
    pub role: TokenRole,
    /// Its service scope (deployers; empty: all).
    pub services: Vec<ServiceName>,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it lapses.
    pub expires_at: Timestamp,
}

/// Session commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionCommand {
    /// Open a session; `expires_at` is computed by the proposer.
    Open {
        /// Lower-case hex SHA-256 of the cookie's secret.
        hash: String,
        /// The record.
        session: SessionRecord,
    },
    /// Close a session (idempotent).
    Close {
        /// Its hash.
        hash: String,
    },
}

/// Every live session, by hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    /// The sessions.
    pub by_hash: BTreeMap<String, SessionRecord>,
}

impl Sessions {
    /// Applies one command at time `now`; answers whether a session was opened or closed.
    pub fn apply(&mut self, cmd: &SessionCommand, now: Timestamp) -> bool {
        match cmd {
            SessionCommand::Open { hash, session } => {
                self.by_hash.retain(|_, s| s.expires_at > now);
                self.by_hash.insert(hash.clone(), session.clone());
                true
            }
            SessionCommand::Close { hash } => self.by_hash.remove(hash).is_some(),
        }
    }

    /// The session whose secret hashes to `hash`, unless it lapsed by `now`.
    pub fn find_live(&self, hash: &str, now: Timestamp) -> Option<&SessionRecord> {
        self.by_hash.get(hash).filter(|s| s.expires_at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(hash: &str, expires: u64) -> SessionCommand {
        SessionCommand::Open {
            hash: hash.into(),
            session: SessionRecord {
                actor: "token:v".into(),
                token: Some(TokenName::parse("v").unwrap()),
                role: TokenRole::Viewer,
                services: vec![],
                created_at: Timestamp(0),
                expires_at: Timestamp(expires),
            },
        }
    }

    #[test]
    fn open_find_expire_close() {
        let mut s = Sessions::default();
        assert!(s.apply(&open("aa", 100), Timestamp(0)));
        assert!(s.find_live("aa", Timestamp(99)).is_some());
        assert!(s.find_live("aa", Timestamp(100)).is_none());
        assert!(s.find_live("bb", Timestamp(0)).is_none());
        // A later sign-in prunes what lapsed by the replicated clock.
        s.apply(&open("bb", 500), Timestamp(200));
        assert!(!s.by_hash.contains_key("aa"));
        assert!(s.apply(&SessionCommand::Close { hash: "bb".into() }, Timestamp(201)));
        assert!(!s.apply(&SessionCommand::Close { hash: "bb".into() }, Timestamp(202)));
        assert!(s.find_live("bb", Timestamp(203)).is_none());
    }
}
