//! The engine's bundle-processing rules (RFC 9171 §5 and our extensions), one behaviour per test: bad input,
//! hop limits, lifetimes, duplicates across restarts, status reports, priority order, custody retransmission
//! and refusal.

mod net;

use dtn_core::bpv7::admin::reason;
use dtn_core::bpv7::{BlockFlags, BlockType, BundleBuilder, BundleFlags, CreationTimestamp, DtnTime, Eid};
use dtn_core::engine::{Event, Notice, Submission};
use dtn_core::proto::{self, BundleClass, CustodyRequest, Refusal};
use dtn_core::routing::{Epidemic, LinkInfo, RoutingAgent};
use dtn_core::store::{BundleStore, Custody, Priority};
use net::{Net, Op, at, config};

fn epidemic() -> Box<dyn RoutingAgent> {
    Box::new(Epidemic::new())
}

fn eid(s: &str) -> Eid {
    s.parse().expect("EID")
}

/// Two nodes in contact: `a` (index 0) and `b` (index 1), `b` registered `dtn://b/app`.
fn pair() -> Net {
    let mut net = Net::new();
    net.add(config("a"), 1 << 20, epidemic, 1);
    net.add(config("b"), 1 << 20, epidemic, 2);
    net.at(at(0), Op::Register(1, eid("dtn://b/app")));
    net.at(at(1000), Op::Up(0, 1, None));
    net.run_until(at(2000));
    net
}

/// A bundle from `dtn://far/` (a node not in the test) to `dest`, as a peer would send it.
fn foreign(dest: &str, seq: u64, build: impl FnOnce(BundleBuilder) -> BundleBuilder) -> Vec<u8> {
    let b = BundleBuilder::new(eid("dtn://far/src"), eid(dest))
        .creation(CreationTimestamp::new(net::T0, seq))
        .lifetime_ms(3_600_000)
        .payload(format!("payload {seq}").into_bytes());
    build(b).build().expect("bundle").to_vec()
}

fn receive(net: &mut Net, node: usize, from: &str, bytes: Vec<u8>) {
    let t = net.now;
    net.at(t, Op::Event(node, Event::Received { peer: eid(from), bytes }));
    net.run_until(t);
}

#[test]
fn garbage_from_a_peer_is_reported_and_changes_nothing() {
    let mut net = pair();
    let held = net.held(1).len();
    for bad in [vec![], vec![0xff; 40], vec![0x9f, 0x89, 0x07], foreign("dtn://b/app", 1, |b| b)[..30].to_vec()] {
        receive(&mut net, 1, "dtn://a/", bad);
    }
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Malformed { .. })), 4);
    assert_eq!(net.held(1).len(), held);
    // A corrupted CRC is caught too.
    let mut b = foreign("dtn://b/app", 2, |b| b);
    let last = b.len() - 2;
    b[last] ^= 0x55;
    receive(&mut net, 1, "dtn://a/", b);
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Malformed { .. })), 5);
    // The node still works: a good bundle after all that is delivered.
    receive(&mut net, 1, "dtn://a/", foreign("dtn://b/app", 3, |b| b));
    assert_eq!(net.deliveries.len(), 1);
}

#[test]
fn a_bundle_past_its_hop_limit_is_refused_and_its_custodian_told() {
    let mut net = pair();
    let bytes = foreign("dtn://c/app", 1, |b| {
        b.hop_limit(1).extension_block(
            proto::CUSTODY_REQUEST_BLOCK,
            BlockFlags::REPLICATE_IN_FRAGMENTS,
            CustodyRequest { custodian: eid("dtn://a/") }.encode(),
        )
    });
    // Sent once with hop count 0 of limit 1: fine. Bump the count past the limit by decoding and re-encoding.
    let mut bundle = dtn_core::bpv7::Bundle::decode(&bytes).expect("decode").into_owned();
    bundle.increment_hop_count().expect("hop");
    bundle.increment_hop_count().expect("hop");
    receive(&mut net, 1, "dtn://a/", bundle.to_vec());
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Refused { reason: Refusal::HopLimit, .. })), 1);
    assert!(net.held(1).is_empty());
}

