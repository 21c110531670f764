use super::*;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(write_err)?;
        let (log, sm) = open(dir.path()).map_err(write_err)?;
        Ok((dir, log, sm))
    }
}

/// openraft's storage conformance suite against the real sled store.
#[test]
fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder)?;
    Ok(())
}

#[test]
fn rejects_unknown_format_versions() {
    let err = decode::<u32>(br#"{"v":99,"d":1}"#).unwrap_err();
    assert!(err.to_string().contains("format version 99"));
    assert_eq!(decode::<u32>(&encode(&7u32).unwrap()).unwrap(), 7);
}

/// Files written before the shared codec still open: its bytes are exactly the old
/// envelope's (`{"v":1,"d":…}`), for the values this store writes.
#[test]
fn reads_and_writes_the_format_of_existing_files() {
    #[derive(Serialize)]
    struct Versioned<T> {
        v: u32,
        d: T,
    }
    fn before<T: Serialize>(t: &T) -> Vec<u8> {
        serde_json::to_vec(&Versioned { v: 1, d: t }).unwrap()
    }
    assert_eq!(decode::<u32>(br#"{"v":1,"d":7}"#).unwrap(), 7);
    let vote = Vote::<NodeId>::new(3, 2);
    assert_eq!(encode(&vote).unwrap(), before(&vote));
    assert_eq!(decode::<Vote<NodeId>>(&before(&vote)).unwrap(), vote);
    let log_id = Some(LogId::new(openraft::CommittedLeaderId::new(3, 2), 41));
    assert_eq!(encode(&log_id).unwrap(), before(&log_id));
    assert_eq!(
        decode::<Option<LogId<NodeId>>>(&before(&log_id)).unwrap(),
        log_id
    );
}

/// A store whose snapshot sled still holds (written before `snapshot.bin`) opens with it,
/// and the next snapshot moves to the file and leaves sled's copy behind.
#[tokio::test]
async fn a_snapshot_kept_in_sled_before_the_file_still_loads_and_then_moves() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = State::default();
    let acquire = crate::state::Command::AcquireLock {
        acquire: sluice_common::locks::Acquire {
            key: sluice_common::names::LockKey::parse("k").unwrap(),
            holder: sluice_common::names::Holder::parse("a").unwrap(),
            reason: "test".into(),
            ttl: std::time::Duration::from_secs(60),
        },
    };
    let req = crate::state::Request {
        at: sluice_common::time::Timestamp(0),
        actor: "token:test".into(),
        cmd: acquire,
    };
    state.apply(&req, 41);
    assert_ne!(state, State::default());
    let meta = SnapshotMeta::<NodeId, Node> {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(2, 1), 41)),
        last_membership: StoredMembership::default(),
        snapshot_id: "2-41-legacy".into(),
    };
    {
        // As the store wrote it before: meta and data in the `snapshot` tree.
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("snapshot").unwrap();
        let data = encode_snapshot(&SnapshotState {
            state: state.clone(),
        })
        .unwrap();
        tree.insert("meta", encode(&meta).unwrap()).unwrap();
        tree.insert("data", data).unwrap();
        db.flush().unwrap();
    }
    let (_log, mut sm) = open(dir.path()).unwrap();
    assert_eq!(sm.handle().read().unwrap().state, state);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.snapshot_id, "2-41-legacy");
    assert!(!dir.path().join("snapshot.bin").exists());

    let built = sm.build_snapshot().await.unwrap();
    assert!(dir.path().join("snapshot.bin").exists());
    assert!(!sm.legacy.contains_key("data").unwrap());
    drop((_log, sm));
    let (_log, mut sm) = open(dir.path()).unwrap();
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.snapshot_id, built.meta.snapshot_id);
    assert_eq!(sm.handle().read().unwrap().state, state);
}

/// A log an older version kept in sled's `logs` tree moves into the segment files on open,
/// without what was purged, and sled's copy is emptied.
#[tokio::test]
async fn a_log_kept_in_sled_moves_into_segment_files() {
    let dir = tempfile::tempdir().unwrap();
    let leader = openraft::CommittedLeaderId::new(3, 1);
    let entry = |i: u64| Entry::<TypeConfig> {
        log_id: LogId::new(leader, i),
        payload: EntryPayload::Blank,
    };
    {
        // As the store wrote it before: big-endian index → entry, and the purge point.
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let logs = db.open_tree("logs").unwrap();
        for i in 4u64..=9 {
            logs.insert(i.to_be_bytes(), encode(&entry(i)).unwrap())
                .unwrap();
        }
        let purged = LogId::new(leader, 5);
        let meta = db.open_tree("meta").unwrap();
        meta.insert("last_purged", encode(&purged).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let (mut log, _sm) = open(dir.path()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(5));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(9));
        let got = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got, (6..=9).map(entry).collect::<Vec<_>>());
        assert!(log.db.open_tree("logs").unwrap().is_empty());
    }
}
