//! The log as versions before the segment files kept it: sled's `logs` tree, big-endian
//! index → entry. Moved into [`wal`](super::wal) on open.

use super::wal;

/// Moves entries an older version kept in sled's `logs` tree into the segment log. While
/// that tree holds anything the move has not finished, so the log starts again from it.
pub(super) fn move_into(
    db: &sled::Db,
    logs: &sled::Tree,
    wal: &wal::Wal,
    purged: Option<u64>,
) -> sled::Result<()> {
    if logs.is_empty() {
        return Ok(());
    }
    wal.clear()?;
    let mut records = Vec::new();
    for kv in logs.iter() {
        let (k, v) = kv?;
        let index =
            u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                sled::Error::Unsupported("a log key that is not 8 bytes".to_string())
            })?);
        if purged.is_none_or(|p| index > p) {
            records.push((index, v.to_vec()));
        }
    }
    wal.append(&records)?;
    logs.clear()?;
    db.flush()?;
    tracing::info!(
        entries = records.len(),
        "moved the Raft log from sled into segment files"
    );
    Ok(())
}
