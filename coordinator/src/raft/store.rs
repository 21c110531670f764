//! Raft storage on sled: the log, the vote, and the state machine's snapshots.
//!
//! One sled `Db` per node (sled locks its directory), with trees:
//! - `logs`: big-endian log index → entry;
//! - `meta`: vote, committed log id, last purged log id;
//! - `snapshot`: where snapshots were kept before `snapshot.bin` (read when that file does
//!   not exist yet, emptied once it does; see [`snapshot_file`]).
//!
//! The state machine lives in memory. It is rebuilt on start from the last snapshot, and
//! openraft re-applies the committed log after it (we persist `committed`), so nothing
//! acknowledged is lost, and `apply` never writes per entry. Every stored value is wrapped
//! with a format version so a future layout can migrate instead of misreading.
//!
//! Durability: sled's flush writes and waits for the dirty pages (`sync_file_range`) but
//! does not flush the drive's write cache, so a power loss could lose an acknowledged entry.
//! Every log write here is therefore followed by `fdatasync` on sled's data file before
//! openraft is told it is durable, as etcd does for its WAL.

// openraft's StorageError is large; it is openraft's type and its trait signatures use it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_common::codec::{Codec, CodecError};
use tokio::sync::watch;

use super::{archive, NodeId, TypeConfig};

mod io_stats;
mod snapshot_codec;
mod snapshot_file;

use io_stats::add_micros;
pub use io_stats::{FlushTimes, FLUSHES, SNAPSHOT_BYTES};
use snapshot_codec::{decode_snapshot, encode_snapshot, SnapshotState};
use snapshot_file::SnapshotFile;

use crate::state::{Response, State};

/// The on-disk format version of every value this module writes.
pub const FORMAT_VERSION: u32 = 1;

type Node = openraft::BasicNode;
type SErr = StorageError<NodeId>;

/// Every stored value is `{"v":FORMAT_VERSION,"d":…}` (the field is this store's own name
/// since its first release; see `sluice_common::codec`).
const CODEC: Codec = Codec::new(FORMAT_VERSION, "d");

fn encode<T: Serialize>(t: &T) -> Result<Vec<u8>, CodecError> {
    CODEC.encode(t)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    CODEC.decode(bytes)
}

fn read_err(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::read(&e).into()
}
fn write_err(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::write(&e).into()
}

/// Opens (or creates) a node's store in `dir`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), sled::Error> {
    // The page cache serves replication from the newest log entries; a bigger one only
    // held old entries and snapshot pages (the thousand-agent bench's RSS).
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(16 * 1024 * 1024)
        .open()?;
    let logs = db.open_tree("logs")?;
    let meta = db.open_tree("meta")?;
    let snapshot = db.open_tree("snapshot")?;
    let data_file = Arc::new(std::fs::File::open(dir.join("db"))?);
    let log = LogStore {
        db: db.clone(),
        data_file,
        logs,
        meta,
    };
    let sm = StateMachineStore::load(snapshot, SnapshotFile::in_dir(dir), archive::dir_for(dir))?;
    Ok((log, sm))
}

// ------------------------------------------------------------------------ log

