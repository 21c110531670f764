//! The bytes of a snapshot: the state machine's state in the store's codec (JSON in a
//! versioned envelope), deflate-compressed. Pure (CPU only): the store runs it on a
//! blocking thread.

use serde::{Deserialize, Serialize};
use sluice_common::codec::CodecError;

use super::{decode, CODEC};
use crate::state::State;

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotState {
    pub(super) state: State,
}

/// What a compressed snapshot starts with; the rest is a deflate stream of the codec's
/// JSON. A snapshot written before compression (the bare JSON envelope, `{...`) still
/// reads; a node that predates compression refuses a compressed one when installing it
/// (it decodes before it persists, so its own snapshot stays).
const SNAPSHOT_MAGIC: &[u8] = b"SLZ1";

/// A snapshot's bytes (pure: CPU only, run it off the async workers).
pub(super) fn encode_snapshot(s: &SnapshotState) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut z =
        flate2::write::DeflateEncoder::new(SNAPSHOT_MAGIC.to_vec(), flate2::Compression::fast());
    CODEC.encode_to(&mut z, s).map_err(std::io::Error::other)?;
    z.flush()?;
    z.finish()
}

/// The state in a snapshot's bytes, compressed or not.
pub(super) fn decode_snapshot(data: &[u8]) -> Result<SnapshotState, CodecError> {
    match data.strip_prefix(SNAPSHOT_MAGIC) {
        Some(z) => {
            let mut json = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(z), &mut json)
                .map_err(|e| CodecError::Json(serde_json::Error::io(e)))?;
            decode(&json)
        }
        None => decode(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::store::encode;

    #[test]
    fn a_compressed_snapshot_round_trips_and_an_uncompressed_one_still_reads() {
        let snap = SnapshotState {
            state: State::default(),
        };
        let bytes = encode_snapshot(&snap).expect("encode");
        assert!(bytes.starts_with(SNAPSHOT_MAGIC));
        assert_eq!(decode_snapshot(&bytes).expect("decode").state, snap.state);
        // Written before compression: the bare envelope.
        let legacy = encode(&snap).expect("encode");
        assert!(legacy.starts_with(b"{"));
        assert_eq!(decode_snapshot(&legacy).expect("decode").state, snap.state);
    }

    #[test]
    fn a_damaged_compressed_snapshot_is_refused() {
        let snap = SnapshotState {
            state: State::default(),
        };
        let mut bytes = encode_snapshot(&snap).expect("encode");
        let n = bytes.len();
        bytes.truncate(n - 3);
        assert!(decode_snapshot(&bytes).is_err());
    }
}
