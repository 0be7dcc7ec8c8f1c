//! Metered links: what crosses a contact over a link paid per byte.
//!
//! The story from the field: a sensor station reaches its gateway over a cellular link with a daily byte
//! budget (the contact's volume), and now and then over Wi-Fi. Small sensor batches (normal priority) must
//! cross the cellular link, bulk camera frames must wait for Wi-Fi, and nothing may go beyond the volume,
//! whether the bundle is for the gateway itself (sent without asking the routing agent) or for a node beyond.

mod net;

use std::collections::BTreeSet;

use dtn_core::bpv7::{BundleId, Eid};
use dtn_core::engine::{Event, Submission};
use dtn_core::routing::{Epidemic, LinkClass, LinkInfo, RoutingAgent};
use dtn_core::store::Priority;
use net::{Net, Op, at, config};

const SEC: u64 = 1_000;

fn epidemic() -> Box<dyn RoutingAgent> {
    Box::new(Epidemic::new())
}

fn metered(volume: Option<u64>) -> LinkInfo {
    LinkInfo { class: LinkClass::Metered, volume, ..LinkInfo::default() }
}

struct Setup {
    net: Net,
    station: usize,
    gateway: usize,
    sensor: BTreeSet<BundleId>,
    camera: BTreeSet<BundleId>,
    alarm: BTreeSet<BundleId>,
}

/// A station with 6 sensor batches (normal, 300 bytes), 2 camera frames (bulk, 4 KB) and one alarm
/// (expedited), all for `destination`, and a gateway.
fn setup(destination: &str, min: Priority) -> Setup {
    let mut net = Net::new();
    let mut cfg = config("station");
    cfg.metered_min_priority = min;
    let station = net.add(cfg, 16 << 20, epidemic, 1);
    let gateway = net.add(config("gateway"), 16 << 20, epidemic, 2);
    let dest: Eid = destination.parse().expect("endpoint");
    if destination.starts_with("dtn://gateway/") {
        net.apply_now(Op::Register(gateway, dest.clone()));
    }
    let mut token = 0;
    let mut submit = |net: &mut Net, priority: Priority, len: usize| {
        token += 1;
        let mut s = Submission::new(token, dest.clone(), vec![token as u8; len]);
        s.priority = priority;
        net.apply_now(Op::Submit(station, s));
        let ids = net.accepted.get(&token).cloned().expect("accepted");
        assert_eq!(ids.len(), 1, "not fragmented at the source");
        ids[0].clone()
    };
    let mut sensor = BTreeSet::new();
    let mut camera = BTreeSet::new();
    let mut alarm = BTreeSet::new();
    for k in 0..8 {
        if k % 4 == 3 {
            camera.insert(submit(&mut net, Priority::BULK, 4_000));
        } else {
            sensor.insert(submit(&mut net, Priority::NORMAL, 300));
        }
    }
    alarm.insert(submit(&mut net, Priority::EXPEDITED, 100));
    Setup { net, station, gateway, sensor, camera, alarm }
}

/// Bundles (not records) sent station → gateway on contact `contact`: their IDs, with fragments under the
/// whole bundle's ID, and the bytes sent.
fn crossed(net: &Net, station: usize, contact: u64) -> (BTreeSet<BundleId>, u64) {
    let mut ids = BTreeSet::new();
    let mut bytes = 0;
    for t in net.txs.iter().filter(|t| t.contact == contact && t.from == station) {
        if let Some(id) = &t.id {
            ids.insert(BundleId { fragment: None, ..id.clone() });
            bytes += t.len;
        }
    }
    (ids, bytes)
}

fn check_metered_then_wifi(destination: &str) {
    let Setup { mut net, station, gateway, sensor, camera, alarm } = setup(destination, Priority::NORMAL);
    let volume = 1_500;
    net.at(at(0), Op::UpLink(station, gateway, metered(Some(volume))));
    net.at(at(60 * SEC), Op::Down(station, gateway));
    net.run_until(at(61 * SEC));
    let (first, bytes) = crossed(&net, station, 1);
    assert!(bytes <= volume, "{bytes} bytes crossed a contact of volume {volume}");
    assert!(first.is_disjoint(&camera), "bulk camera frames crossed the metered link: {first:?}");
    assert!(alarm.is_subset(&first), "the alarm did not cross the metered link");
    let sensors_first = first.intersection(&sensor).count();
    assert!(sensors_first >= 2, "only {sensors_first} sensor batches crossed the metered link");
    assert!(sensors_first < sensor.len(), "all sensor batches crossed: the volume was not what limited them");

    // Wi-Fi: the rest goes, camera frames included.
    net.at(at(120 * SEC), Op::Up(station, gateway, None));
    net.run_until(at(180 * SEC));
    let (second, _) = crossed(&net, station, 2);
    assert!(camera.is_subset(&second), "camera frames did not go over Wi-Fi");
    let all: BTreeSet<_> = first.union(&second).cloned().collect();
    assert!(sensor.is_subset(&all), "sensor batches missing after Wi-Fi");
}

