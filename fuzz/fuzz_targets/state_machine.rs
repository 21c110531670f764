#![no_main]
//! Random command sequences against the coordinator's replicated `State::apply`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::state::run(data));
