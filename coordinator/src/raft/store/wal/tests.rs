use super::*;

/// Small segments, so a few records roll over several.
const SMALL: u64 = 256;

fn body(i: u64, size: usize) -> Vec<u8> {
    format!("{i:0size$}").into_bytes()
}

fn records(from: u64, to: u64, size: usize) -> Vec<(u64, Vec<u8>)> {
    (from..=to).map(|i| (i, body(i, size))).collect()
}

fn indexes(w: &Wal) -> Vec<u64> {
    w.read(0, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|(i, b)| {
            assert_eq!(String::from_utf8(b).unwrap().parse::<u64>().unwrap(), i);
            i
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment_first(&e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn appends_roll_over_segments_and_read_back_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    assert_eq!(w.bounds(), None);
    w.append(&records(1, 10, 40)).unwrap();
    w.append(&records(11, 30, 40)).unwrap();
    assert_eq!(w.bounds(), Some((1, 30)));
    assert!(segments(dir.path()).len() > 5, "{:?}", segments(dir.path()));
    assert_eq!(indexes(&w), (1..=30).collect::<Vec<_>>());
    let part: Vec<u64> = w.read(7, 12).unwrap().into_iter().map(|r| r.0).collect();
    assert_eq!(part, [7, 8, 9, 10, 11]);
    drop(w);
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    assert_eq!(w.bounds(), Some((1, 30)));
    assert_eq!(indexes(&w), (1..=30).collect::<Vec<_>>());
    // A record bigger than a segment gets a segment of its own size.
    w.append(&[(31, body(31, 1000))]).unwrap();
    drop(w);
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    assert_eq!(w.bounds(), Some((1, 31)));
}

#[test]
fn an_append_that_skips_an_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    w.append(&records(5, 6, 8)).unwrap();
    let err = w.append(&records(8, 8, 8)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(w.bounds(), Some((5, 6)));
}

#[test]
fn truncated_records_never_come_back_even_when_shorter_ones_overwrite_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), 4096, None).unwrap();
    w.append(&records(1, 20, 30)).unwrap();
    w.truncate(12).unwrap();
    assert_eq!(w.bounds(), Some((1, 11)));
    // Shorter records where the old 12.. were: the old bytes after them must not read
    // as records once the log is opened again.
    w.append(&records(12, 13, 4)).unwrap();
    drop(w);
    let w = Wal::open(dir.path(), 4096, None).unwrap();
    assert_eq!(indexes(&w), (1..=13).collect::<Vec<_>>());
    // Truncating everything, then starting again elsewhere.
    w.truncate(1).unwrap();
    assert_eq!(w.bounds(), None);
    w.append(&records(1, 3, 4)).unwrap();
    drop(w);
    let w = Wal::open(dir.path(), 4096, None).unwrap();
    assert_eq!(indexes(&w), [1, 2, 3]);
}

#[test]
fn a_truncation_across_segments_removes_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    w.append(&records(1, 30, 40)).unwrap();
    let before = segments(dir.path()).len();
    w.truncate(4).unwrap();
    assert!(segments(dir.path()).len() < before);
    w.append(&records(4, 6, 40)).unwrap();
    drop(w);
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    assert_eq!(indexes(&w), (1..=6).collect::<Vec<_>>());
}

#[test]
fn purging_removes_whole_segments_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    w.append(&records(1, 30, 40)).unwrap();
    let before = segments(dir.path());
    w.purge(20).unwrap();
    let after = segments(dir.path());
    assert!(after.len() < before.len());
    assert!(after[0] <= 21, "the segment holding 21 stays: {after:?}");
    assert_eq!(indexes(&w), (21..=30).collect::<Vec<_>>());
    drop(w);
    // Records of a kept segment at or below the purge point stay unread.
    let w = Wal::open(dir.path(), SMALL, Some(20)).unwrap();
    assert_eq!(indexes(&w), (21..=30).collect::<Vec<_>>());
    // Purging past the end (a snapshot installed ahead of the log), then going on from it.
    w.purge(100).unwrap();
    assert_eq!(w.bounds(), None);
    assert!(segments(dir.path()).is_empty());
    w.append(&records(101, 102, 8)).unwrap();
    drop(w);
    let w = Wal::open(dir.path(), SMALL, Some(100)).unwrap();
    assert_eq!(indexes(&w), [101, 102]);
}

#[test]
fn a_torn_tail_is_dropped_and_the_log_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), 4096, None).unwrap();
    w.append(&records(1, 5, 10)).unwrap();
    let end = w.lock().segments.last().unwrap().len;
    drop(w);
    // Half of a sixth record, as a crash during its write would leave.
    let mut torn = Vec::new();
    record::encode_into(&mut torn, 6, &body(6, 10));
    let path = segment_path(dir.path(), 1);
    let f = open_rw(&path).unwrap();
    f.write_all_at(&torn[..torn.len() / 2], end).unwrap();
    let w = Wal::open(dir.path(), 4096, None).unwrap();
    assert_eq!(indexes(&w), [1, 2, 3, 4, 5]);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes[end as usize..].iter().all(|b| *b == 0), "zeroed");
    w.append(&records(6, 7, 3)).unwrap();
    drop(w);
    let w = Wal::open(dir.path(), 4096, None).unwrap();
    assert_eq!(indexes(&w), (1..=7).collect::<Vec<_>>());
}

#[test]
fn damage_in_an_older_segment_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    w.append(&records(1, 12, 40)).unwrap();
    drop(w);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 3] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = Wal::open(dir.path(), SMALL, None).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        err.to_string().contains("seg-00000000000000000001.wal"),
        "{err}"
    );
}

#[test]
fn a_spare_segment_is_prepared_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wal::open(dir.path(), SMALL, None).unwrap();
    w.append(&records(1, 1, 40)).unwrap();
    // The first segment's roll started the spare's preparation: wait for that thread.
    let preparing = w.lock().spare.take().expect("a spare is being prepared");
    preparing.join().unwrap();
    assert!(
        dir.path().join(SPARE).exists(),
        "no spare segment was prepared"
    );
    w.append(&records(2, 6, 40)).unwrap();
    assert!(segments(dir.path()).len() >= 2);
    assert_eq!(indexes(&w), (1..=6).collect::<Vec<_>>());
}
