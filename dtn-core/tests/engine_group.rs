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

/// Transmissions of bundles (not hellos) in `actions`: (transfer, bundle).
fn sent(actions: &[Action]) -> Vec<(u64, BundleId)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transmit { transfer, id: Some(id), .. } => Some((*transfer, id.clone())),
            _ => None,
        })
        .collect()
}

/// A session to a peer ends and a new one comes up before the old session's transfers are reported failed
/// (the node learns how each ended only as its session winds down). Those reports belong to the old contact:
/// they must not mark the bundle refused on the new one, or it would wait for a custody retry instead.
#[test]
fn a_late_failure_from_an_earlier_session_does_not_hold_the_bundle_back() {
    let mut e = Engine::new(Config::new(eid("dtn://a/")), Box::new(Epidemic::new()), 7);
    let store = MemStore::new(1 << 20);
    let at = |ms: u64| DtnTime(T0 + ms);
    let sub = dtn_core::engine::Submission::new(1, eid("dtn://b/app"), b"reading".to_vec());
    let actions = e.handle(&store, at(0), Event::Submit(sub));
    commit_all(&mut e, &store, actions);
    let peer = eid("dtn://b/");
    let link = dtn_core::routing::LinkInfo::default();

    // First contact: the peer never says hello, so after the hello timeout it is treated as foreign.
    let up = e.handle(&store, at(10), Event::ContactUp { peer: peer.clone(), link });
    commit_all(&mut e, &store, up);
    let ready = e.handle(&store, at(5_000), Event::Timer);
    let first = sent(&commit_all(&mut e, &store, ready));
    assert_eq!(first.len(), 1, "the bundle was not sent on the first contact");

    // The session goes; a new one comes up; only then is the old transfer reported failed.
    let down = e.handle(&store, at(5_100), Event::ContactDown { peer: peer.clone() });
    commit_all(&mut e, &store, down);
    let up = e.handle(&store, at(5_200), Event::ContactUp { peer: peer.clone(), link });
    commit_all(&mut e, &store, up);
    let failed = e.handle(&store, at(5_300), Event::TransferFailed { transfer: first[0].0 });
    let mut again = sent(&commit_all(&mut e, &store, failed));
    let ready = e.handle(&store, at(10_000), Event::Timer);
    again.extend(sent(&commit_all(&mut e, &store, ready)));
    assert_eq!(again.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(), vec![first[0].1.clone()], "not sent again");
}