/// The Raft log and vote. Clones share the same trees (sled is internally synchronized),
/// which is how readers run beside the writer.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    /// sled's data file, for `fdatasync` after each flush.
    data_file: Arc<std::fs::File>,
    logs: sled::Tree,
    meta: sled::Tree,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    fn meta_get<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>, SErr> {
        match self.meta.get(k).map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn meta_put<T: Serialize>(&self, k: &str, v: &T) -> Result<(), SErr> {
        self.meta
            .insert(k, encode(v).map_err(write_err)?)
            .map_err(write_err)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SErr> {
        self.durable().await.map_err(write_err)
    }

    /// sled's flush, then `fdatasync` of its data file (see the module docs).
    async fn durable(&self) -> std::io::Result<()> {
        let t = std::time::Instant::now();
        self.db.flush_async().await.map_err(std::io::Error::other)?;
        add_micros(&FLUSHES.sled_micros, t);
        let t = std::time::Instant::now();
        let file = self.data_file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)??;
        add_micros(&FLUSHES.sync_micros, t);
        FLUSHES.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(key(*i)),
            Bound::Excluded(i) => Bound::Excluded(key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(key(*i)),
            Bound::Excluded(i) => Bound::Excluded(key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.logs
            .range::<[u8; 8], _>((start, end))
            .map(|kv| {
                let (_, v) = kv.map_err(read_err)?;
                decode(&v).map_err(read_err)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let last_purged: Option<LogId<NodeId>> = self.meta_get("last_purged")?;
        let last = match self.logs.last().map_err(read_err)? {
            Some((_, v)) => Some(decode::<Entry<TypeConfig>>(&v).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        self.meta_put("vote", vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        self.meta_get("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        // Not flushed on its own: it rides on the next log flush. Losing it in a crash only
        // means re-learning the commit index from the leader.
        self.meta_put("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(self
            .meta_get::<Option<LogId<NodeId>>>("committed")?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&key(e.log_id.index), encode(&e).map_err(write_err)?);
        }
        self.logs.apply_batch(batch).map_err(write_err)?;
        callback.log_io_completed(self.durable().await);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let mut batch = sled::Batch::default();
        for kv in self.logs.range(key(log_id.index)..) {
            let (k, _) = kv.map_err(read_err)?;
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(write_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        // Record the purge point first: a crash between the two steps leaves extra entries
        // (harmless), never a gap the log state does not admit to.
        self.meta_put("last_purged", &log_id)?;
        self.flush().await?;
        let mut batch = sled::Batch::default();
        for kv in self.logs.range(..=key(log_id.index)) {
            let (k, _) = kv.map_err(read_err)?;
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- state machine

/// The in-memory state machine plus what Raft needs to know about it.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// The replicated state.
    pub state: State,
    /// The last applied log id.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, Node>,
}

/// A read handle on the applied state, shared with the API.
pub type StateHandle = Arc<RwLock<Applied>>;

/// The state machine store: in-memory [`Applied`], snapshots persisted in `snapshot.bin`.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: StateHandle,
    /// Where checkpointed audit records go (see [`archive`]).
    archive_dir: Arc<PathBuf>,
    file: SnapshotFile,
    /// Where snapshots were kept before the file.
    legacy: sled::Tree,
    applied_tx: Arc<watch::Sender<u64>>,
}

impl Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore").finish_non_exhaustive()
    }
}

impl StateMachineStore {
    fn load(
        legacy: sled::Tree,
        file: SnapshotFile,
        archive_dir: PathBuf,
    ) -> Result<Self, sled::Error> {
        let me = Self {
            applied: Arc::default(),
            archive_dir: Arc::new(archive_dir),
            file,
            legacy,
            applied_tx: Arc::new(watch::channel(0).0),
        };
        if let Some((meta, data)) = me.read_snapshot().map_err(|e| {
            sled::Error::Unsupported(format!("cannot read the stored snapshot: {e}"))
        })? {
            me.restore(&meta, &data)
                .map_err(|e| sled::Error::Unsupported(format!("bad stored snapshot: {e}")))?;
        }
        Ok(me)
    }

    /// A read handle on the applied state.
    pub fn handle(&self) -> StateHandle {
        self.applied.clone()
    }

    /// Notifies the index of the last applied entry after every batch.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn restore(&self, meta: &SnapshotMeta<NodeId, Node>, data: &[u8]) -> Result<(), SErr> {
        let snap = decode_snapshot(data).map_err(read_err)?;
        self.restore_state(meta, snap);
        Ok(())
    }

    fn restore_state(&self, meta: &SnapshotMeta<NodeId, Node>, snap: SnapshotState) {
        let mut a = self.applied.write().expect("state lock poisoned");
        a.state = snap.state;
        a.last_applied = meta.last_log_id;
        a.membership = meta.last_membership.clone();
        let idx = meta.last_log_id.map_or(0, |l| l.index);
        drop(a);
        self.applied_tx.send_replace(idx);
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        // Cloned under the lock (apply waits only for the copy), encoded and compressed
        // on a blocking thread: a large state must not hold the async workers, which
        // carry the Raft heartbeats.
        let (snap, last_applied, membership) = {
            let a = self.applied.read().expect("state lock poisoned");
            (
                SnapshotState {
                    state: a.state.clone(),
                },
                a.last_applied,
                a.membership.clone(),
            )
        };
        let data = tokio::task::spawn_blocking(move || encode_snapshot(&snap))
            .await
            .map_err(write_err)?
            .map_err(write_err)?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, uuid::Uuid::new_v4()),
            None => format!("empty-{}", uuid::Uuid::new_v4()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let data = Arc::new(data);
        self.write_snapshot(&meta, data.clone()).await?;
        let data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), SErr> {
        let a = self.applied.read().expect("state lock poisoned");
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut last = None;
        {
            let mut a = self.applied.write().expect("state lock poisoned");
            for e in entries {
                a.last_applied = Some(e.log_id);
                last = Some(e.log_id.index);
                out.push(match e.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(p) => {
                        let mut answers = Vec::with_capacity(p.len());
                        for req in p.requests() {
                            archive::before_apply(&self.archive_dir, &a.state, req)
                                .map_err(write_err)?;
                            answers.push(a.state.apply(req, e.log_id.index));
                        }
                        answers
                    }
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(e.log_id), m);
                        Vec::new()
                    }
                });
            }
        }
        if let Some(i) = last {
            self.applied_tx.send_replace(i);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = Arc::new(snapshot.into_inner());
        // Decode before persisting, so a corrupt snapshot never replaces a good one; on a
        // blocking thread, like encoding.
        let bytes = data.clone();
        let snap = tokio::task::spawn_blocking(move || decode_snapshot(&bytes))
            .await
            .map_err(read_err)?
            .map_err(read_err)?;
        self.restore_state(meta, snap);
        self.write_snapshot(meta, data).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests;
