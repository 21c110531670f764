//! Private registry credentials in the replicated state, one login per registry host.
//!
//! The password is replicated sealed ([`Stored::Sealed`], under the cluster key, bound to
//! `registry/HOST`; plain when the cluster has no key file): the Raft log and snapshots hold ciphertext, and the leader that drives
//! a deployment opens it to check the image and to hand it to the agents that pull. It
//! never leaves through the API, an audit record or a log line: [`RegistryRecord::view`]
//! drops it, the audit entry names the host and username only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::api::{RegistryHost, RegistryUsername, RegistryView};
use sluice_common::time::Timestamp;

use crate::secrets::Stored;

/// What a registry password is sealed for (the AEAD's associated data).
pub fn seal_context(host: &RegistryHost) -> String {
    format!("registry/{host}")
}

/// A stored login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// The username.
    pub username: RegistryUsername,
    /// The password or token, sealed (plain without a key file).
    pub password: Stored,
    /// When it was stored.
    pub updated_at: Timestamp,
}

impl RegistryRecord {
    /// What the API shows: no password.
    pub fn view(&self, host: &RegistryHost) -> RegistryView {
        RegistryView {
            host: host.clone(),
            username: self.username.clone(),
            updated_at: self.updated_at,
        }
    }
}

/// Registry commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryCommand {
    /// Store or replace the login for `host`.
    Put {
        /// The host.
        host: RegistryHost,
        /// The username.
        username: RegistryUsername,
        /// The password, sealed (plain without a key file).
        password: Stored,
    },
    /// Replace the stored password of `host` by the same one sealed again (under the current
    /// key, after a rotation); nothing else changes. Ignored when `host` has no login.
    Reseal {
        /// The host.
        host: RegistryHost,
        /// The same password, sealed under the current key.
        password: Stored,
    },
    /// Forget the login for `host`.
    Remove {
        /// The host.
        host: RegistryHost,
    },
}

impl RegistryCommand {
    /// The host it is about.
    pub fn host(&self) -> &RegistryHost {
        match self {
            Self::Put { host, .. } | Self::Reseal { host, .. } | Self::Remove { host } => host,
        }
    }
}

/// Every stored login, by host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registries {
    /// Logins by host.
    pub by_host: BTreeMap<RegistryHost, RegistryRecord>,
}

impl Registries {
    /// Applies a command: whether it changed anything (removing an unknown host does not).
    pub fn apply(&mut self, cmd: &RegistryCommand, now: Timestamp) -> bool {
        match cmd {
            RegistryCommand::Put {
                host,
                username,
                password,
            } => {
                self.by_host.insert(
                    host.clone(),
                    RegistryRecord {
                        username: username.clone(),
                        password: password.clone(),
                        updated_at: now,
                    },
                );
                true
            }
            RegistryCommand::Reseal { host, password } => match self.by_host.get_mut(host) {
                Some(r) => {
                    r.password = password.clone();
                    true
                }
                None => false,
            },
            RegistryCommand::Remove { host } => self.by_host.remove(host).is_some(),
        }
    }

    /// The login stored for the registry `host` names, if any: its host, username and
    /// sealed password.
    pub fn for_host(&self, host: &str) -> Option<(RegistryHost, RegistryUsername, Stored)> {
        let host = RegistryHost::parse(host).ok()?;
        let r = self.by_host.get(&host)?;
        Some((host, r.username.clone(), r.password.clone()))
    }

    /// Hosts whose password is not sealed under `current` (an older key, or plain while
    /// a key exists): what a re-seal pass works on.
    pub fn stale(&self, current: Option<&str>) -> Vec<RegistryHost> {
        let Some(current) = current else {
            return Vec::new();
        };
        self.by_host
            .iter()
            .filter(|(_, r)| match &r.password {
                Stored::Sealed(s) => s.key != current,
                Stored::Plain(_) => true,
            })
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Every login without passwords, by host.
    pub fn views(&self) -> Vec<RegistryView> {
        self.by_host.iter().map(|(h, r)| r.view(h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replace_remove_and_lookup_by_image_host() {
        let mut r = Registries::default();
        let host = RegistryHost::parse("127.0.0.1:5000").unwrap();
        let ring = crate::secrets::Secrets::new(crate::secrets::Keyring::new(vec![(
            "k1".into(),
            [7; 32],
        )]));
        let put = |u: &str, p: &str| RegistryCommand::Put {
            host: host.clone(),
            username: RegistryUsername::parse(u).unwrap(),
            password: ring.seal(&seal_context(&host), p).unwrap(),
        };
        assert!(r.apply(&put("acc", "one"), Timestamp(1)));
        assert!(r.apply(&put("acc2", "??>>~~"), Timestamp(2)));
        let (h, user, sealed) = r.for_host("127.0.0.1:5000").unwrap();
        assert_eq!(user.as_str(), "acc2");
        assert_eq!(ring.open(&seal_context(&h), &sealed).unwrap(), "??>>~~");
        assert!(!serde_json::to_string(&r).unwrap().contains("??>>~~"));
        assert!(r.for_host("127.0.0.1:5001").is_none());
        let views = serde_json::to_string(&r.views()).unwrap();
        assert!(
            views.contains("acc2") && !views.contains("??>>~~"),
            "{views}"
        );
        assert!(!format!("{r:?}").contains("??>>~~"));
        assert!(r.apply(
            &RegistryCommand::Remove { host: host.clone() },
            Timestamp(3)
        ));
        assert!(!r.apply(&RegistryCommand::Remove { host }, Timestamp(4)));
        assert!(r.views().is_empty());
    }
}
