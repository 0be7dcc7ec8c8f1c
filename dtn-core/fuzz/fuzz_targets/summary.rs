//! `Summary::decode` on arbitrary bytes. The invariants live in `src/lib.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dtn_core_fuzz::check_summary(data));
