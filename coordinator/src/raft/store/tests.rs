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
