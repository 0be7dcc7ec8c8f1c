//! Behaviour every [`BundleStore`] must show, as test functions a store crate runs against its own
//! implementation through a [`Harness`] (`store_conformance_tests!` writes the `#[test]`s). Persistent
//! stores are reopened in the middle of each test, so everything checked must also survive a restart.

use std::io::Read;

use super::{
    BundleMeta, BundleStore, Custody, Delivery, PartialBundle, Payload, Priority, SeqMode, StagedId, StoreError,
    Summary, Tombstone, TombstoneReason, WriteBatch, WriteOp,
};
use crate::bpv7::{BundleBuilder, BundleId, CreationTimestamp, DtnTime, Eid};

/// How the tests drive a store.
pub trait Harness {
    /// The store under test.
    type Store: BundleStore;
    /// A fresh, empty store with this quota.
    fn open(&mut self, quota: u64) -> Self::Store;
    /// Closes and reopens the store (an in-memory store returns it unchanged).
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
    /// Writes `bytes` to the store's staging area and makes them durable.
    fn stage(&mut self, store: &Self::Store, bytes: &[u8]) -> StagedId;
    /// Continues staged bytes from their first `keep` bytes with `rest`, durable.
    fn resume(&mut self, store: &Self::Store, id: StagedId, keep: u64, rest: &[u8]) -> StagedId;
}

/// Writes one `#[test]` per conformance check, for a harness built by the given expression.
#[macro_export]
macro_rules! store_conformance_tests {
    ($harness:expr) => {
        $crate::store_conformance_tests!(@each $harness;
            roundtrip_and_indexes, atomic_batches, quota_refuses, eviction_order, expired_go_first_and_sweep,
            tombstones, partial_bundles, summaries_and_select, select_fragments_and_keys,
            state_peers_and_custody_timers);
    };
    (@each $harness:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let mut h = $harness;
                $crate::store::testkit::$name(&mut h);
            }
        )*
    };
}

/// Source used by the tests.
pub fn station(n: u64) -> Eid {
    Eid::ipn(n, 0)
}

/// A valid bundle from `source` with creation `(time, seq)`, `payload_len` bytes of payload, for `dest`.
pub fn bundle(source: &Eid, time: u64, seq: u64, payload_len: usize, dest: &Eid) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i as u64 ^ seq ^ time).wrapping_mul(31) as u8).collect();
    BundleBuilder::new(source.clone(), dest.clone())
        .creation(CreationTimestamp::new(time, seq))
        .lifetime_ms(3_600_000)
        .payload(payload)
        .build()
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| panic!("test bundle: {e}"))
}

/// Metadata for bytes made by [`bundle`].
pub fn meta_for(source: &Eid, time: u64, seq: u64, bytes: &[u8], dest: &Eid) -> BundleMeta {
    BundleMeta {
        id: BundleId { source: source.clone(), creation: CreationTimestamp::new(time, seq), fragment: None },
        destination: dest.clone(),
        seq_mode: SeqMode::PerTime,
        arrival: 0,
        received_at: DtnTime(time),
        expires_at: DtnTime(time + 3_600_000),
        size: bytes.len() as u64,
        priority: Priority::NORMAL,
        custody: Custody::None,
        delivery: Delivery::Forward,
        total_adu_len: None,
        copies: 1,
    }
}

fn commit<S: BundleStore>(s: &S, now: u64, ops: Vec<WriteOp>) -> Result<super::CommitReport, StoreError> {
    s.commit(WriteBatch { now: DtnTime(now), ops })
}

fn read_all<S: BundleStore>(s: &S, id: &BundleId) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_bundle(id).and_then(|mut r| r.read_to_end(&mut out).map_err(|e| StoreError::io("read", e))).unwrap();
    // Both ways of reading a stored bundle give the same bytes.
    assert_eq!(&*s.bundle_bytes(id).unwrap(), &out[..], "bundle_bytes disagrees with read_bundle for {id}");
    out
}

fn insert<S: BundleStore>(s: &S, meta: BundleMeta, bytes: Vec<u8>) {
    commit(s, meta.received_at.0, vec![WriteOp::Insert { meta, payload: Payload::Bytes(bytes) }]).unwrap();
}