#[test]
fn an_expired_bundle_is_refused_and_a_stored_one_is_swept() {
    let mut net = pair();
    // Created an hour and a second before now, one-hour lifetime.
    let old = foreign("dtn://c/app", 1, |b| b.creation(CreationTimestamp::new(net::T0 - 1000, 1)));
    net.run_until(at(3_600_000));
    receive(&mut net, 1, "dtn://a/", old);
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Refused { reason: Refusal::Expired, .. })), 1);
    // Stored now, expires an hour after creation: the periodic sweep removes it then.
    receive(
        &mut net,
        1,
        "dtn://a/",
        foreign("dtn://c/app", 2, |b| b.creation(CreationTimestamp::new(net::T0 + 3_600_000, 2))),
    );
    assert_eq!(net.held(1).len(), 1);
    net.run_until(at(2 * 3_600_000 + 120_000));
    assert!(net.held(1).is_empty());
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Deleted { reason: r, .. } if *r == reason::LIFETIME_EXPIRED)), 1);
}

#[test]
fn an_application_gets_a_bundle_once_even_across_a_restart() {
    let mut net = pair();
    let b = foreign("dtn://b/app", 1, |b| b);
    receive(&mut net, 1, "dtn://a/", b.clone());
    assert_eq!(net.deliveries.len(), 1);
    net.at(net.now, Op::Restart(1));
    net.run_until(net.now);
    receive(&mut net, 1, "dtn://a/", b);
    assert_eq!(net.deliveries.values().map(Vec::len).sum::<usize>(), 1);
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Duplicate { .. })), 1);
}

#[test]
fn unknown_blocks_follow_their_flags() {
    let mut net = pair();
    let delete = foreign("dtn://c/app", 1, |b| {
        b.extension_block(BlockType(200), BlockFlags::DELETE_BUNDLE_IF_UNPROCESSABLE, vec![0x01])
    });
    receive(&mut net, 1, "dtn://a/", delete);
    assert!(net.held(1).is_empty());
    let discard = foreign("dtn://c/app", 2, |b| {
        b.extension_block(BlockType(201), BlockFlags::DISCARD_IF_UNPROCESSABLE, vec![0x01])
    });
    receive(&mut net, 1, "dtn://a/", discard);
    let held = net.held(1);
    assert_eq!(held.len(), 1);
    let stored = net::read_bundle(&net.nodes[1].store, &held[0].id);
    let b = dtn_core::bpv7::Bundle::decode(&stored).expect("stored bundle decodes");
    assert!(b.extension_blocks().iter().all(|x| x.block_type() != BlockType(201)), "discardable block kept");
}

#[test]
fn status_reports_reach_the_source() {
    let mut net = pair();
    let mut s = Submission::new(1, eid("dtn://b/app"), b"hello".to_vec());
    s.reports = BundleFlags(BundleFlags::REPORT_RECEPTION.0 | BundleFlags::REPORT_DELIVERY.0);
    net.at(net.now, Op::Submit(0, s));
    net.run_until(at(10_000));
    let reports: Vec<_> = net
        .notices
        .iter()
        .filter_map(|(_, n, x)| match x {
            Notice::StatusReport { from, report } if *n == 0 => Some((from.clone(), report.clone())),
            _ => None,
        })
        .collect();
    assert!(
        reports.iter().any(|(f, r)| *f == eid("dtn://b/") && r.received.asserted),
        "no reception report: {reports:?}"
    );
    assert!(
        reports.iter().any(|(f, r)| *f == eid("dtn://b/") && r.delivered.asserted),
        "no delivery report: {reports:?}"
    );
}

#[test]
fn urgent_bundles_leave_first() {
    let mut net = Net::new();
    let a = net.add(config("a"), 1 << 20, epidemic, 1);
    let b = net.add(config("b"), 1 << 20, epidemic, 2);
    for k in 0..20u64 {
        let mut s = Submission::new(k, eid("dtn://b/app"), vec![k as u8; 100]);
        s.priority = if k >= 15 { Priority::EXPEDITED } else { Priority::BULK };
        net.at(at(k), Op::Submit(a, s));
    }
    net.at(at(1000), Op::Up(a, b, None));
    net.run_until(at(2000));
    let order: Vec<u64> =
        net.txs.iter().filter(|t| t.from == a).filter_map(|t| t.id.as_ref()).map(|i| i.creation.sequence).collect();
    assert_eq!(order.len(), 20);
    let first: std::collections::BTreeSet<u64> = order[..5].iter().copied().collect();
    assert_eq!(first, (15..20).collect(), "expedited bundles were not sent first: {order:?}");
}

