//! Group commit: batches submitted together share one transaction, but a batch that fails is rolled back
//! alone, and the batches committed with it are kept, across a reopen too.

use dtn_core::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::store::testkit::{bundle, meta_for};
use dtn_core::store::{BundleStore, Payload, StoreError, TombstoneReason, WriteBatch, WriteOp};
use dtn_store_lmdb::{LmdbStore, Options, read_to_vec};

fn src() -> Eid {
    Eid::ipn(7, 0)
}

fn dest() -> Eid {
    Eid::ipn(8, 1)
}

fn id(seq: u64) -> BundleId {
    BundleId { source: src(), creation: CreationTimestamp::new(0, seq), fragment: None }
}

fn insert_op(seq: u64, len: usize) -> (WriteOp, Vec<u8>) {
    let bytes = bundle(&src(), 0, seq, len, &dest());
    let meta = meta_for(&src(), 0, seq, &bytes, &dest());
    (WriteOp::Insert { meta, payload: Payload::Bytes(bytes.clone()) }, bytes)
}

/// What the store must hold after the batches below: bundle `seq` with these bytes, or nothing.
fn verify(s: &LmdbStore, expected: &[(u64, Option<Vec<u8>>)], removed: u64) {
    for (seq, bytes) in expected {
        match bytes {
            Some(b) => assert_eq!(read_to_vec(s.read_bundle(&id(*seq)).unwrap()).unwrap(), *b, "bundle {seq}"),
            None => assert!(s.meta(&id(*seq)).unwrap().is_none(), "bundle {seq} of a failed batch was kept"),
        }
    }
    let held = expected.iter().filter(|(_, b)| b.is_some()).count() as u64;
    assert_eq!(s.usage().bundles, held);
    assert_eq!(s.usage().tombstones, removed);
    assert_eq!(s.tombstone(&id(0)).unwrap().map(|t| t.reason), Some(TombstoneReason::Forwarded));
    let r = s.check(true).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
}

#[test]
fn a_failing_batch_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Small inline limit: some bundles go to payload files, whose files must go with a failed batch.
    let opts = Options { inline_max: 600, ..Options::default() };
    let s = LmdbStore::open(dir.path(), opts.clone()).unwrap();
    let (first, _) = insert_op(1_000_000, 50);
    s.commit(WriteBatch { now: DtnTime(0), ops: vec![first] }).unwrap();
    let mut tickets = Vec::new();
    let mut expected = Vec::new();
    for seq in 0..400u64 {
        let (op, bytes) = insert_op(seq, if seq % 3 == 0 { 1_000 } else { 100 });
        let mut ops = vec![op];
        let fails = seq % 10 == 7;
        if fails {
            // The bundle above is written first, then the duplicate fails the batch.
            ops.push(insert_op(1_000_000, 50).0);
        }
        expected.push((seq, (!fails).then_some(bytes)));
        // Submitted back to back, so most of them share a group with others.
        tickets.push((seq, fails, s.submit(WriteBatch { now: DtnTime(0), ops })));
    }
    for (seq, fails, t) in tickets {
        match t.wait() {
            Ok(_) => assert!(!fails, "batch {seq} should have failed"),
            Err(StoreError::Duplicate(d)) => assert!(fails && d == id(1_000_000), "batch {seq}: duplicate {d}"),
            Err(e) => panic!("batch {seq}: {e}"),
        }
    }
    // Removals in a group with a failing one: a removal of a bundle never stored.
    let remove = |seq| WriteOp::Remove { id: id(seq), tombstone: Some(TombstoneReason::Forwarded) };
    let ok = s.submit(WriteBatch { now: DtnTime(0), ops: vec![remove(0), remove(1)] });
    let missing = s.submit(WriteBatch { now: DtnTime(0), ops: vec![remove(2), remove(7)] });
    let ok2 = s.submit(WriteBatch { now: DtnTime(0), ops: vec![remove(3)] });
    ok.wait().unwrap();
    assert!(matches!(missing.wait(), Err(StoreError::NotFound(m)) if m == id(7)));
    ok2.wait().unwrap();
    for seq in [0, 1, 3] {
        expected[seq].1 = None;
    }
    expected.push((1_000_000, Some(bundle(&src(), 0, 1_000_000, 50, &dest()))));
    verify(&s, &expected, 3);
    s.close();
    let s = LmdbStore::open(dir.path(), opts).unwrap();
    verify(&s, &expected, 3);
}
