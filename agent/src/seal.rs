//! Environment values at rest on the agent: sealed (AES-256-GCM, aws-lc-rs) under the
//! agent's own key before an operation record reaches its disk, opened when it is read back.
//!
//! The key is 32 random bytes in `data_dir/seal.key` (mode 0600), made on first start and
//! never leaving the host: the coordinators seal with the cluster key, the agent with its
//! own, and only the container gets the plaintext (Docker keeps its own copy in the
//! container's config). Every value is sealed — the agent is not told which are secret —
//! bound to `env/OPERATION/NAME`. A value read back without the `sealed:` prefix (a record
//! from before sealing) is taken as it is.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

const PREFIX: &str = "sealed:";

/// The agent's key.
pub struct AgentKey(LessSafeKey);

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentKey")
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

impl AgentKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"),
        ))
    }

    /// A fresh random key (in memory: temporary stores).
    pub fn random() -> std::io::Result<Self> {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).map_err(|_| std::io::Error::other("no randomness"))?;
        Ok(Self::from_bytes(&k))
    }

    /// `dir/seal.key`, made (0600) if missing; refused when readable by others.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("seal.key");
        if !path.exists() {
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).map_err(|_| std::io::Error::other("no randomness"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(hex(&k).as_bytes())?;
            f.sync_all()?;
        }
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "{}: readable by group or others (mode {mode:o}); run chmod 600 on it",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path)?;
        let bytes: [u8; 32] = unhex(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("{}: not 64 hex digits", path.display()))
            })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// `sealed:NONCE:CIPHERTEXT` of `plain`, bound to `context`.
    pub fn seal(&self, context: &str, plain: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_string())?;
        let mut buf = plain.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "sealing failed".to_string())?;
        Ok(format!("{PREFIX}{}:{}", hex(&nonce), hex(&buf)))
    }

    /// Opens what [`AgentKey::seal`] made; a value without the prefix is returned as it is.
    pub fn open(&self, context: &str, stored: &str) -> Result<String, String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bad = || format!("a sealed value for {context} does not open with this agent's key");
        let (nonce, ct) = rest.split_once(':').ok_or_else(bad)?;
        let nonce: [u8; NONCE_LEN] = unhex(nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(bad)?;
        let mut buf = unhex(ct).ok_or_else(bad)?;
        let plain = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_keeps_its_key_file_private() {
        let dir = tempfile::tempdir().unwrap();
        let k = AgentKey::load_or_create(dir.path()).unwrap();
        let s = k.seal("env/op/TOKEN", "s3cret").unwrap();
        assert!(s.starts_with("sealed:") && !s.contains("s3cret"));
        // The same key after a restart opens it; another context or key does not.
        let again = AgentKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open("env/op/TOKEN", &s).unwrap(), "s3cret");
        assert!(again.open("env/op/OTHER", &s).is_err());
        assert!(AgentKey::random()
            .unwrap()
            .open("env/op/TOKEN", &s)
            .is_err());
        assert_eq!(k.open("x", "plain").unwrap(), "plain");
        std::fs::set_permissions(
            dir.path().join("seal.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(AgentKey::load_or_create(dir.path()).is_err());
    }
}
