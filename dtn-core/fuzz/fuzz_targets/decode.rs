//! `Bundle::decode` on arbitrary bytes, cross-checked against the stream decoder and the encoders.
//! The invariants live in `src/lib.rs`, shared with `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dtn_core_fuzz::check_bundle(data));
