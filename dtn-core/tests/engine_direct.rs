//! Direct delivery: a whole bundle that arrives for a registered endpoint goes straight to the application,
//! and only its tombstone is written once the application has it. What the node holds only in memory must
//! never be lost: a copy arriving meanwhile is a duplicate, a bundle given back is stored, a restart makes the
//! sender's copy come again, and an application that takes a bundle while it is being stored gets it once.

mod net;

use dtn_core::bpv7::{BundleFlags, BundleId, Eid};
use dtn_core::engine::{Event, Notice, Submission};
use dtn_core::routing::{Epidemic, RoutingAgent};
use dtn_core::store::{BundleStore, Delivery, TombstoneReason};
use net::{Net, Op, at, config};

fn epidemic() -> Box<dyn RoutingAgent> {
    Box::new(Epidemic::new())
}

fn eid(s: &str) -> Eid {
    s.parse().expect("EID")
}

const COLLECT: &str = "dtn://van/~data";
const STATION: usize = 0;
const VAN: usize = 1;

/// A station and a van whose collector is registered and takes bundles directly (acknowledging them at
/// once if `auto_ack`). The station submits `n` readings; the two meet at 1 s. Returns the readings' IDs.
fn station_and_van(net: &mut Net, n: usize, auto_ack: bool, reports: BundleFlags) -> Vec<BundleId> {
    net.add(config("station"), 16 << 20, epidemic, 1);
    let mut van = config("van");
    van.direct_delivery = true;
    net.add(van, 16 << 20, epidemic, 2);
    net.nodes[VAN].auto_ack = auto_ack;
    net.apply_now(Op::Register(VAN, eid(COLLECT)));
    for i in 0..n {
        let mut s = Submission::new(i as u64, eid(COLLECT), format!("reading {i}").into_bytes());
        s.reports = reports;
        s.report_to = Some(eid("dtn://station/~reports"));
        net.at(at(10), Op::Submit(STATION, s));
    }
    net.at(at(1000), Op::Up(STATION, VAN, None));
    net.run_until(at(5000));
    (0..n).map(|i| net.accepted[&(i as u64)][0].clone()).collect()
}

fn stored_notices(net: &Net, node: usize, id: &BundleId) -> usize {
    net.notices.iter().filter(|(_, n, x)| *n == node && matches!(x, Notice::Stored { id: s, .. } if s == id)).count()
}

fn tombstone(net: &Net, node: usize, id: &BundleId) -> Option<TombstoneReason> {
    net.nodes[node].store.tombstone(id).expect("store").map(|t| t.reason)
}

#[test]
fn a_bundle_for_a_waiting_application_is_delivered_without_being_stored() {
    let mut net = Net::new();
    let reports = BundleFlags(BundleFlags::REPORT_RECEPTION.0 | BundleFlags::REPORT_DELIVERY.0);
    let ids = station_and_van(&mut net, 3, true, reports);
    for (i, id) in ids.iter().enumerate() {
        let got = net.deliveries.get(id).cloned().unwrap_or_default();
        assert_eq!(got, vec![(VAN, format!("reading {i}").into_bytes())], "{id} delivered once, intact");
        assert_eq!(stored_notices(&net, VAN, id), 0, "{id} was stored at the van");
        assert_eq!(tombstone(&net, VAN, id), Some(TombstoneReason::Delivered), "{id} has no delivery tombstone");
    }
    assert!(net.held(VAN).is_empty(), "the van's store holds bundles: {:?}", net.held(VAN));
    // The station hears of it as of any delivery: custody released, both reports.
    let reports: Vec<_> = net
        .notices
        .iter()
        .filter_map(|(_, n, x)| match x {
            Notice::StatusReport { report, .. } if *n == STATION => Some(report.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reports.iter().filter(|r| r.received.asserted).count(), 3, "reception reports: {reports:?}");
    assert_eq!(reports.iter().filter(|r| r.delivered.asserted).count(), 3, "delivery reports: {reports:?}");
    let custody_released = net.notices_of(|n| matches!(n, Notice::CustodyReleased { .. }));
    assert_eq!(custody_released, 3, "the station still holds custody of some");
    net.check_invariants().expect("invariants");
}

#[test]
fn a_copy_arriving_while_the_application_holds_it_is_a_duplicate() {
    let mut net = Net::new();
    let ids = station_and_van(&mut net, 1, false, BundleFlags::default());
    assert_eq!(net.nodes[VAN].direct.len(), 1, "handed straight to the application");
    let bytes = net.nodes[VAN].direct[0].1.clone();
    let before = net.notices_of(|n| matches!(n, Notice::Duplicate { .. }));
    net.inject(VAN, Event::Received { peer: eid("dtn://station/"), bytes });
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Duplicate { .. })), before + 1, "not seen as a duplicate");
    assert_eq!(net.nodes[VAN].direct.len(), 1, "handed out twice");
    // Taken: only now is it done, with its tombstone.
    assert_eq!(tombstone(&net, VAN, &ids[0]), None, "tombstone before the application took it");
    net.inject(VAN, Event::DeliveryAcked { id: ids[0].clone() });
    assert_eq!(tombstone(&net, VAN, &ids[0]), Some(TombstoneReason::Delivered));
    assert!(net.held(VAN).is_empty());
}

