//! The agent's persistent state: a sled database in `data_dir`.
//!
//! Two trees: `fence` (lock key → highest token) and `ops` (operation id → record). Every
//! value is JSON in the shared versioned envelope ([`sluice_common::codec`]) carrying
//! [`FORMAT_VERSION`], so a later agent can read (or refuse, loudly) what an earlier one
//! wrote. The directory is created mode 0700: operation records hold deploy requests,
//! environment values included.
//!
//! Commits are durable before they return (sled's flush), and they are synchronous: the
//! fence is judged, persisted and admitted under one lock. The flush blocks its thread for
//! a disk write, so on the multi-threaded runtime it runs in [`off_worker`], which hands
//! the worker's other tasks (the API, heartbeats) to another thread for its duration.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_common::codec::Codec;
use sluice_common::fence::{Fence, FenceClaim};
use sluice_common::locks::FencingToken;
use sluice_common::names::LockKey;
use uuid::Uuid;

use crate::record::OpRecord;

/// The format of every stored value.
pub const FORMAT_VERSION: u32 = 1;

/// Every stored value: `{"v":FORMAT_VERSION,"data":…}` (the field name is the agent's since
/// its first release).
const CODEC: Codec = Codec::new(FORMAT_VERSION, "data");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// The data directory could not be prepared.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// A stored value is unreadable (corrupt, or written by an unknown format version).
    #[error("stored value unreadable: {0}")]
    Format(String),
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    fence: sled::Tree,
    ops: sled::Tree,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    CODEC
        .encode(v)
        .map_err(|e| StoreError::Format(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    CODEC
        .decode(bytes)
        .map_err(|e| StoreError::Format(e.to_string()))
}

/// Runs blocking `f` (a disk flush) without stalling an async worker thread: through
/// `block_in_place` on the multi-threaded runtime; directly elsewhere (a current-thread
/// runtime, as in unit tests, or no runtime), where there is no other worker to hand
/// tasks to.
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Store {
    /// Opens (creating) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let db = sled::Config::new()
            .path(dir.join("state.sled"))
            // The agent's data is tiny; sled's 1 GiB default cache would only cost memory.
            .cache_capacity(4 * 1024 * 1024)
            .open()?;
        Ok(Self {
            fence: db.open_tree("fence")?,
            ops: db.open_tree("ops")?,
            db,
        })
    }

    /// The fence as persisted.
    pub fn load_fence(&self) -> Result<Fence, StoreError> {
        let mut fence = Fence::default();
        for kv in self.fence.iter() {
            let (k, v) = kv?;
            let key = LockKey::parse(&String::from_utf8_lossy(&k))
                .map_err(|e| StoreError::Format(e.to_string()))?;
            let token: FencingToken = decode(&v)?;
            // Keys are unique, so admitting each records it.
            let _ = fence.admit(&FenceClaim { key, token });
        }
        Ok(fence)
    }

    /// Persists, in one transaction and durably, an advanced fence token and/or an
    /// operation record.
    pub fn commit(
        &self,
        fence: Option<&FenceClaim>,
        op: Option<&OpRecord>,
    ) -> Result<(), StoreError> {
        let f = match fence {
            Some(c) => Some((c.key.as_str().as_bytes().to_vec(), encode(&c.token)?)),
            None => None,
        };
        let o = match op {
            Some(r) => Some((r.view.id.as_bytes().to_vec(), encode(r)?)),
            None => None,
        };
        off_worker(|| self.write(f, o))
    }

    fn write(
        &self,
        f: Option<(Vec<u8>, Vec<u8>)>,
        o: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        (&self.fence, &self.ops)
            .transaction(|(ft, ot)| {
                if let Some((k, v)) = &f {
                    ft.insert(k.as_slice(), v.as_slice())?;
                }
                if let Some((k, v)) = &o {
                    ot.insert(k.as_slice(), v.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Sled(e),
                TransactionError::Abort(()) => StoreError::Format("aborted".into()),
            })?;
        self.db.flush()?;
        Ok(())
    }

    /// One operation record.
    pub fn get_op(&self, id: Uuid) -> Result<Option<OpRecord>, StoreError> {
        self.ops.get(id.as_bytes())?.map(|v| decode(&v)).transpose()
    }

    /// Every stored operation record (for resuming the running ones on start).
    pub fn all_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        self.ops.iter().values().map(|v| decode(&v?)).collect()
    }

    /// Flushes everything to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        off_worker(|| self.db.flush())?;
        Ok(())
    }

    /// A store in memory-backed temporary files, gone when dropped (unit tests).
    #[cfg(test)]
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(1024 * 1024)
            .open()?;
        Ok(Self {
            fence: db.open_tree("fence")?,
            ops: db.open_tree("ops")?,
            db,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_format_version() {
        let bytes = encode(&FencingToken(7)).unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), r#"{"v":1,"data":7}"#);
        assert_eq!(decode::<FencingToken>(&bytes).unwrap(), FencingToken(7));
        let e = decode::<FencingToken>(br#"{"v":2,"data":7}"#).unwrap_err();
        assert!(e.to_string().contains("format version 2"), "{e}");
    }

    #[test]
    fn fence_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let claim = FenceClaim {
            key: LockKey::parse("service/api").unwrap(),
            token: FencingToken(42),
        };
        {
            let s = Store::open(dir.path()).unwrap();
            s.commit(Some(&claim), None).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.load_fence().unwrap().highest(&claim.key),
            Some(FencingToken(42))
        );
    }
}
