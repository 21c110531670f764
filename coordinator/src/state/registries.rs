//! Private registry credentials in the replicated state, one login per registry host.
//!
//! The password is replicated (the leader that drives a deployment needs it to check the
//! image and to hand it to the agents that pull), but it never leaves through the API, an
//! audit record or a log line: [`RegistryRecord::view`] drops it, the audit entry names the
//! host and username only, and [`RegistryPassword`]'s `Debug` is `<redacted>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_common::api::{
    RegistryCredentials, RegistryHost, RegistryPassword, RegistryUsername, RegistryView,
};
use sluice_common::time::Timestamp;

/// A stored login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// The username.
    pub username: RegistryUsername,
    /// The password or token.
    pub password: RegistryPassword,
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

    /// The credentials as an agent receives them.
    pub fn credentials(&self) -> RegistryCredentials {
        RegistryCredentials {
            username: self.username.clone(),
            password: self.password.clone(),
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
        /// The password.
        password: RegistryPassword,
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
            Self::Put { host, .. } | Self::Remove { host } => host,
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
            RegistryCommand::Remove { host } => self.by_host.remove(host).is_some(),
        }
    }

    /// The credentials for the registry `host` names, if any are stored.
    pub fn for_host(&self, host: &str) -> Option<RegistryCredentials> {
        let host = RegistryHost::parse(host).ok()?;
        self.by_host.get(&host).map(RegistryRecord::credentials)
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
        let put = |u: &str, p: &str| RegistryCommand::Put {
            host: host.clone(),
            username: RegistryUsername::parse(u).unwrap(),
            password: RegistryPassword::parse(p).unwrap(),
        };
        assert!(r.apply(&put("acc", "one"), Timestamp(1)));
        assert!(r.apply(&put("acc2", "??>>~~"), Timestamp(2)));
        let c = r.for_host("127.0.0.1:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.expose()),
            ("acc2", "??>>~~")
        );
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
