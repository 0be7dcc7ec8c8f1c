//! Events handled as one group (`Engine::begin_group`): one store batch for all of them, each still answered
//! on its own, and writes that would fail once an earlier one in the group has landed left out.

use dtn_core::bpv7::{BundleBuilder, BundleId, CreationTimestamp, DtnTime, Eid};
use dtn_core::engine::{Action, BatchId, Config, Engine, Event};
use dtn_core::routing::Epidemic;
use dtn_core::store::{BundleStore, MemStore, WriteBatch, WriteOp};

const T0: u64 = 788_918_400_000;

fn eid(s: &str) -> Eid {
    s.parse().expect("EID")
}

fn node() -> (Engine, MemStore) {
    let mut e = Engine::new(Config::new(eid("dtn://b/")), Box::new(Epidemic::new()), 7);
    let store = MemStore::new(1 << 20);
    let actions = e.handle(&store, DtnTime(T0), Event::Register(eid("dtn://b/app")));
    commit_all(&mut e, &store, actions);
    (e, store)
}

fn bundle(seq: u64) -> Vec<u8> {
    BundleBuilder::new(eid("dtn://far/src"), eid("dtn://b/app"))
        .creation(CreationTimestamp::new(T0, seq))
        .lifetime_ms(3_600_000)
        .payload(format!("reading {seq}").into_bytes())
        .build()
        .expect("bundle")
        .to_vec()
}

/// Commits every batch in `actions` one by one, reports each persisted, and returns the other actions.
fn commit_all(e: &mut Engine, store: &MemStore, actions: Vec<Action>) -> Vec<Action> {
    let mut rest = Vec::new();
    let mut todo = actions;
    while !todo.is_empty() {
        let mut next = Vec::new();
        for a in todo {
            match a {
                Action::Persist { batch, ops } => {
                    store.commit(WriteBatch { now: DtnTime(T0), ops }).expect("commit");
                    next.extend(e.handle(store, DtnTime(T0), Event::Persisted(vec![batch])));
                }
                other => rest.push(other),
            }
        }
        todo = next;
    }
    rest
}

/// Splits a group's actions into its one batch (operations in order) and the rest.
fn group_batch(actions: Vec<Action>) -> (Option<BatchId>, Vec<WriteOp>, Vec<Action>) {
    let (mut batch, mut ops, mut rest) = (None, Vec::new(), Vec::new());
    for a in actions {
        match a {
            Action::Persist { batch: b, ops: o } => {
                assert!(batch.is_none_or(|x| x == b), "a group wrote to two batches: {batch:?} and {b}");
                batch = Some(b);
                ops.extend(o);
            }
            other => rest.push(other),
        }
    }
    (batch, ops, rest)
}

fn delivered(actions: &[Action]) -> Vec<BundleId> {
    actions.iter().filter_map(|a| if let Action::Deliver { id, .. } = a { Some(id.clone()) } else { None }).collect()
}

#[test]
fn a_burst_of_received_bundles_is_stored_in_one_batch_and_each_delivered() {
    let (mut e, store) = node();
    e.begin_group();
    let mut actions = Vec::new();
    for seq in 1..=3 {
        actions.extend(e.handle(&store, DtnTime(T0), Event::Received { peer: eid("dtn://a/"), bytes: bundle(seq) }));
    }
    let (batch, ops, rest) = group_batch(actions);
    assert!(delivered(&rest).is_empty(), "delivered before it was durable");
    let batch = batch.expect("the group wrote nothing");
    assert_eq!(ops.iter().filter(|o| matches!(o, WriteOp::Insert { .. })).count(), 3);
    let end = e.end_group();
    assert!(end.iter().all(|a| !matches!(a, Action::Persist { batch: b, .. } if *b == batch)));
    store.commit(WriteBatch { now: DtnTime(T0), ops }).expect("commit");
    let after = e.handle(&store, DtnTime(T0), Event::Persisted(vec![batch]));
    let after = commit_all(&mut e, &store, after);
    assert_eq!(delivered(&after).len(), 3, "each bundle of the group is delivered once it is durable");
    assert_eq!(store.usage().bundles, 3);
}

#[test]
fn a_bundle_deleted_twice_in_one_group_is_removed_once() {
    let (mut e, store) = node();
    let received = e.handle(&store, DtnTime(T0), Event::Received { peer: eid("dtn://a/"), bytes: bundle(1) });
    let rest = commit_all(&mut e, &store, received);
    let id = delivered(&rest).pop().expect("delivered");
    e.begin_group();
    // Two requests for one bundle before the first is durable (an operator and a script, say).
    let mut actions = e.handle(&store, DtnTime(T0), Event::Delete { id: id.clone(), token: 1 });
    actions.extend(e.handle(&store, DtnTime(T0), Event::Delete { id: id.clone(), token: 2 }));
    let (batch, ops, _) = group_batch(actions);
    let removes = ops.iter().filter(|o| matches!(o, WriteOp::Remove { .. })).count();
    assert_eq!(removes, 1, "a second removal would fail the whole group's commit: {ops:?}");
    e.end_group();
    store.commit(WriteBatch { now: DtnTime(T0), ops }).expect("the group commits");
    e.handle(&store, DtnTime(T0), Event::Persisted(vec![batch.expect("batch")]));
    assert_eq!(store.usage().bundles, 0);
    assert!(store.tombstone(&id).expect("read").is_some(), "the deleted bundle leaves a tombstone");
}

#[test]
fn outside_a_group_every_event_writes_its_own_batch() {
    let (mut e, store) = node();
    let mut batches = Vec::new();
    for seq in 1..=2 {
        let (b, _, _) =
            group_batch(e.handle(&store, DtnTime(T0), Event::Received { peer: eid("dtn://a/"), bytes: bundle(seq) }));
        batches.push(b.expect("batch"));
    }
    assert_ne!(batches[0], batches[1]);
    assert!(e.end_group().is_empty(), "end_group outside a group does nothing");
}