fn ids(v: &[BundleMeta]) -> Vec<u64> {
    v.iter().map(|m| m.id.creation.sequence).collect()
}

/// Stored bundles read back byte-identical, small and staged alike, and every index answers in order.
pub fn roundtrip_and_indexes<H: Harness>(h: &mut H) {
    let s = h.open(1 << 30);
    let (a, b) = (station(1), station(2));
    let collector = Eid::dtn("collector", "~data").unwrap();
    let mut expected = Vec::new();
    for seq in 0..6u64 {
        let dest = if seq % 2 == 0 { collector.clone() } else { b.clone() };
        let bytes = bundle(&a, 1000, seq, 100 + seq as usize * 10, &dest);
        let mut m = meta_for(&a, 1000, seq, &bytes, &dest);
        m.expires_at = DtnTime(10_000 - seq * 100);
        m.priority = Priority(if seq == 3 { 200 } else { 100 });
        insert(&s, m.clone(), bytes.clone());
        expected.push((m, bytes));
    }
    // A large one through the staging area.
    let big = bundle(&a, 1000, 6, 3 << 20, &collector);
    let sid = h.stage(&s, &big);
    let mut bm = meta_for(&a, 1000, 6, &big, &collector);
    bm.priority = Priority(100);
    commit(&s, 1000, vec![WriteOp::Insert { meta: bm.clone(), payload: Payload::Staged(sid) }]).unwrap();
    expected.push((bm, big));

    let s = h.reopen(s);
    for (m, bytes) in &expected {
        let got = s.meta(&m.id).unwrap().expect("stored meta");
        assert_eq!((&got.id, got.size, got.priority, got.expires_at), (&m.id, m.size, m.priority, m.expires_at));
        assert_eq!(read_all(&s, &m.id), *bytes, "bytes of {}", m.id);
    }
    let u = s.usage();
    assert_eq!(u.bundles, 7);
    assert_eq!(u.bytes, expected.iter().map(|(m, _)| m.size).sum::<u64>());

    assert_eq!(ids(&s.by_destination(&collector, None, 10).unwrap()), vec![0, 2, 4, 6]);
    let first = s.by_destination(&collector, None, 2).unwrap();
    assert_eq!(ids(&s.by_destination(&collector, Some(first[1].arrival), 10).unwrap()), vec![4, 6]);
    assert_eq!(ids(&s.expiring(DtnTime(9_700), 10).unwrap()), vec![5, 4, 3]);
    let prio = s.by_priority(None, 3).unwrap();
    assert_eq!(ids(&prio), vec![3, 0, 1]);
    let last = prio.last().map(|m| (m.priority, m.arrival));
    assert_eq!(ids(&s.by_priority(last, 10).unwrap()), vec![2, 4, 5, 6]);
    let missing = BundleId { source: station(9), creation: CreationTimestamp::new(1, 1), fragment: None };
    assert!(s.meta(&missing).unwrap().is_none());
    assert!(matches!(s.read_bundle(&missing), Err(StoreError::NotFound(_))));
    assert!(matches!(s.bundle_bytes(&missing), Err(StoreError::NotFound(_))));
}

/// A batch that fails applies nothing.
pub fn atomic_batches<H: Harness>(h: &mut H) {
    let s = h.open(1 << 30);
    let a = station(1);
    let b1 = bundle(&a, 5, 1, 50, &station(2));
    let m1 = meta_for(&a, 5, 1, &b1, &station(2));
    let b2 = bundle(&a, 5, 2, 50, &station(2));
    let m2 = meta_for(&a, 5, 2, &b2, &station(2));
    let err = commit(
        &s,
        5,
        vec![
            WriteOp::Insert { meta: m1.clone(), payload: Payload::Bytes(b1.clone()) },
            WriteOp::PutState { key: b"k".to_vec(), value: Some(b"v".to_vec()) },
            WriteOp::Insert { meta: m2.clone(), payload: Payload::Bytes(b2.clone()) },
            WriteOp::Insert { meta: m1.clone(), payload: Payload::Bytes(b1.clone()) },
        ],
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err}");
    assert!(s.meta(&m1.id).unwrap().is_none() && s.meta(&m2.id).unwrap().is_none());
    assert_eq!(s.state(b"k").unwrap(), None);
    assert_eq!(s.usage().bytes, 0);
    assert!(s.summary().is_empty());
    // Wrong size, update of a missing bundle: refused, nothing applied.
    let mut bad = m1.clone();
    bad.size += 1;
    assert!(commit(&s, 5, vec![WriteOp::Insert { meta: bad, payload: Payload::Bytes(b1.clone()) }]).is_err());
    assert!(matches!(commit(&s, 5, vec![WriteOp::Update(m2.clone())]), Err(StoreError::NotFound(_))));
    insert(&s, m1.clone(), b1);
    let s = h.reopen(s);
    assert!(s.meta(&m1.id).unwrap().is_some());
    assert_eq!(s.usage().bundles, 1);
}