/// `a` submits a bundle for `b/app` and forwards it with a custody request; the contact is cut right after
/// the bundle, so b's custody signal is lost. Returns the network with `a` = 0 and `b` = 1.
fn custody_signal_lost() -> Net {
    let build = |budget: Option<u64>| {
        let mut net = Net::new();
        let a = net.add(config("a"), 1 << 20, epidemic, 1);
        let b = net.add(config("b"), 1 << 20, epidemic, 2);
        net.at(at(0), Op::Register(b, eid("dtn://b/app")));
        net.at(at(0), Op::Submit(a, Submission::new(1, eid("dtn://b/app"), vec![7; 500])));
        net.at(at(1000), Op::Up(a, b, budget));
        net.run_until(at(5000));
        net
    };
    // A dry run measures the bytes up to and including the bundle.
    let dry = build(None);
    let upto = dry.txs.iter().position(|t| t.id.is_some()).expect("bundle sent");
    build(Some(dry.txs[..=upto].iter().map(|t| t.len).sum()))
}

#[test]
fn a_custodian_keeps_its_copy_until_released() {
    let mut net = custody_signal_lost();
    let (a, b) = (0, 1);
    assert_eq!(net.deliveries.len(), 1, "the bundle should have arrived");
    let held = net.held(a);
    assert_eq!(held.len(), 1, "custodian dropped its copy without a signal");
    assert!(matches!(held[0].custody, Custody::Transferring { .. }), "{:?}", held[0].custody);
    // A later contact: b's hello shows it holds (or delivered) the bundle, and its receipt releases a.
    net.at(at(200_000), Op::Up(a, b, None));
    net.run_until(at(300_000));
    assert!(net.held(a).is_empty(), "custody never released: {:?}", net.held(a));
    assert_eq!(net.deliveries.len(), 1);
}

/// Over a link whose acknowledgement means durable (our TCPCL), a bundle handed to its destination node is
/// settled by the acknowledgement: no custody request, no signal, and the sender's copy goes at once. To any
/// other next hop, or over a link without that promise, custody works as before.
#[test]
fn a_durable_acknowledgement_from_the_destination_settles_custody() {
    for durable in [true, false] {
        let mut net = Net::new();
        net.durable_acks = durable;
        let a = net.add(config("a"), 1 << 20, epidemic, 1);
        let b = net.add(config("b"), 1 << 20, epidemic, 2);
        net.at(at(0), Op::Register(b, eid("dtn://b/app")));
        for k in 0..5 {
            net.at(at(0), Op::Submit(a, Submission::new(k, eid("dtn://b/app"), vec![7; 100])));
        }
        net.at(at(1000), Op::Up(a, b, None));
        net.run_until(at(5000));
        assert_eq!(net.deliveries.len(), 5, "durable acks {durable}");
        assert!(net.held(a).is_empty(), "durable acks {durable}: a kept {:?}", net.held(a));
        let signals = net.notices_of(|n| matches!(n, Notice::CustodyAccepted { .. }));
        assert_eq!(signals, if durable { 0 } else { 5 }, "durable acks {durable}");
    }
}

#[test]
fn a_full_node_refuses_custody_with_a_reason_and_the_custodian_keeps_it() {
    let mut net = Net::new();
    let a = net.add(config("a"), 1 << 20, epidemic, 1);
    let b = net.add(config("b"), 600, epidemic, 2);
    net.at(at(0), Op::Register(b, eid("dtn://b/app")));
    net.at(at(0), Op::Submit(a, Submission::new(1, eid("dtn://b/app"), vec![7; 2000])));
    net.at(at(1000), Op::Up(a, b, None));
    net.run_until(at(5000));
    assert_eq!(net.notices_of(|n| matches!(n, Notice::Refused { reason: Refusal::StoreFull, .. })), 1);
    assert_eq!(net.notices_of(|n| matches!(n, Notice::CustodyRefused { reason: Refusal::StoreFull, .. })), 1);
    let held = net.held(a);
    assert_eq!(held.len(), 1);
    assert!(held[0].custody.is_custodian());
}