/// Bundles for the gateway itself are forwarded without asking the agent: the metered rule and the volume
/// hold for them too.
#[test]
fn metered_contact_to_the_destination_itself() {
    check_metered_then_wifi("dtn://gateway/~data");
}

/// Bundles for a node beyond the gateway are replicated by the agent: the same rule.
#[test]
fn metered_contact_to_a_relay() {
    check_metered_then_wifi("dtn://server/~data");
}

/// No volume: every normal bundle goes, still no bulk.
#[test]
fn metered_contact_without_volume_carries_all_but_bulk() {
    let Setup { mut net, station, gateway, sensor, camera, alarm } = setup("dtn://gateway/~data", Priority::NORMAL);
    net.at(at(0), Op::UpLink(station, gateway, metered(None)));
    net.run_until(at(60 * SEC));
    let (ids, _) = crossed(&net, station, 1);
    let want: BTreeSet<_> = sensor.union(&alarm).cloned().collect();
    assert_eq!(ids, want);
    assert!(ids.is_disjoint(&camera));
}

/// The minimum is configurable: at expedited, only the alarm goes.
#[test]
fn metered_minimum_expedited_carries_only_the_alarm() {
    let Setup { mut net, station, gateway, alarm, .. } = setup("dtn://gateway/~data", Priority::EXPEDITED);
    net.at(at(0), Op::UpLink(station, gateway, metered(None)));
    net.run_until(at(60 * SEC));
    let (ids, _) = crossed(&net, station, 1);
    assert_eq!(ids, alarm);
}

/// A volume raised on a live contact (a new day of the budget) lets what waited go, up to the new volume.
#[test]
fn raised_volume_on_a_live_contact() {
    let Setup { mut net, station, gateway, sensor, camera, .. } = setup("dtn://gateway/~data", Priority::NORMAL);
    net.at(at(0), Op::UpLink(station, gateway, metered(Some(0))));
    net.run_until(at(30 * SEC));
    let (before, _) = crossed(&net, station, 1);
    assert!(before.is_empty(), "bundles crossed a contact of volume 0: {before:?}");
    let peer = net.nodes[gateway].eid.clone();
    net.at(at(31 * SEC), Op::Event(station, Event::ContactVolume { peer, volume: Some(100_000) }));
    net.run_until(at(60 * SEC));
    let (after, _) = crossed(&net, station, 1);
    assert!(sensor.is_subset(&after), "sensor batches still waiting after the volume was raised");
    assert!(after.is_disjoint(&camera), "raising the volume let bulk frames over the metered link");
}

/// The volume is what the link may carry, records included: the hello (and any receipt or offer) sent
/// before a bundle leaves that much less for bundles. Records still go once it is spent, since without a
/// hello nothing flows at all, so the check is on everything up to the last bundle.
#[test]
fn records_use_up_the_volume_too() {
    let Setup { mut net, station, gateway, .. } = setup("dtn://gateway/~data", Priority::NORMAL);
    let volume = 1_500;
    net.at(at(0), Op::UpLink(station, gateway, metered(Some(volume))));
    net.run_until(at(60 * SEC));
    let sent: Vec<_> = net.txs.iter().filter(|t| t.contact == 1 && t.from == station).collect();
    let last_bundle = sent.iter().rposition(|t| t.id.is_some()).expect("a bundle crossed");
    let records = sent[..last_bundle].iter().filter(|t| t.id.is_none()).count();
    assert!(records > 0, "no hello before the bundles");
    let bytes: u64 = sent[..=last_bundle].iter().map(|t| t.len).sum();
    assert!(bytes <= volume, "{bytes} bytes (bundles and {records} records) sent on a contact of volume {volume}");
}