/// When nothing may be evicted, a full store refuses with a clear error and keeps what it had.
pub fn quota_refuses<H: Harness>(h: &mut H) {
    let s = h.open(10_000);
    let a = station(1);
    let mut stored = Vec::new();
    for seq in 0.. {
        let bytes = bundle(&a, 10, seq, 900, &station(2));
        let mut m = meta_for(&a, 10, seq, &bytes, &station(2));
        m.custody = Custody::Held;
        if s.check_room(m.size, m.priority, DtnTime(10)).is_err() {
            let err = commit(&s, 10, vec![WriteOp::Insert { meta: m, payload: Payload::Bytes(bytes) }]).unwrap_err();
            assert!(err.is_full(), "{err}");
            assert!(err.to_string().contains("store full"), "{err}");
            break;
        }
        insert(&s, m.clone(), bytes.clone());
        stored.push((m, bytes));
    }
    assert!(stored.len() >= 9, "only {} bundles fit in 10 kB", stored.len());
    let s = h.reopen(s);
    assert!(s.usage().bytes <= 10_000);
    for (m, bytes) in &stored {
        assert_eq!(read_all(&s, &m.id), *bytes);
    }
}

/// Eviction takes replicas, lowest priority first, then soonest expiry, then oldest; never custody bundles,
/// never a replica of higher priority than the newcomer.
pub fn eviction_order<H: Harness>(h: &mut H) {
    let a = station(1);
    let dest = station(2);
    let mk = |seq: u64, prio: u8, expires: u64, custody: Custody| {
        let bytes = bundle(&a, 100, seq, 1000, &dest);
        let mut m = meta_for(&a, 100, seq, &bytes, &dest);
        m.priority = Priority(prio);
        m.expires_at = DtnTime(expires);
        m.custody = custody;
        (m, bytes)
    };
    let size = mk(0, 0, 0, Custody::None).0.size;
    let s = h.open(size * 6);
    let fill = [
        mk(0, 100, 50_000, Custody::Held), // custody: never evicted
        mk(1, 100, 40_000, Custody::None), // third
        mk(2, 50, 90_000, Custody::None),  // first (lowest priority)
        mk(3, 100, 30_000, Custody::None), // second (soonest expiry among prio 100)
        mk(4, 200, 10_000, Custody::None), // higher priority than the newcomers: kept
        mk(5, 100, 40_000, Custody::None), // fourth (same as 1, arrived later)
    ];
    for (m, b) in fill.iter().cloned() {
        insert(&s, m, b);
    }
    let s = h.reopen(s);
    let mut evicted = Vec::new();
    for seq in 10..14 {
        let (m, b) = mk(seq, 100, 99_000, Custody::None);
        let r = commit(&s, 100, vec![WriteOp::Insert { meta: m, payload: Payload::Bytes(b) }]).unwrap();
        evicted.extend(ids(&r.evicted));
    }
    assert_eq!(evicted, vec![2, 3, 1, 5]);
    // Only prio-100 replicas that arrived later (10..13) and the custody/prio-200 ones remain; a newcomer of
    // priority 100 now evicts the oldest of 10..13.
    let (m, b) = mk(14, 100, 99_000, Custody::None);
    let r = commit(&s, 100, vec![WriteOp::Insert { meta: m, payload: Payload::Bytes(b) }]).unwrap();
    assert_eq!(ids(&r.evicted), vec![10]);
    // A low-priority newcomer cannot evict anything here.
    let (m, b) = mk(15, 10, 99_000, Custody::None);
    let err = commit(&s, 100, vec![WriteOp::Insert { meta: m, payload: Payload::Bytes(b) }]).unwrap_err();
    assert!(err.is_full());
    assert!(s.meta(&mk(0, 0, 0, Custody::None).0.id).unwrap().is_some(), "custody bundle kept");
    assert!(s.meta(&mk(4, 0, 0, Custody::None).0.id).unwrap().is_some(), "high-priority replica kept");
    // Nothing evicted is tombstoned: it may come back.
    assert!(s.tombstone(&mk(2, 0, 0, Custody::None).0.id).unwrap().is_none());
}

