//! Secrets at rest: values sealed (AES-256-GCM, aws-lc-rs) under the cluster key before
//! they enter the Raft log, so the log, snapshots and sled files hold ciphertext only.
//!
//! The key file (`[secrets] key_file`, mode 0600, the same file on every coordinator)
//! holds one key per line, `ID HEX64`; the last line is the current key, which seals new
//! values, and every line still opens the values sealed under it: each [`Sealed`] value
//! names its key id, so adding a line (`sluice keys rotate`) rotates without breaking
//! anything already stored. `sluice dev` makes one. Without a key file, secrets are stored
//! as before ([`Stored::Plain`]) and the node says so at start: a key made up by one node
//! alone would leave the others unable to open what it sealed after a leader change.
//!
//! # Layout
//! - `keyfile`: reading, generating and rotating key files (mode checks included).
//! - `env`: secret environment values of a deployment request, sealed in place.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

pub mod env;
pub mod keyfile;

/// `[secrets]`: the cluster key that seals secrets before they enter the Raft log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The key file (mode 0600, the same on every coordinator; `sluice keys rotate
    /// --key-file PATH` makes or extends it). Default: none, and secrets are stored in
    /// clear (a warning at start).
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
}

/// A sealed value: the key id, the nonce and the ciphertext with its tag, hex-encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The key that sealed it.
    pub key: String,
    /// The 96-bit nonce, hex.
    pub nonce: String,
    /// Ciphertext and tag, hex.
    pub ct: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(key {})", self.key)
    }
}

/// A secret as the replicated state keeps it: sealed, or (no key file configured) plain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    /// Sealed under the cluster key.
    Sealed(Sealed),
    /// In clear: the cluster has no key file.
    Plain(String),
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sealed(s) => s.fmt(f),
            Self::Plain(_) => f.write_str("<redacted>"),
        }
    }
}

/// The node's keyring, if it has a key file: seals when it can.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    ring: Option<Keyring>,
}

impl Secrets {
    /// Over `ring` (none: secrets are stored plain).
    pub fn new(ring: Option<Keyring>) -> Self {
        Self { ring }
    }

    /// The keyring, if there is a key file.
    pub fn ring(&self) -> Option<&Keyring> {
        self.ring.as_ref()
    }

    /// Seals `plain` for `context` when there is a key.
    pub fn seal(&self, context: &str, plain: &str) -> Result<Stored, SealError> {
        match &self.ring {
            Some(r) => r.seal(context, plain).map(Stored::Sealed),
            None => Ok(Stored::Plain(plain.to_string())),
        }
    }

    /// Opens a stored secret.
    pub fn open(&self, context: &str, stored: &Stored) -> Result<String, SealError> {
        match (stored, &self.ring) {
            (Stored::Plain(p), _) => Ok(p.clone()),
            (Stored::Sealed(s), Some(r)) => r.open(context, s),
            (Stored::Sealed(s), None) => Err(SealError::UnknownKey(s.key.clone())),
        }
    }
}

/// Why a value could not be sealed or opened. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The value names a key this node does not have.
    #[error("key {0} is not in this node's key file (every coordinator needs the same [secrets] key_file)")]
    UnknownKey(String),
    /// Tampered with, or sealed for another context.
    #[error("a sealed value does not open with key {0} (tampered with, or moved)")]
    Corrupt(String),
    /// No randomness.
    #[error("no randomness available")]
    Random,
}

/// The cluster's keys.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, [u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring(current {}, {} keys)",
            self.current,
            self.keys.len()
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Keyring {
    /// A keyring from `(id, key)` pairs; the last is current. `None` when empty.
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Option<Self> {
        let current = keys.last()?.0.clone();
        Some(Self {
            current,
            keys: keys.into_iter().collect(),
        })
    }

    /// The current key's id.
    pub fn current(&self) -> &str {
        &self.current
    }

    fn key(&self, id: &str) -> Result<LessSafeKey, SealError> {
        let bytes = self
            .keys
            .get(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| SealError::UnknownKey(id.to_string()))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext` under the current key, bound to `context` (what the value is, e.g.
    /// `registry/HOST`): it opens only with the same context.
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<Sealed, SealError> {
        let key = self.key(&self.current)?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = plaintext.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut buf,
        )
        .map_err(|_| SealError::Random)?;
        Ok(Sealed {
            key: self.current.clone(),
            nonce: hex(&nonce),
            ct: hex(&buf),
        })
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<String, SealError> {
        let key = self.key(&sealed.key)?;
        let corrupt = || SealError::Corrupt(sealed.key.clone());
        let nonce: [u8; NONCE_LEN] = unhex(&sealed.nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(corrupt)?;
        let mut buf = unhex(&sealed.ct).ok_or_else(corrupt)?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[(&str, u8)]) -> Keyring {
        Keyring::new(ids.iter().map(|(i, b)| (i.to_string(), [*b; 32])).collect()).unwrap()
    }

    #[test]
    fn seals_open_rotate_and_refuse_tampering() {
        let old = ring(&[("k1", 1)]);
        let s = old.seal("registry/r:1", "??>>~~").unwrap();
        assert_eq!(s.key, "k1");
        assert!(!s.ct.contains(&hex(b"??>>~~")));
        assert!(!format!("{s:?}").contains(&s.ct));
        assert_eq!(old.open("registry/r:1", &s).unwrap(), "??>>~~");
        // Another context does not open it.
        assert!(matches!(
            old.open("registry/r:2", &s),
            Err(SealError::Corrupt(_))
        ));
        // Two seals of one value differ (fresh nonces).
        assert_ne!(old.seal("c", "x").unwrap(), old.seal("c", "x").unwrap());
        // After a rotation, new values use k2 and old ones still open.
        let new = ring(&[("k1", 1), ("k2", 2)]);
        assert_eq!(new.seal("c", "x").unwrap().key, "k2");
        assert_eq!(new.open("registry/r:1", &s).unwrap(), "??>>~~");
        // A node without the key says so.
        let stranger = ring(&[("k9", 9)]);
        assert_eq!(
            stranger.open("registry/r:1", &s),
            Err(SealError::UnknownKey("k1".into()))
        );
        let mut t = s.clone();
        t.ct.replace_range(0..2, if &t.ct[0..2] == "00" { "01" } else { "00" });
        assert!(matches!(
            old.open("registry/r:1", &t),
            Err(SealError::Corrupt(_))
        ));
    }
}
