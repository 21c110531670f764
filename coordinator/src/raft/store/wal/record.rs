//! The bytes of one log record, and reading a segment's records back: pure functions.
//!
//! A record is a 16-byte header, then its body:
//! - `len`: u32 LE, the body's length (never 0: a zero length is where a segment's
//!   written part ends, since segments are created full of zeros);
//! - `crc`: u32 LE, CRC-32 of the index's 8 bytes followed by the body;
//! - `index`: u64 LE, the Raft log index of the entry the body encodes.

/// Bytes before a record's body.
pub const HEADER: usize = 16;

/// Where one record lies in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The entry's log index.
    pub index: u64,
    /// Offset of the record's header in the segment.
    pub offset: u64,
    /// Length of the record, header included.
    pub len: u32,
}

/// How the scan of a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At the segment's end, or at a zero length: the written part ends here.
    Clean,
    /// At a record that is cut short, fails its checksum, or breaks the run of indexes:
    /// a write torn by a crash if this is the newest segment, damage otherwise.
    Torn,
}

/// What a segment holds: its records in order, where its written part ends, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The valid records, indexes consecutive.
    pub records: Vec<Found>,
    /// The offset just past the last valid record.
    pub end: u64,
    /// Why the scan stopped there.
    pub how: End,
}

fn checksum(index: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(body);
    h.finalize()
}

/// Appends the record of entry `index` with `body` to `out`.
pub fn encode_into(out: &mut Vec<u8>, index: u64, body: &[u8]) {
    assert!(!body.is_empty(), "a log record's body is never empty");
    let len = u32::try_from(body.len()).expect("a log entry under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(index, body).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(body);
}

/// The body of the record `bytes` (header included), if it is whole, checks, and is the
/// record of `index`.
pub fn body_of(bytes: &[u8], index: u64) -> Option<&[u8]> {
    let (len, crc, at) = header(bytes)?;
    let body = bytes.get(HEADER..HEADER + len)?;
    (at == index && checksum(at, body) == crc).then_some(body)
}

fn header(bytes: &[u8]) -> Option<(usize, u32, u64)> {
    let h = bytes.get(..HEADER)?;
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(h[4..8].try_into().ok()?);
    let index = u64::from_le_bytes(h[8..16].try_into().ok()?);
    Some((len, crc, index))
}

/// Reads the records of a whole segment, `seg`, in order, until its written part ends.
pub fn scan(seg: &[u8]) -> Scan {
    let mut records: Vec<Found> = Vec::new();
    let mut at = 0usize;
    let how = loop {
        if at == seg.len() {
            break End::Clean;
        }
        let Some((len, crc, index)) = header(&seg[at..]) else {
            // Fewer than 16 bytes left: clean only if they are zeros (the padding of a
            // segment no whole header fits into).
            break if seg[at..].iter().all(|b| *b == 0) {
                End::Clean
            } else {
                End::Torn
            };
        };
        if len == 0 {
            break End::Clean;
        }
        let Some(body) = seg.get(at + HEADER..at + HEADER + len) else {
            break End::Torn;
        };
        let follows = records.last().is_none_or(|r| r.index + 1 == index);
        if !follows || checksum(index, body) != crc {
            break End::Torn;
        }
        records.push(Found {
            index,
            offset: at as u64,
            len: (HEADER + len) as u32,
        });
        at += HEADER + len;
    };
    Scan {
        records,
        end: at as u64,
        how,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(entries: &[(u64, &[u8])], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in entries {
            encode_into(&mut out, *i, b);
        }
        assert!(out.len() <= size);
        out.resize(size, 0);
        out
    }

    #[test]
    fn reads_back_what_was_written_and_stops_at_the_zeros() {
        let seg = segment(&[(7, b"seven"), (8, b"eight!"), (9, b"n")], 128);
        let s = scan(&seg);
        assert_eq!(s.how, End::Clean);
        assert_eq!(
            s.records.iter().map(|r| r.index).collect::<Vec<_>>(),
            [7, 8, 9]
        );
        assert_eq!(s.end, (3 * HEADER + 5 + 6 + 1) as u64);
        let r = s.records[1];
        let bytes = &seg[r.offset as usize..(r.offset + r.len as u64) as usize];
        assert_eq!(body_of(bytes, 8), Some(&b"eight!"[..]));
        assert_eq!(body_of(bytes, 9), None, "another index's record");
    }

    #[test]
    fn a_full_segment_and_a_short_zero_tail_are_clean() {
        let full = segment(&[(1, b"abc")], HEADER + 3);
        assert_eq!(scan(&full).how, End::Clean);
        let tail = segment(&[(1, b"abc")], HEADER + 3 + 5);
        let s = scan(&tail);
        assert_eq!((s.how, s.records.len()), (End::Clean, 1));
        let empty = vec![0u8; 64];
        assert_eq!(scan(&empty).records, []);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_scan_before_it() {
        let seg = segment(&[(1, b"first"), (2, b"second")], 96);
        let second = scan(&seg).records[1];
        // Cut inside the second record's body.
        let cut = &seg[..second.offset as usize + HEADER + 2];
        let s = scan(cut);
        assert_eq!(
            (s.how, s.records.len(), s.end),
            (End::Torn, 1, second.offset)
        );
        // One flipped bit in its body.
        let mut bad = seg.clone();
        bad[second.offset as usize + HEADER + 1] ^= 1;
        let s = scan(&bad);
        assert_eq!(
            (s.how, s.records.len(), s.end),
            (End::Torn, 1, second.offset)
        );
        // A header cut short, with garbage where zeros belong.
        let mut short = seg[..second.offset as usize].to_vec();
        short.extend_from_slice(&[9, 9, 9]);
        assert_eq!(scan(&short).how, End::Torn);
    }

    #[test]
    fn a_stale_record_after_a_gap_in_the_indexes_is_not_read() {
        // What a truncation that failed to zero its tail would leave: 5, 6, then an old 9.
        let seg = segment(&[(5, b"a"), (6, b"b"), (9, b"old")], 128);
        let s = scan(&seg);
        assert_eq!(s.how, End::Torn);
        assert_eq!(
            s.records.iter().map(|r| r.index).collect::<Vec<_>>(),
            [5, 6]
        );
    }
}
