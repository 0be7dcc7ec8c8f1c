//! Registering an endpoint after bundles for it reached the node: the van met a station before anyone
//! started the collector on it. Those bundles were stored for forwarding (the endpoint is not the van's own),
//! and registration must turn them into local deliveries, durably, whatever else is under way.

mod net;

use dtn_core::bpv7::{BundleBuilder, BundleId, CreationTimestamp, Eid};
use dtn_core::engine::{Event, Submission};
use dtn_core::routing::{Epidemic, RoutingAgent};
use dtn_core::store::{Custody, Delivery};
use net::{Net, Op, at, config};

fn epidemic() -> Box<dyn RoutingAgent> {
    Box::new(Epidemic::new())
}

fn eid(s: &str) -> Eid {
    s.parse().expect("EID")
}

const COLLECT: &str = "dtn://collector/~data";
const STATION: usize = 0;
const VAN: usize = 1;

/// A station (0) and a van (1). The station made bundles for the collection endpoint (one of them large
/// enough to travel in fragments) and one for an endpoint of the van's own, and the van met it and left with
/// all of them before anything was registered at the van. Returns the whole bundles' IDs and payloads.
fn van_left_the_station(net: &mut Net) -> Vec<(BundleId, Vec<u8>)> {
    let mut station = config("station");
    station.fragment_payload = Some(4 << 10);
    net.add(station, 16 << 20, epidemic, 1);
    net.add(config("van"), 16 << 20, epidemic, 2);
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        (COLLECT, b"reading 1".to_vec()),
        (COLLECT, (0..10_000u32).map(|i| (i % 251) as u8).collect()),
        (COLLECT, b"reading 3".to_vec()),
        ("dtn://van/~late", b"for the van itself".to_vec()),
    ];
    for (token, (dst, p)) in payloads.iter().enumerate() {
        net.at(at(10), Op::Submit(STATION, Submission::new(token as u64, eid(dst), p.clone())));
    }
    net.at(at(1000), Op::Up(STATION, VAN, None));
    net.at(at(60_000), Op::Down(STATION, VAN));
    net.run_until(at(61_000));
    let sent: Vec<(BundleId, Vec<u8>)> = payloads
        .into_iter()
        .enumerate()
        .map(|(token, (_, p))| (BundleId { fragment: None, ..net.accepted[&(token as u64)][0].clone() }, p))
        .collect();
    let held = net.held(VAN);
    assert_eq!(held.len(), 3 + 3, "the van carries every bundle (one in three fragments): {held:?}");
    assert!(
        held.iter().filter(|m| m.destination == eid(COLLECT)).all(|m| m.delivery == Delivery::Forward),
        "stored for forwarding before registration"
    );
    assert!(net.deliveries.is_empty(), "delivered before anything was registered");
    sent
}

fn delivered_at(net: &Net, node: usize, id: &BundleId) -> Vec<Vec<u8>> {
    net.deliveries
        .get(id)
        .map_or(Vec::new(), |d| d.iter().filter(|(n, _)| *n == node).map(|(_, p)| p.clone()).collect())
}

#[test]
fn registering_an_endpoint_delivers_the_bundles_that_came_for_it_before() {
    let mut net = Net::new();
    let sent = van_left_the_station(&mut net);
    net.at(at(70_000), Op::Register(VAN, eid(COLLECT)));
    net.at(at(70_000), Op::Register(VAN, eid("dtn://van/~late")));
    net.run_until(at(71_000));
    // The van's own endpoint first: a bundle for it was marked for local delivery on arrival.
    for (id, payload) in sent.iter().rev() {
        assert_eq!(
            delivered_at(&net, VAN, id),
            std::slice::from_ref(payload),
            "{id} delivered once, whole, at the van"
        );
    }
    net.check_invariants().unwrap();
    assert!(net.held(VAN).is_empty(), "delivered bundles stay: {:?}", net.held(VAN));
    // Delivered means delivered: the station hears of it through the van's receipts.
    net.at(at(80_000), Op::Up(STATION, VAN, None));
    net.run_until(at(90_000));
    assert!(net.held(STATION).is_empty(), "the station keeps delivered bundles: {:?}", net.held(STATION));
}

