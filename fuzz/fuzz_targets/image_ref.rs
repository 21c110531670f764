#![no_main]
//! Image references: arbitrary text never panics; accepted text is canonical.

use libfuzzer_sys::fuzz_target;
use sluice_common::image::ImageRef;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        sluice_fuzz::text(s, ImageRef::parse, true);
    }
    sluice_fuzz::wire::<ImageRef>(data);
});