#[test]
fn a_restart_before_the_application_took_it_loses_nothing() {
    let mut net = Net::new();
    let ids = station_and_van(&mut net, 2, false, BundleFlags::default());
    assert_eq!(net.nodes[VAN].direct.len(), 2);
    // The van dies: what it held in memory is gone, and nothing of it reached its store. The station still
    // has custody (no signal came), so it sends them again when its retransmission timer fires.
    net.at(at(6000), Op::Restart(VAN));
    net.at(at(6000), Op::AutoAck(VAN, true));
    net.at(at(7000), Op::Up(STATION, VAN, None));
    net.run_until(at(150_000));
    for id in &ids {
        assert_eq!(net.deliveries.get(id).map(Vec::len), Some(1), "{id} not delivered exactly once");
        assert_eq!(tombstone(&net, VAN, id), Some(TombstoneReason::Delivered));
    }
    net.check_invariants().expect("invariants");
}

#[test]
fn a_bundle_given_back_is_stored_and_delivered_from_the_store() {
    let mut net = Net::new();
    let ids = station_and_van(&mut net, 1, false, BundleFlags::default());
    let (id, bytes) = net.nodes[VAN].direct.remove(0);
    assert_eq!(id, ids[0]);
    net.inject(VAN, Event::DirectReturned { id: id.clone(), bytes });
    let held = net.held(VAN);
    assert_eq!(held.len(), 1, "not stored once given back");
    assert_eq!(held[0].delivery, Delivery::LocalPending);
    assert_eq!(stored_notices(&net, VAN, &id), 1);
    assert_eq!(net.nodes[VAN].unacked.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), vec![id.clone()]);
    net.nodes[VAN].unacked.clear();
    net.inject(VAN, Event::DeliveryAcked { id: id.clone() });
    assert!(net.held(VAN).is_empty());
    assert_eq!(tombstone(&net, VAN, &id), Some(TombstoneReason::Delivered));
}

#[test]
fn taken_while_being_stored_after_all_is_delivered_once() {
    let mut net = Net::new();
    let ids = station_and_van(&mut net, 1, false, BundleFlags::default());
    let (id, bytes) = net.nodes[VAN].direct.remove(0);
    assert_eq!(id, ids[0]);
    // Given back (too slow, say), and the application's acknowledgement comes before the write lands.
    net.apply_queued(Op::Event(VAN, Event::DirectReturned { id: id.clone(), bytes }));
    net.apply_queued(Op::Event(VAN, Event::DeliveryAcked { id: id.clone() }));
    net.drain();
    assert!(net.nodes[VAN].unacked.is_empty(), "handed out again: {:?}", net.nodes[VAN].unacked);
    assert!(net.held(VAN).is_empty(), "still stored: {:?}", net.held(VAN));
    assert_eq!(tombstone(&net, VAN, &id), Some(TombstoneReason::Delivered));
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Delivered { id: d } if *d == id)), 1);
}

#[test]
fn off_by_default_bundles_are_stored_first() {
    let mut net = Net::new();
    net.add(config("station"), 16 << 20, epidemic, 1);
    net.add(config("van"), 16 << 20, epidemic, 2);
    net.apply_now(Op::Register(VAN, eid(COLLECT)));
    net.at(at(10), Op::Submit(STATION, Submission::new(0, eid(COLLECT), b"reading".to_vec())));
    net.at(at(1000), Op::Up(STATION, VAN, None));
    net.run_until(at(5000));
    let id = net.accepted[&0][0].clone();
    assert_eq!(stored_notices(&net, VAN, &id), 1, "not stored before delivery");
    assert_eq!(net.deliveries.get(&id).map(Vec::len), Some(1));
}