/// Expired bundles (even in custody) are evicted before live replicas; `Sweep` removes them and prunes
/// tombstones and partials whose lifetime ended.
pub fn expired_go_first_and_sweep<H: Harness>(h: &mut H) {
    let a = station(1);
    let dest = station(2);
    let mk = |seq: u64, expires: u64, custody: Custody| {
        let bytes = bundle(&a, 100, seq, 1000, &dest);
        let mut m = meta_for(&a, 100, seq, &bytes, &dest);
        m.expires_at = DtnTime(expires);
        m.custody = custody;
        (m, bytes)
    };
    let size = mk(0, 0, Custody::None).0.size;
    let s = h.open(size * 3);
    for (m, b) in [mk(0, 90_000, Custody::None), mk(1, 500, Custody::Held), mk(2, 90_000, Custody::None)] {
        insert(&s, m, b);
    }
    let (m, b) = mk(3, 90_000, Custody::None);
    let r = commit(&s, 1_000, vec![WriteOp::Insert { meta: m, payload: Payload::Bytes(b) }]).unwrap();
    assert_eq!(ids(&r.evicted), vec![1]);

    let (m4, b4) = mk(4, 2_000, Custody::Held);
    let r = commit(
        &s,
        1_000,
        vec![
            WriteOp::Remove { id: mk(0, 0, Custody::None).0.id, tombstone: Some(TombstoneReason::Deleted(0)) },
            WriteOp::Insert { meta: m4.clone(), payload: Payload::Bytes(b4) },
        ],
    )
    .unwrap();
    assert!(r.evicted.is_empty());
    let s = h.reopen(s);
    let r = commit(&s, 95_000, vec![WriteOp::Sweep]).unwrap();
    let mut gone = ids(&r.expired);
    gone.sort();
    assert_eq!(gone, vec![2, 3, 4]);
    assert_eq!(r.tombstones_pruned, 1);
    let u = s.usage();
    assert_eq!((u.bundles, u.bytes, u.tombstones), (0, 0, 0));
}

/// Tombstones outlive the bundle, survive a restart, feed the delivered summary, and are pruned after the
/// bundle's lifetime.
pub fn tombstones<H: Harness>(h: &mut H) {
    let s = h.open(1 << 20);
    let a = station(3);
    let bytes = bundle(&a, 7, 1, 10, &station(4));
    let m = meta_for(&a, 7, 1, &bytes, &station(4));
    insert(&s, m.clone(), bytes);
    commit(&s, 8, vec![WriteOp::Remove { id: m.id.clone(), tombstone: Some(TombstoneReason::Delivered) }]).unwrap();
    // Learned from a delivery receipt, for a bundle never held here.
    let other = BundleId { source: station(5), creation: CreationTimestamp::new(0, 42), fragment: None };
    let t =
        Tombstone { reason: TombstoneReason::Delivered, expires_at: DtnTime(90_000_000), seq_mode: SeqMode::Unique };
    commit(&s, 8, vec![WriteOp::Tombstone { id: other.clone(), tombstone: t }]).unwrap();
    let s = h.reopen(s);
    assert!(s.meta(&m.id).unwrap().is_none());
    let got = s.tombstone(&m.id).unwrap().expect("tombstone kept across restart");
    assert_eq!((got.reason, got.expires_at), (TombstoneReason::Delivered, m.expires_at));
    assert_eq!(s.tombstone(&other).unwrap(), Some(t));
    let d = s.delivered_summary();
    assert!(d.contains(&m.id, SeqMode::PerTime) && d.contains(&other, SeqMode::Unique));
    assert_eq!(s.usage().tombstones, 2);
    let r = commit(&s, m.expires_at.0, vec![WriteOp::Sweep]).unwrap();
    assert_eq!(r.tombstones_pruned, 1);
    assert!(s.tombstone(&m.id).unwrap().is_none());
    assert!(s.tombstone(&other).unwrap().is_some());
    let s = h.reopen(s);
    assert!(!s.delivered_summary().contains(&m.id, SeqMode::PerTime));
    assert_eq!(s.usage().tombstones, 1);
}

