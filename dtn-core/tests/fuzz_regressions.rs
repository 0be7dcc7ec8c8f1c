//! Replays every input saved in `tests/fuzz-regressions/` against the fuzz targets' invariants.
//!
//! The files are inputs that once crashed a fuzz target, plus a few corpus entries that reach deep paths of
//! the codec (see `fuzz/README.md`). The invariants are the fuzz crate's own (`fuzz/src/lib.rs`, included
//! below), so this test runs them on stable, without libFuzzer, on every `cargo test`.
//!
//! Every oracle accepts arbitrary bytes, so every file goes through all of them whichever target found it.
//! Some inputs carry untrusted lengths near `u64::MAX`; arithmetic on them panics only with overflow checks
//! on (the default test profile, and `cargo fuzz` builds), so keep this test in that profile.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/lib.rs"]
mod oracles;

fn inputs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
}

#[test]
fn saved_fuzz_inputs_keep_their_invariants() {
    let files = inputs();
    assert!(!files.is_empty(), "no saved inputs found");
    // Run every file even after a failure, so one run lists everything that regressed.
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = fs::read(path).expect("reading a saved input");
            let outcome = panic::catch_unwind(|| {
                oracles::check_bundle(&data);
                // One byte at a time: the stream decoder resumes its header parse at every boundary.
                // Too slow for the fuzzer's inner loop, affordable for a handful of files.
                oracles::check_stream(&data, std::iter::repeat(1));
                oracles::check_admin_record(&data);
                oracles::check_eid_text(&data);
                oracles::check_summary(&data);
            });
            if outcome.is_err() {
                eprintln!("^ {}", path.display());
            }
            outcome.is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "invariants broken by: {failed:#?}");
}

#[test]
fn chunk_plans_are_reproducible() {
    // A saved input must replay with the chunking that found the failure.
    let data = b"\x9f\x89\x07\x00\x01";
    let a: Vec<usize> = oracles::chunk_plan(data).take(32).collect();
    let b: Vec<usize> = oracles::chunk_plan(data).take(32).collect();
    assert_eq!(a, b);
    assert!(a.iter().all(|&n| n >= 1));
}
