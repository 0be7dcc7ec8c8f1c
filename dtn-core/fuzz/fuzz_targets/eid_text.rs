//! Text EIDs (`dtn:…`, `ipn:…`) parsed from arbitrary bytes: accepted text must round-trip through
//! `Display` and through CBOR. The invariants live in `src/lib.rs`, shared with
//! `tests/fuzz_regressions.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dtn_core_fuzz::check_eid_text(data));
