//! A store that runs out of room refuses cleanly and keeps everything it had: when its LMDB map reaches
//! the configured maximum, and when the disk itself fills (a small tmpfs, so this needs root).

use std::io::Write;
use std::process::Command;

use dtn_core::bpv7::{DtnTime, Eid};
use dtn_core::store::testkit::{bundle, meta_for};
use dtn_core::store::{BundleStore, Payload, StoreError, WriteBatch, WriteOp};
use dtn_store_lmdb::{LmdbStore, Options, read_to_vec};

fn insert(s: &LmdbStore, seq: u64, len: usize) -> Result<Vec<u8>, StoreError> {
    let src = Eid::ipn(1, 0);
    let bytes = bundle(&src, 0, seq, len, &Eid::ipn(2, 0));
    let meta = meta_for(&src, 0, seq, &bytes, &Eid::ipn(2, 0));
    s.commit(WriteBatch {
        now: DtnTime(0),
        ops: vec![WriteOp::Insert { meta, payload: Payload::Bytes(bytes.clone()) }],
    })?;
    Ok(bytes)
}

fn verify(s: &LmdbStore, stored: &[(u64, Vec<u8>)]) {
    for (seq, bytes) in stored {
        let id = dtn_core::bpv7::BundleId {
            source: Eid::ipn(1, 0),
            creation: dtn_core::bpv7::CreationTimestamp::new(0, *seq),
            fragment: None,
        };
        assert_eq!(read_to_vec(s.read_bundle(&id).unwrap()).unwrap(), *bytes, "bundle {seq}");
    }
    let r = s.check(true).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
}

#[test]
fn map_grows_then_refuses_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { map_size: 1 << 20, max_map_size: 16 << 20, ..Options::default() };
    let s = LmdbStore::open(dir.path(), opts.clone()).unwrap();
    let mut stored = Vec::new();
    let err = loop {
        match insert(&s, stored.len() as u64, 30_000) {
            Ok(b) => stored.push((stored.len() as u64, b)),
            Err(e) => break e,
        }
        assert!(stored.len() < 10_000, "the map never filled");
    };
    assert!(err.to_string().contains("max_map_size"), "unclear error: {err}");
    assert!(s.map_size() > 1 << 20, "the map did not grow before refusing");
    assert!(stored.len() > 100, "only {} bundles fit", stored.len());
    verify(&s, &stored);
    // Still usable: deleting makes room again.
    let id = |seq| dtn_core::bpv7::BundleId {
        source: Eid::ipn(1, 0),
        creation: dtn_core::bpv7::CreationTimestamp::new(0, seq),
        fragment: None,
    };
    let ops = (0..50).map(|q| WriteOp::Remove { id: id(q), tombstone: None }).collect();
    s.commit(WriteBatch { now: DtnTime(0), ops }).unwrap();
    stored.drain(..50);
    // LMDB reuses the freed pages once no snapshot can still see them: one more commit later.
    s.commit(WriteBatch { now: DtnTime(0), ops: vec![WriteOp::PutState { key: b"k".to_vec(), value: None }] }).unwrap();
    let b = insert(&s, 1_000_000, 30_000).unwrap();
    stored.push((1_000_000, b));
    s.close();
    let s = LmdbStore::open(dir.path(), opts).unwrap();
    verify(&s, &stored);
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_refuses_and_keeps_what_it_had() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: mounting a small tmpfs to fill needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("skipped: could not mount a tmpfs (no mount privilege in this container)");
        return;
    }
    let _mount = Tmpfs(dir.path().to_path_buf());
    let opts = Options { map_size: 1 << 20, inline_max: 16 << 10, ..Options::default() };
    let s = LmdbStore::open(dir.path(), opts.clone()).unwrap();
    let mut stored = Vec::new();
    let mut refusals = 0;
    // Alternate small (inline) and large (payload file) bundles until the disk is full, then go on a bit:
    // every further attempt must be refused cleanly too.
    for seq in 0..2000u64 {
        let len = if seq % 2 == 0 { 3_000 } else { 200_000 };
        match insert(&s, seq, len) {
            Ok(b) => stored.push((seq, b)),
            Err(e) => {
                assert!(e.is_full(), "disk full reported as: {e}");
                assert!(e.to_string().contains("no space left"), "{e}");
                refusals += 1;
                if refusals > 20 {
                    break;
                }
            }
        }
    }
    assert!(refusals > 0, "12 MB never filled");
    assert!(stored.len() > 10);
    verify(&s, &stored);
    s.close();
    let s = LmdbStore::open(dir.path(), opts).unwrap();
    verify(&s, &stored);
    // Space freed, ingest works again.
    let mut w = s.stage().unwrap();
    w.write_all(b"scratch").unwrap();
    w.discard();
    let (seq, _) = stored.remove(1);
    let id = dtn_core::bpv7::BundleId {
        source: Eid::ipn(1, 0),
        creation: dtn_core::bpv7::CreationTimestamp::new(0, seq),
        fragment: None,
    };
    s.commit(WriteBatch { now: DtnTime(0), ops: vec![WriteOp::Remove { id, tombstone: None }] }).unwrap();
    let b = insert(&s, 5000, 100_000).unwrap();
    stored.push((5000, b));
    verify(&s, &stored);
    println!("filled a 12 MB disk: {} bundles kept, {refusals} refused cleanly", stored.len());
}
