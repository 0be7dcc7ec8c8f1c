//! `AdminRecord::decode` on arbitrary bytes: whatever decodes must survive encode and decode unchanged.
//! The invariants live in `src/lib.rs`, shared with `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dtn_core_fuzz::check_admin_record(data));