/// The durable prefix of a cut transfer is kept across restarts, read back exactly, resumed into the whole
/// bundle, and counted against the quota meanwhile.
pub fn partial_bundles<H: Harness>(h: &mut H) {
    let s = h.open(1 << 30);
    let a = station(1);
    let whole = bundle(&a, 9, 9, 200_000, &station(2));
    let k = 123_457u64;
    let sid = h.stage(&s, &whole[..k as usize]);
    let m = meta_for(&a, 9, 9, &whole, &station(2));
    let p = PartialBundle {
        id: m.id.clone(),
        staged: sid,
        total_len: whole.len() as u64,
        durable_len: k,
        expires_at: m.expires_at,
        from: Some(station(7)),
    };
    // Claiming more durable bytes than were written is refused.
    let lie = PartialBundle { durable_len: k + 1, ..p.clone() };
    assert!(commit(&s, 9, vec![WriteOp::PutPartial(lie)]).is_err());
    commit(&s, 9, vec![WriteOp::PutPartial(p.clone())]).unwrap();
    let s = h.reopen(s);
    assert_eq!(s.partials().unwrap(), vec![p.clone()]);
    assert_eq!(s.usage().bytes, whole.len() as u64, "a partial reserves its whole size");
    let mut prefix = Vec::new();
    s.read_partial(&m.id).unwrap().read_to_end(&mut prefix).unwrap();
    assert_eq!(prefix, whole[..k as usize]);

    let sid2 = h.resume(&s, sid, k, &whole[k as usize..]);
    commit(&s, 10, vec![WriteOp::Insert { meta: m.clone(), payload: Payload::Staged(sid2) }]).unwrap();
    let s = h.reopen(s);
    assert!(s.partials().unwrap().is_empty(), "completing the bundle consumes the partial");
    assert_eq!(read_all(&s, &m.id), whole);
    assert_eq!(s.usage().bytes, whole.len() as u64);

    // A partial that is dropped frees its space.
    let sid3 = h.stage(&s, &whole[..1000]);
    let p3 = PartialBundle {
        id: BundleId { fragment: None, ..meta_for(&a, 9, 10, &whole, &a).id },
        staged: sid3,
        durable_len: 1000,
        ..p
    };
    commit(&s, 10, vec![WriteOp::PutPartial(p3.clone())]).unwrap();
    commit(&s, 10, vec![WriteOp::RemovePartial(p3.id.clone())]).unwrap();
    let s = h.reopen(s);
    assert!(s.partials().unwrap().is_empty());
    assert_eq!(s.usage().bytes, whole.len() as u64);
}