#[test]
fn the_change_to_local_delivery_is_durable() {
    let mut net = Net::new();
    let sent = van_left_the_station(&mut net);
    net.at(at(69_000), Op::AutoAck(VAN, false));
    net.at(at(70_000), Op::Register(VAN, eid(COLLECT)));
    net.run_until(at(71_000));
    assert_eq!(net.nodes[VAN].unacked.len(), 3, "handed to the application");
    for m in net.held(VAN).iter().filter(|m| m.destination == eid(COLLECT)) {
        assert_eq!((m.delivery, m.custody), (Delivery::LocalPending, Custody::Held), "{}", m.id);
    }
    // The application dies without acknowledging; the node restarts from its store.
    net.nodes[VAN].unacked.clear();
    net.at(at(72_000), Op::Restart(VAN));
    net.run_until(at(73_000));
    assert_eq!(net.nodes[VAN].unacked.len(), 3, "handed out again after the restart");
    net.at(at(74_000), Op::AutoAck(VAN, true));
    net.run_until(at(75_000));
    for (id, payload) in sent.iter().take(3) {
        assert_eq!(delivered_at(&net, VAN, id), std::slice::from_ref(payload), "{id}");
    }
    net.check_invariants().unwrap();
}

#[test]
fn a_bundle_still_being_stored_when_its_endpoint_is_registered_is_delivered() {
    let mut net = Net::new();
    net.add(config("van"), 1 << 20, epidemic, 2);
    let bytes = BundleBuilder::new(eid("dtn://station/"), eid(COLLECT))
        .creation(CreationTimestamp::new(net::T0, 1))
        .lifetime_ms(3_600_000)
        .payload(b"late".to_vec())
        .build()
        .expect("bundle");
    let id = bytes.id();
    // The van's store has the bundle's write but has not yet reported it durable when the registration
    // comes in (a busy shell groups commits).
    net.push_front(0, Event::Received { peer: eid("dtn://station/"), bytes: bytes.to_vec() });
    assert!(net.step());
    net.push_front(0, Event::Register(eid(COLLECT)));
    net.drain();
    assert_eq!(delivered_at(&net, 0, &id), [b"late".to_vec()]);
    assert!(net.held(0).is_empty());
}

/// The van is handing a bundle to the destination's node itself (with custody) when the collector on the van
/// registers the endpoint. The end of that transfer and the node's custody signal must not take the bundle
/// from the van's application: the destination node holds its copy for its own registration, the van
/// delivers its own.
#[test]
fn a_bundle_being_sent_with_custody_when_its_endpoint_is_registered_is_delivered_here() {
    let mut net = Net::new();
    let sent = van_left_the_station(&mut net);
    let collector = net.add(config("collector"), 16 << 20, epidemic, 3);
    net.nodes[VAN].auto_ack = false;
    net.apply_queued(Op::Up(VAN, collector, None));
    // Run until the van has a bundle for the collection endpoint on the wire, then register.
    let before = net.txs.len();
    let on_the_wire = |net: &Net| {
        net.txs[before..].iter().any(|t| t.from == VAN && t.id.as_ref().is_some_and(|i| i.source == sent[0].0.source))
    };
    while !on_the_wire(&net) {
        assert!(net.step(), "the van never sent anything to the collector node");
    }
    net.push_front(VAN, Event::Register(eid(COLLECT)));
    net.drain();
    net.at(at(64_000), Op::Down(VAN, collector));
    net.run_until(at(65_000));
    let handed: Vec<BundleId> = net.nodes[VAN].unacked.iter().map(|(id, _)| id.clone()).collect();
    for (id, _) in sent.iter().take(3) {
        assert!(handed.contains(id), "{id} never reached the van's application: {handed:?}");
    }
    net.apply_now(Op::AutoAck(VAN, true));
    for (id, payload) in sent.iter().take(3) {
        assert_eq!(
            delivered_at(&net, VAN, id),
            std::slice::from_ref(payload),
            "{id} delivered once, whole, at the van"
        );
    }
    assert!(net.held(VAN).iter().all(|m| m.destination != eid(COLLECT)), "{:?}", net.held(VAN));
}
