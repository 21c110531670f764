//! Raw deflate of one settled record, with one compressor and one decompressor kept per
//! thread.
//!
//! A fresh compressor zeroes a few hundred KB of hash tables before it reads a byte; a
//! record is about 2 KB of JSON. Loading a snapshot of 50,000 records compressed each with
//! a fresh one, and that was most of a restart. Reusing one per thread and resetting it
//! between records removes that cost; the output is the same raw deflate stream as
//! `flate2::write::DeflateEncoder` writes.
//!
//! Both loops stop on `StreamEnd` only: the output grows until the stream says it is
//! complete, so a record that inflates to many times its compressed size is read whole
//! (decompressing with `Finish` into a buffer too small fails the stream for good).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

thread_local! {
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Why a stream did not inflate.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    #[error("corrupt deflate stream: {0}")]
    Corrupt(#[from] flate2::DecompressError),
    #[error("deflate stream ends early")]
    Truncated,
}

/// `bytes`, deflated.
pub fn deflate(bytes: &[u8]) -> Vec<u8> {
    DEFLATE.with(|z| {
        let mut z = z.borrow_mut();
        z.reset();
        let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
        loop {
            let read = z.total_in() as usize;
            match z.compress_vec(&bytes[read..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => return out,
                // Out of room (or nothing could be written without more): grow and go on.
                Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
                Err(e) => unreachable!("compressing to memory cannot fail: {e}"),
            }
        }
    })
}

/// The bytes `z` deflated from.
pub fn inflate(z: &[u8]) -> Result<Vec<u8>, InflateError> {
    INFLATE.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let mut out = Vec::with_capacity(z.len() * 4 + 64);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let (read, wrote) = (d.total_in(), d.total_out());
            let status = d.decompress_vec(&z[read as usize..], &mut out, FlushDecompress::None)?;
            if status == Status::StreamEnd {
                return Ok(out);
            }
            // Room was left and nothing moved: the input ran out before the stream ended.
            let stuck = d.total_in() == read && d.total_out() == wrote;
            if stuck && out.len() < out.capacity() {
                return Err(InflateError::Truncated);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Text that compresses several hundred to one, well past any fixed output guess.
    fn repetitive(n: usize) -> Vec<u8> {
        format!("{{\"note\":\"{}\"}}", "a".repeat(n)).into_bytes()
    }

    /// Text that hardly compresses: deflate's output is longer than half of it.
    fn noisy(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_whatever_the_ratio() {
        for input in [
            Vec::new(),
            b"{}".to_vec(),
            repetitive(20_000),
            repetitive(1_000_000),
            noisy(100_000),
        ] {
            let z = deflate(&input);
            assert_eq!(inflate(&z).unwrap(), input, "{} bytes", input.len());
        }
        assert!(deflate(&repetitive(1_000_000)).len() * 100 < 1_000_000);
    }

    #[test]
    fn reads_and_writes_the_encoder_stream() {
        let input = repetitive(50_000);
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        e.write_all(&input).unwrap();
        let theirs = e.finish().unwrap();
        assert_eq!(inflate(&theirs).unwrap(), input);
        let mut d = flate2::write::DeflateDecoder::new(Vec::new());
        d.write_all(&deflate(&input)).unwrap();
        assert_eq!(d.finish().unwrap(), input);
    }

    #[test]
    fn a_damaged_stream_is_an_error_and_the_next_one_still_reads() {
        let input = noisy(10_000);
        let z = deflate(&input);
        assert!(matches!(
            inflate(&z[..z.len() / 2]),
            Err(InflateError::Truncated)
        ));
        let mut bad = z.clone();
        bad[0] = 0xff; // reserved block type
        assert!(inflate(&bad).is_err());
        assert_eq!(inflate(&z).unwrap(), input);
    }
}