/// The held summary is exact and compact, survives a restart, and `select` returns exactly the bundles in
/// a difference of summaries.
pub fn summaries_and_select<H: Harness>(h: &mut H) {
    let s = h.open(1 << 30);
    let (clocked, clockless, foreign) = (station(1), station(2), station(3));
    let dest = Eid::dtn("collector", "~data").unwrap();
    let mut all = Vec::new();
    for seq in 0..50u64 {
        // A station of ours: a clock, sequence numbers unique across times.
        let bytes = bundle(&clocked, 1_000_000 + seq * 977, seq, 20, &dest);
        let mut m = meta_for(&clocked, 1_000_000 + seq * 977, seq, &bytes, &dest);
        m.seq_mode = SeqMode::Unique;
        all.push((m, bytes));
        let bytes = bundle(&clockless, 0, seq, 20, &dest);
        all.push((meta_for(&clockless, 0, seq, &bytes, &dest), bytes));
        // A foreign node resetting its sequence every millisecond.
        let bytes = bundle(&foreign, 5000 + seq / 5, seq % 5, 20, &dest);
        all.push((meta_for(&foreign, 5000 + seq / 5, seq % 5, &bytes, &dest), bytes));
    }
    for (m, b) in &all {
        insert(&s, m.clone(), b.clone());
    }
    let s = h.reopen(s);
    let held = s.summary();
    assert_eq!(held.run_count(), 1 + 1 + 10, "one run per clocked/clockless source, one per foreign ms");
    for (m, _) in &all {
        assert!(held.contains(&m.id, m.seq_mode), "{}", m.id);
    }
    // The peer holds the even sequence numbers of the clocked station and everything of the clockless one.
    let mut peer = Summary::new();
    for (m, _) in &all {
        if m.id.source == clockless || (m.id.source == clocked && m.id.creation.sequence % 2 == 0) {
            peer.insert(&m.id, m.seq_mode);
        }
    }
    let want = held.difference(&peer);
    let got = s.select(&want, 1000).unwrap();
    let mut got_ids: Vec<_> = got.iter().map(|m| m.id.clone()).collect();
    got_ids.sort();
    let mut expect: Vec<_> =
        all.iter().map(|(m, _)| m.id.clone()).filter(|id| want.contains(id, mode_of(&all, id))).collect();
    expect.sort();
    assert_eq!(got_ids.len(), 25 + 50);
    assert_eq!(got_ids, expect);
    assert_eq!(s.select(&want, 7).unwrap().len(), 7);
    // Removal keeps the summary exact.
    let gone = all[0].0.clone();
    commit(&s, 1, vec![WriteOp::Remove { id: gone.id.clone(), tombstone: None }]).unwrap();
    let s = h.reopen(s);
    assert!(!s.summary().contains(&gone.id, gone.seq_mode));
    assert_eq!(s.summary().run_count(), held.run_count());
}

/// `select` finds exactly the wanted fragments among whole bundles and other pieces of the same source, and
/// `select_keys` names the same bundles, in the same order, with their current priority and arrival.
pub fn select_fragments_and_keys<H: Harness>(h: &mut H) {
    let s = h.open(1 << 30);
    let (src, other) = (station(1), station(2));
    let dest = Eid::dtn("collector", "~data").unwrap();
    let mut all = Vec::new();
    for seq in 0..6u64 {
        let bytes = bundle(&src, 1000, seq, 40, &dest);
        let whole = crate::bpv7::Bundle::decode(&bytes).unwrap();
        if seq % 2 == 0 {
            // Cut into pieces of 10 payload bytes, as a node that split it after cut transfers holds it.
            for piece in crate::bpv7::fragment(&whole, 10).unwrap() {
                let b = piece.to_vec();
                let mut m = meta_for(&src, 1000, seq, &b, &dest);
                m.id = piece.id();
                m.total_adu_len = piece.primary().fragment.map(|f| f.total_adu_len);
                all.push((m, b));
            }
        } else {
            all.push((meta_for(&src, 1000, seq, &bytes, &dest), bytes));
        }
        let bytes = bundle(&other, 2000, seq, 20, &dest);
        all.push((meta_for(&other, 2000, seq, &bytes, &dest), bytes));
    }
    for (m, b) in &all {
        insert(&s, m.clone(), b.clone());
    }
    let s = h.reopen(s);
    // Wanted: every other fragment, one whole bundle of each source, and a fragment the store lacks.
    let mut want = Summary::new();
    let mut expect = Vec::new();
    let frags: Vec<&BundleMeta> = all.iter().map(|(m, _)| m).filter(|m| m.id.fragment.is_some()).collect();
    assert!(frags.len() >= 6, "test bundles split into {} pieces", frags.len());
    for m in frags.iter().step_by(2) {
        want.insert(&m.id, m.seq_mode);
        expect.push(m.id.clone());
    }
    for (m, _) in all.iter().filter(|(m, _)| m.id.fragment.is_none() && m.id.creation.sequence == 3) {
        want.insert(&m.id, m.seq_mode);
        expect.push(m.id.clone());
    }
    let absent = BundleId { fragment: Some((3, 4)), ..frags[0].id.clone() };
    want.insert(&absent, SeqMode::PerTime);
    expect.sort();
    let got = s.select(&want, 1000).unwrap();
    let mut got_ids: Vec<_> = got.iter().map(|m| m.id.clone()).collect();
    got_ids.sort();
    assert_eq!(got_ids, expect);
    assert_eq!(s.select(&want, 2).unwrap().len(), 2);
    // A priority changed by an update shows in the keys.
    let mut urgent = got[0].clone();
    urgent.priority = Priority::EXPEDITED;
    commit(&s, 1, vec![WriteOp::Update(urgent)]).unwrap();
    let s = h.reopen(s);
    let got = s.select(&want, 1000).unwrap();
    assert_eq!(got[0].priority, Priority::EXPEDITED);
    let keys = s.select_keys(&want).unwrap();
    let from_metas: Vec<_> = got.iter().map(|m| (m.priority, m.arrival, m.id.clone())).collect();
    assert_eq!(keys, from_metas);
    // A record looked up where it was last seen is the current one, even after the bundle left and came back
    // under a new arrival, and none once it is gone.
    let (_, old_arrival, id) = keys[0].clone();
    assert_eq!(s.meta_seen_at(&id, old_arrival).unwrap(), s.meta(&id).unwrap());
    let (meta, bytes) = all.iter().find(|(m, _)| m.id == id).cloned().unwrap();
    commit(&s, 2, vec![WriteOp::Remove { id: id.clone(), tombstone: None }]).unwrap();
    assert_eq!(s.meta_seen_at(&id, old_arrival).unwrap(), None);
    insert(&s, meta, bytes);
    let s = h.reopen(s);
    let back = s.meta_seen_at(&id, old_arrival).unwrap().expect("stored again");
    assert_ne!(back.arrival, old_arrival);
    assert_eq!(Some(back), s.meta(&id).unwrap());
}