#[test]
fn bundles_we_originate_carry_class_and_unique_sequence_numbers() {
    let mut net = Net::new();
    let a = net.add(config("a"), 1 << 20, epidemic, 1);
    for k in 0..3 {
        let mut s = Submission::new(k, eid("dtn://z/app"), vec![1; 10]);
        s.priority = Priority::EXPEDITED;
        net.at(at(k * 10), Op::Submit(a, s));
    }
    net.at(at(100), Op::Restart(a));
    net.at(at(200), Op::Submit(a, Submission::new(9, eid("dtn://z/app"), vec![1; 10])));
    net.run_until(at(300));
    let seqs: Vec<u64> = net.held(a).iter().map(|m| m.id.creation.sequence).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3], "sequence numbers must never repeat, also after a restart");
    let m = &net.held(a)[0];
    let bytes = net::read_bundle(&net.nodes[a].store, &m.id);
    let b = dtn_core::bpv7::Bundle::decode(&bytes).expect("decode");
    assert_eq!(
        BundleClass::of(&b).expect("class"),
        Some(BundleClass { priority: Priority::EXPEDITED, unique_seq: true })
    );
    let _ = LinkInfo::default();
    let _ = net.nodes[a].store.usage();
}

#[test]
fn a_custodian_retransmits_after_its_timeout() {
    let mut net = custody_signal_lost();
    let (a, b) = (0, 1);
    let Some(Custody::Transferring { deadline, .. }) = net.held(a).first().map(|m| m.custody) else {
        panic!("expected a custody transfer in progress: {:?}", net.held(a));
    };
    // b loses its disk before anything of it reaches a again.
    net.nodes[b].store = dtn_core::store::MemStore::new(1 << 20);
    net.at(at(3000), Op::Restart(b));
    net.at(at(3000), Op::Register(b, eid("dtn://b/app")));
    let sent = |net: &Net| net.txs.iter().filter(|t| t.from == a && t.id.is_some()).count();
    // Before the deadline: b lacks it, but a is waiting for a signal, so it does not send.
    net.at(at(4000), Op::Up(a, b, None));
    net.at(at(5000), Op::Down(a, b));
    net.run_until(at(6000));
    assert_eq!(sent(&net), 1, "retransmitted before the custody timeout");
    // After the deadline: sent again, and this time the signal releases a.
    net.at(DtnTime(deadline.0 + 1000), Op::Up(a, b, None));
    net.run_until(DtnTime(deadline.0 + 5000));
    assert_eq!(sent(&net), 2, "not retransmitted after the custody timeout");
    assert!(net.held(a).is_empty(), "the second transfer's signal should release custody: {:?}", net.held(a));
}

#[test]
fn operator_deletes_a_stored_bundle_for_good() {
    let mut net = Net::new();
    net.add(config("a"), 1 << 20, epidemic, 1);
    net.at(at(0), Op::Submit(0, Submission::new(1, eid("dtn://far/x"), b"keep?".to_vec())));
    net.run_until(at(10));
    let id = net.accepted[&1][0].clone();
    net.at(at(20), Op::Event(0, Event::Delete { id: id.clone(), token: 2 }));
    net.run_until(at(30));
    assert_eq!(net.accepted.get(&2), Some(&vec![id.clone()]));
    assert!(net.held(0).is_empty());
    assert_eq!(net.notices_of(|n| *n == Notice::Deleted { id: id.clone(), reason: reason::NO_INFO }), 1);
    // Deleted means deleted: the same bundle coming back from a peer is a duplicate.
    let bytes = {
        let mut n2 = Net::new();
        n2.add(config("a"), 1 << 20, epidemic, 1);
        n2.at(at(0), Op::Submit(0, Submission::new(1, eid("dtn://far/x"), b"keep?".to_vec())));
        n2.run_until(at(10));
        net::read_bundle(&n2.nodes[0].store, &n2.accepted[&1][0])
    };
    assert!(!bytes.is_empty());
    receive(&mut net, 0, "dtn://b/", bytes);
    assert!(net.held(0).is_empty());
    // Deleting what is not stored is refused, and changes nothing.
    net.at(at(40), Op::Event(0, Event::Delete { id, token: 3 }));
    net.run_until(at(50));
    assert!(net.rejected.get(&3).is_some_and(|r| r.contains("not stored")));
}

