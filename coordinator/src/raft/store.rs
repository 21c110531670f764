//! Raft storage: the log in segment files, the vote and the state machine's snapshots.
//!
//! Per node directory:
//! - `wal/`: the log entries (see [`wal`]): one write and one `fdatasync` per append;
//! - a sled `Db` (sled locks the directory) with trees `meta` (vote, committed log id, last
//!   purged log id), `logs` (where entries were kept before `wal/`: moved into it on open,
//!   then emptied) and `snapshot` (where snapshots were kept before `snapshot.bin`: read
//!   when that file does not exist yet, emptied once it does; see [`snapshot_file`]).
//!
//! The state machine lives in memory. It is rebuilt on start from the last snapshot, and
//! openraft re-applies the committed log after it (we persist `committed`), so nothing
//! acknowledged is lost, and `apply` never writes per entry. Every stored value is wrapped
//! with a format version so a future layout can migrate instead of misreading.
//!
//! Durability: openraft is told an append is durable only after the segment's
//! `fdatasync`, as etcd does for its WAL. The vote and the purge point go through sled,
//! whose flush waits for its dirty pages (`sync_file_range`) but does not flush the
//! drive's write cache, so each of those flushes is followed by `fdatasync` of sled's data
//! file.

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
mod legacy_log;
mod snapshot_codec;
mod snapshot_file;
mod wal;

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
    // sled now holds only metadata and what older versions left in it.
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(4 * 1024 * 1024)
        .open()?;
    let legacy_logs = db.open_tree("logs")?;
    let meta = db.open_tree("meta")?;
    let snapshot = db.open_tree("snapshot")?;
    let data_file = Arc::new(std::fs::File::open(dir.join("db"))?);
    let purged: Option<LogId<NodeId>> = match meta.get("last_purged")? {
        Some(b) => Some(decode(&b).map_err(|e| sled::Error::Unsupported(e.to_string()))?),
        None => None,
    };
    let wal = wal::Wal::open(
        &dir.join("wal"),
        wal::SEGMENT_BYTES,
        purged.map(|l| l.index),
    )?;
    legacy_log::move_into(&db, &legacy_logs, &wal, purged.map(|l| l.index))?;
    let log = LogStore {
        db: db.clone(),
        data_file,
        meta,
        wal: Arc::new(wal),
    };
    let sm = StateMachineStore::load(snapshot, SnapshotFile::in_dir(dir), archive::dir_for(dir))?;
    Ok((log, sm))
}

// ------------------------------------------------------------------------ log

/// The Raft log and vote. Clones share the same log and trees, which is how readers run
/// beside the writer.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    /// sled's data file, for `fdatasync` after each flush.
    data_file: Arc<std::fs::File>,
    meta: sled::Tree,
    wal: Arc<wal::Wal>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
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

    /// sled's flush, then `fdatasync` of its data file (see the module docs).
    async fn flush_meta(&self) -> Result<(), SErr> {
        let t = std::time::Instant::now();
        self.db.flush_async().await.map_err(write_err)?;
        let file = self.data_file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(write_err)?
            .map_err(write_err)?;
        add_micros(&FLUSHES.sled_micros, t);
        FLUSHES.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` on the log on a blocking thread: its writes wait for the disk.
    async fn on_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&wal::Wal) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || f(&wal))
            .await
            .map_err(std::io::Error::other)?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        // Replication reads what was just appended, from the page cache: a read here is
        // shorter than a hop to a blocking thread.
        self.wal
            .read(from, to)
            .map_err(read_err)?
            .into_iter()
            .map(|(_, body)| decode(&body).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let last_purged: Option<LogId<NodeId>> = self.meta_get("last_purged")?;
        let last = match self.wal.bounds() {
            Some((_, last)) => {
                let (_, body) = self.wal.read(last, last + 1).map_err(read_err)?.remove(0);
                Some(decode::<Entry<TypeConfig>>(&body).map_err(read_err)?.log_id)
            }
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
        self.flush_meta().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        self.meta_get("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        // Not flushed on its own: sled writes it out within its flush interval. Losing it
        // in a crash only means re-learning the commit index from the leader.
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
        let records = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, encode(&e).map_err(write_err)?)))
            .collect::<Result<Vec<_>, SErr>>()?;
        callback.log_io_completed(self.on_log(move |w| w.append(&records)).await);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        self.on_log(move |w| w.truncate(log_id.index))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        // Record the purge point first: a crash between the two steps leaves extra entries
        // (skipped on open), never a gap the log state does not admit to.
        self.meta_put("last_purged", &log_id)?;
        self.flush_meta().await?;
        self.on_log(move |w| w.purge(log_id.index))
            .await
            .map_err(write_err)
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
