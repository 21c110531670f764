#![no_main]
//! Every other text parser: names, labels, lock keys, holders, durations, timestamps, port
//! ranges.

use libfuzzer_sys::fuzz_target;
use sluice_common::names::{EnvName, Holder, Label, LockKey, ServerName, ServiceName};
use sluice_common::ports::PortRange;
use sluice_common::time::{DurationSpec, Timestamp};
use sluice_fuzz::text;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    text(&s, ServiceName::parse, true);
    text(&s, ServerName::parse, true);
    text(&s, EnvName::parse, true);
    text(&s, LockKey::parse, true);
    text(&s, Holder::parse, true);
    text(&s, Label::parse, true);
    text(&s, DurationSpec::parse, false);
    text(&s, Timestamp::parse, false);
    text(&s, PortRange::parse, false);
    if data.len() >= 8 {
        // Any instant displays (no panic past year 9999).
        let ms = u64::from_le_bytes(data[..8].try_into().unwrap());
        let _ = Timestamp(ms).to_string();
    }
});