#[test]
fn a_payload_submitted_in_parts_is_delivered_once_whole_from_its_fragments() {
    use dtn_core::engine::AduPart;
    let mut net = pair();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let part = |token, range: std::ops::Range<usize>, creation| {
        let mut s = Submission::new(token, eid("dtn://b/app"), data[range.clone()].to_vec());
        s.part = Some(AduPart { total_len: data.len() as u64, offset: range.start as u64, creation });
        s
    };
    net.at(at(2100), Op::Submit(0, part(1, 0..4000, None)));
    net.run_until(at(2200));
    let creation = net.accepted[&1][0].creation;
    // Overlapping parts, out of order, and one that does not fit the ADU.
    net.at(at(2300), Op::Submit(0, part(2, 6000..10_000, Some(creation))));
    net.at(at(2310), Op::Submit(0, part(3, 3000..7000, Some(creation))));
    let mut bad = part(4, 9000..10_000, Some(creation));
    bad.part = Some(AduPart { total_len: 9500, offset: 9000, creation: Some(creation) });
    net.at(at(2320), Op::Submit(0, bad));
    net.run_until(at(5000));
    assert!(net.rejected[&4].contains("does not fit"), "{:?}", net.rejected);
    let ids: Vec<_> = net.accepted.values().flatten().collect();
    assert!(ids.iter().all(|id| id.creation == creation && id.fragment.is_some()), "{ids:?}");
    let whole = dtn_core::bpv7::BundleId { fragment: None, ..ids[0].clone() };
    let got = &net.deliveries[&whole];
    assert_eq!(got.len(), 1, "delivered {} times", got.len());
    assert!(got[0].1 == data, "the payload came back changed ({} bytes)", got[0].1.len());
    assert!(net.held(1).is_empty(), "b keeps delivered fragments: {:?}", net.held(1));
}

#[test]
fn a_bundle_delivered_in_pieces_is_passed_on_as_delivered_by_its_whole_id_alone() {
    use dtn_core::bpv7::BundleId;
    use dtn_core::store::{SeqMode, Summary};
    // a sends b a payload in three fragments; b delivers it and keeps a delivered tombstone per piece and
    // one for the whole bundle. c, meeting b later, learns the bundle is delivered from b's hello: the whole
    // ID covers every piece, so that is all c is told and all it remembers.
    let mut net = pair();
    let creation = {
        let mut s = Submission::new(1, eid("dtn://b/app"), vec![7; 3000]);
        s.part = Some(dtn_core::engine::AduPart { total_len: 9000, offset: 0, creation: None });
        net.at(at(2100), Op::Submit(0, s));
        net.run_until(at(2200));
        net.accepted[&1][0].creation
    };
    for (token, offset) in [(2, 3000), (3, 6000)] {
        let mut s = Submission::new(token, eid("dtn://b/app"), vec![7; 3000]);
        s.part = Some(dtn_core::engine::AduPart { total_len: 9000, offset, creation: Some(creation) });
        net.at(at(2300), Op::Submit(0, s));
    }
    net.run_until(at(5000));
    let whole = BundleId { fragment: None, ..net.accepted[&1][0].clone() };
    assert_eq!(net.deliveries[&whole].len(), 1);
    let c = net.add(config("c"), 1 << 20, epidemic, 3);
    net.at(at(6000), Op::Up(1, c, None));
    net.run_until(at(8000));
    let receipts = net.nodes[c].store.state(b"engine/receipts").expect("state").expect("c saved receipts");
    let receipts = Summary::decode(&receipts).expect("a summary");
    assert!(receipts.contains(&whole, SeqMode::Unique) || receipts.contains(&whole, SeqMode::PerTime));
    let pieces: Vec<_> = receipts.sources().flat_map(|(src, s)| s.fragment_ids(src).collect::<Vec<_>>()).collect();
    assert!(pieces.is_empty(), "c remembers the pieces too: {pieces:?}");
}