fn mode_of(all: &[(BundleMeta, Vec<u8>)], id: &BundleId) -> SeqMode {
    all.iter().find(|(m, _)| &m.id == id).map_or(SeqMode::PerTime, |(m, _)| m.seq_mode)
}

/// Node state, peer knowledge and custody timers survive a restart; updates move the indexes.
pub fn state_peers_and_custody_timers<H: Harness>(h: &mut H) {
    let s = h.open(1 << 30);
    let a = station(1);
    let mut peer_sum = Summary::new();
    peer_sum.insert(
        &BundleId { source: a.clone(), creation: CreationTimestamp::new(0, 3), fragment: None },
        SeqMode::Unique,
    );
    let bytes = bundle(&a, 1, 1, 10, &station(2));
    let m = meta_for(&a, 1, 1, &bytes, &station(2));
    insert(&s, m.clone(), bytes);
    let mut m2 = m.clone();
    m2.custody = Custody::Transferring { deadline: DtnTime(7_000), attempts: 2 };
    m2.priority = Priority::EXPEDITED;
    m2.copies = 4;
    commit(
        &s,
        2,
        vec![
            WriteOp::PutState { key: b"prophet/p".to_vec(), value: Some(vec![1, 2, 3]) },
            WriteOp::PutState { key: b"spray".to_vec(), value: Some(vec![9]) },
            WriteOp::PutPeer { peer: station(8), summary: Some(peer_sum.clone()) },
            WriteOp::Update(m2.clone()),
        ],
    )
    .unwrap();
    commit(&s, 2, vec![WriteOp::PutState { key: b"spray".to_vec(), value: None }]).unwrap();
    let s = h.reopen(s);
    assert_eq!(s.state(b"prophet/p").unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(s.state(b"spray").unwrap(), None);
    assert_eq!(s.peer(&station(8)).unwrap(), Some(peer_sum));
    assert_eq!(s.peer(&station(9)).unwrap(), None);
    let got = s.meta(&m.id).unwrap().unwrap();
    assert_eq!((got.custody, got.priority, got.copies), (m2.custody, m2.priority, 4));
    assert!(s.custody_due(DtnTime(6_999), 10).unwrap().is_empty());
    assert_eq!(ids(&s.custody_due(DtnTime(7_000), 10).unwrap()), vec![1]);
    assert_eq!(s.by_priority(None, 1).unwrap()[0].priority, Priority::EXPEDITED);
    let mut m3 = got.clone();
    m3.custody = Custody::Held;
    commit(&s, 3, vec![WriteOp::Update(m3)]).unwrap();
    assert!(s.custody_due(DtnTime(u64::MAX), 10).unwrap().is_empty());
}
