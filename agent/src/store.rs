//! The agent's persistent state: a sled database in `data_dir`.
//!
//! Two trees: `fence` (lock key → highest token) and `ops` (operation id → record). Every
//! value is JSON in the shared versioned envelope ([`sluice_common::codec`]) carrying
//! [`FORMAT_VERSION`], so a later agent can read (or refuse, loudly) what an earlier one
//! wrote. The directory is created mode 0700: operation records hold deploy requests, whose
//! environment values are sealed under the agent's own key ([`crate::seal`]) before they
//! are written and opened when read back.
//!
//! Commits are durable before they return (sled's flush), and they are synchronous: the
//! fence is judged, persisted and admitted under one lock. The flush blocks its thread for
//! a disk write, so on the multi-threaded runtime it runs in [`off_worker`], which hands
//! the worker's other tasks (the API, heartbeats) to another thread for its duration.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_common::agent_api::{OperationKind, OperationState};
use sluice_common::codec::Codec;
use sluice_common::fence::{Fence, FenceClaim};
use sluice_common::locks::FencingToken;
use sluice_common::names::{LockKey, ServiceName};
use sluice_common::time::Timestamp;
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

/// What `/metrics` and the pruner need of one operation record, kept in memory beside the
/// tree (built once when the store opens, then updated with every write), so neither
/// decodes the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSummary {
    /// What it does.
    pub kind: OperationKind,
    /// Where it stands.
    pub state: OperationState,
    /// Its service.
    pub service: ServiceName,
    /// When it was admitted.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

impl OpSummary {
    fn of(r: &OpRecord) -> Self {
        Self {
            kind: r.view.kind,
            state: r.view.state,
            service: r.view.service.clone(),
            started_at: r.view.started_at,
            finished_at: r.view.finished_at,
        }
    }
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    fence: sled::Tree,
    ops: sled::Tree,
    summaries: Arc<Mutex<BTreeMap<Uuid, OpSummary>>>,
    key: std::sync::Arc<crate::seal::AgentKey>,
}

/// `rec` with every deploy environment value sealed (`seal`) or opened (`!seal`).
fn env_sealed(
    key: &crate::seal::AgentKey,
    rec: &OpRecord,
    seal: bool,
) -> Result<OpRecord, StoreError> {
    let mut rec = rec.clone();
    let id = rec.view.id;
    if let crate::record::OpRequest::Deploy(req) = &mut rec.request {
        for (name, value) in req.env.iter_mut() {
            let context = format!("env/{id}/{name}");
            *value = if seal {
                key.seal(&context, value)
            } else {
                key.open(&context, value)
            }
            .map_err(StoreError::Format)?;
        }
    }
    Ok(rec)
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
        Self::over(db, crate::seal::AgentKey::load_or_create(dir)?)
    }

    /// The store over an open database: the summaries come from one pass over the records.
    fn over(db: sled::Db, key: crate::seal::AgentKey) -> Result<Self, StoreError> {
        let ops = db.open_tree("ops")?;
        let mut summaries = BTreeMap::new();
        for v in ops.iter().values() {
            let r: OpRecord = decode(&v?)?;
            summaries.insert(r.view.id, OpSummary::of(&r));
        }
        Ok(Self {
            fence: db.open_tree("fence")?,
            ops,
            db,
            summaries: Arc::new(Mutex::new(summaries)),
            key: std::sync::Arc::new(key),
        })
    }

    /// The summary of every stored record.
    pub fn summaries(&self) -> BTreeMap<Uuid, OpSummary> {
        self.summaries.lock().expect("poisoned").clone()
    }

    /// How many stored records there are per kind and state (for `/metrics`).
    pub fn op_counts(&self) -> Vec<((OperationKind, OperationState), i64)> {
        let mut counts: Vec<((OperationKind, OperationState), i64)> = Vec::new();
        for s in self.summaries.lock().expect("poisoned").values() {
            let key = (s.kind, s.state);
            match counts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => counts.push((key, 1)),
            }
        }
        counts
    }

    /// Forgets operation records, durably.
    pub fn remove_ops(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        off_worker(|| {
            let mut batch = sled::Batch::default();
            for id in ids {
                batch.remove(id.as_bytes().as_slice());
            }
            self.ops.apply_batch(batch)?;
            self.db.flush()
        })?;
        let mut summaries = self.summaries.lock().expect("poisoned");
        for id in ids {
            summaries.remove(id);
        }
        Ok(())
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
            Some(r) => Some((
                r.view.id.as_bytes().to_vec(),
                encode(&env_sealed(&self.key, r, true)?)?,
            )),
            None => None,
        };
        off_worker(|| self.write(f, o))?;
        if let Some(r) = op {
            self.summaries
                .lock()
                .expect("poisoned")
                .insert(r.view.id, OpSummary::of(r));
        }
        Ok(())
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
        self.ops
            .get(id.as_bytes())?
            .map(|v| decode(&v).and_then(|r| env_sealed(&self.key, &r, false)))
            .transpose()
    }

    /// Every stored operation record (for resuming the running ones on start).
    pub fn all_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        self.ops
            .iter()
            .values()
            .map(|v| decode(&v?).and_then(|r| env_sealed(&self.key, &r, false)))
            .collect()
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
        Self::over(db, crate::seal::AgentKey::random()?)
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

    /// A record exactly as agents before the shared codec wrote it (a deploy interrupted
    /// while its new container was being health-checked).
    const RECORD_BEFORE: &str = concat!(
        r#"{"v":1,"data":{"view":{"id":"6f1c1f4e-9a53-4a53-8d5a-0d3b4c1f2e10","kind":"deploy","#,
        r#""service":"api","image":"app:v2","state":"running","phase":"health check","#,
        r#""steps":[{"name":"ensure image","started_at":"2026-11-30T10:00:00.000Z","#,
        r#""finished_at":"2026-11-30T10:00:00.100Z","ok":true,"detail":"present (sha256:1)"}],"#,
        r#""log_tail":null,"error":null,"fence":{"key":"service/api","token":3},"#,
        r#""started_at":"2026-11-30T10:00:00.000Z","finished_at":null,"#,
        r#""container":"c00000000002","previous_container":"c00000000001","resumed":0},"#,
        r#""request":{"deploy":{"fence":{"key":"service/api","token":3},"service":"api","#,
        r#""image":"app:v2","container_port":8080,"host_port":20000,"env":{"TOKEN":"x"},"#,
        r#""health":{"kind":"none"},"limits":{"memory_bytes":null,"millicpus":null}}},"#,
        r#""stage":"started","previous_was_running":true,"deadline_at":null,"aborted":null}}"#
    );

    #[test]
    fn records_written_before_the_shared_codec_still_decode() {
        let rec: OpRecord = decode(RECORD_BEFORE.as_bytes()).unwrap();
        assert_eq!(rec.stage, crate::record::Stage::Started);
        assert_eq!(rec.view.container.as_deref(), Some("c00000000002"));
        assert!(rec.previous_was_running && rec.removal.is_none());
        // And such a record is written back byte for byte as before.
        assert_eq!(
            std::str::from_utf8(&encode(&rec).unwrap()).unwrap(),
            RECORD_BEFORE
        );
    }

    #[test]
    fn a_database_with_values_in_the_old_format_opens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("state.sled")).unwrap();
            db.open_tree("fence")
                .unwrap()
                .insert("service/api", &br#"{"v":1,"data":9}"#[..])
                .unwrap();
            let rec: OpRecord = decode(RECORD_BEFORE.as_bytes()).unwrap();
            db.open_tree("ops")
                .unwrap()
                .insert(rec.view.id.as_bytes(), RECORD_BEFORE.as_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let key = LockKey::parse("service/api").unwrap();
        assert_eq!(s.load_fence().unwrap().highest(&key), Some(FencingToken(9)));
        let ops = s.all_ops().unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(
            ops[0].view.previous_container.as_deref(),
            Some("c00000000001")
        );
    }

    #[test]
    fn summaries_follow_writes_and_removals_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rec: OpRecord = decode(RECORD_BEFORE.as_bytes()).unwrap();
        let id = rec.view.id;
        let mut other = rec.clone();
        other.view.id = Uuid::from_u128(7);
        other.view.state = OperationState::Succeeded;
        {
            let s = Store::open(dir.path()).unwrap();
            s.commit(None, Some(&rec)).unwrap();
            s.commit(None, Some(&other)).unwrap();
            assert_eq!(s.summaries()[&id].state, OperationState::Running);
            let mut counts = s.op_counts();
            counts.sort_by_key(|(_, n)| *n);
            assert_eq!(counts.len(), 2);
            s.remove_ops(&[other.view.id]).unwrap();
            assert_eq!(s.summaries().len(), 1);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.summaries().keys().copied().collect::<Vec<_>>(), vec![id]);
        assert_eq!(s.all_ops().unwrap().len(), 1);
        assert_eq!(
            s.op_counts(),
            vec![((OperationKind::Deploy, OperationState::Running), 1)]
        );
    }

    /// On the agent's (multi-threaded) runtime the flush leaves the worker; the commit is
    /// still durable and visible when it returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_on_the_multi_threaded_runtime() {
        let s = Store::temporary().unwrap();
        let claim = FenceClaim {
            key: LockKey::parse("service/api").unwrap(),
            token: FencingToken(5),
        };
        let t = tokio::spawn({
            let s = s.clone();
            async move { s.commit(Some(&claim), None) }
        });
        t.await.unwrap().unwrap();
        let key = LockKey::parse("service/api").unwrap();
        assert_eq!(s.load_fence().unwrap().highest(&key), Some(FencingToken(5)));
        s.flush().unwrap();
    }
}
