//! Small scenarios whose outcome can be worked out by hand, routing schemes compared on one mobility
//! scenario, and determinism.

use std::path::Path;

use dtn_sim::scenario::{Routing, Scenario, Variant};
use dtn_sim::sweep::sweep;
use dtn_sim::{Options, Sim, run};

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, "test.toml", Path::new(".")).expect("scenario parses")
}

const S: u64 = 1_000_000;

/// Two nodes, a 250 kB/s radio, one 1 MB message from a to b created at 0.
const PAIR: &str = r#"
duration = "300s"
[interfaces.radio]
rate = "250kB/s"
[[group]]
name = "a"
[[group]]
name = "b"
[[message]]
time = 0
id = "M1"
size = "1MB"
from = "a"
to = "b"
ttl = "1h"
[[contacts.plan]]
a = "a"
b = "b"
start = "10s"
end = "12s"
rate = "250kB/s"
"#;

#[test]
fn a_contact_too_short_for_the_bundle_leaves_a_fragment_and_the_next_sends_only_the_rest() {
    // One 2 s contact at 250 kB/s carries 500 kB of the 1 MB message: the transfer is cut, b keeps the
    // part that arrived as a fragment, nothing is delivered.
    let s = scenario(PAIR);
    let mut sim = Sim::new(&s, Options::default());
    sim.run();
    let r = sim.report();
    assert_eq!((r.stats.started, r.stats.relayed, r.stats.aborted, r.stats.delivered), (1, 0, 1, 0));
    let held = sim.held(1);
    assert_eq!(held.len(), 1, "b holds one fragment: {held:?}");
    let (offset, _) = held[0].fragment.expect("a fragment");
    assert_eq!(offset, 0);
    let kept = sim.used(1);
    assert!((495_000..=500_000).contains(&kept), "b keeps about 2 s x 250 kB/s, not {kept}");

    // A second contact at 100 s sends only the remaining ~500 kB: 2 s, so delivery at 102 s, not 104 s.
    let s = scenario(&format!(
        "{PAIR}\n[[contacts.plan]]\na = \"a\"\nb = \"b\"\nstart = \"100s\"\nend = \"110s\"\nrate = \"250kB/s\"\n"
    ));
    let mut sim = Sim::new(&s, Options::default());
    sim.run();
    let at = sim.delivered_at("M1").expect("delivered at the second contact");
    assert!((102 * S..102 * S + 50_000).contains(&at), "delivered at {at} µs");
    let r = sim.report();
    assert_eq!((r.stats.started, r.stats.relayed, r.stats.aborted, r.stats.delivered), (2, 1, 1, 1));
    assert!(r.stats.relayed_bytes < 510_000, "only the rest crossed: {}", r.stats.relayed_bytes);
    assert!(sim.held(0).is_empty() && sim.held(1).is_empty(), "the source drops its copy once delivered");
}

#[test]
fn three_node_chain_delivers_after_the_second_hop() {
    // a meets b from 10 s, b meets c from 30 s; 1 MB at 250 kB/s takes 4 s per hop. The second link has
    // 0.5 s of propagation delay, which the hellos pay before any bundle moves, and the bundle after its
    // 4 s on the wire: delivered at 30 + 0.5 + 4 + 0.5 = 35 s, two hops, two relays.
    let s = scenario(
        r#"
duration = "100s"
[interfaces.radio]
rate = "250kB/s"
[[group]]
name = "n"
count = 3
[[message]]
time = 0
id = "M1"
size = "1MB"
from = "n0"
to = "n2"
[[contacts.plan]]
a = "n0"
b = "n1"
start = "10s"
end = "20s"
rate = "250kB/s"
[[contacts.plan]]
a = "n1"
b = "n2"
start = "30s"
end = "40s"
rate = "250kB/s"
delay = "0.5s"
"#,
    );
    let mut sim = Sim::new(&s, Options::default());
    sim.run();
    let at = sim.delivered_at("M1").expect("delivered");
    assert!((35 * S..35 * S + 50_000).contains(&at), "delivered at {at} µs");
    let r = sim.report();
    assert_eq!((r.stats.relayed, r.stats.delivered, r.stats.aborted), (2, 1, 0));
    assert_eq!(r.stats.hopcount_avg, 2.0);
    assert_eq!(r.stats.overhead_ratio, 1.0);
    assert_eq!(r.messages[0].hops, Some(2));
}

#[test]
fn a_message_whose_lifetime_ends_while_it_waits_is_dropped_not_sent() {
    // Lifetime 60 s, first contact at 100 s: the bundle expires at the source and never crosses.
    let s = scenario(
        &PAIR
            .replace("ttl = \"1h\"", "ttl = \"60s\"")
            .replace("start = \"10s\"", "start = \"100s\"")
            .replace("end = \"12s\"", "end = \"120s\""),
    );
    let mut sim = Sim::new(&s, Options::default());
    sim.run();
    let r = sim.report();
    assert_eq!((r.stats.started, r.stats.delivered, r.stats.dropped), (0, 0, 1));
    assert!(sim.held(0).is_empty() && sim.held(1).is_empty());
    // Dropped by the sweep after its 60 s lifetime, within one sweep interval (60 s).
    assert!((60.0..=120.0).contains(&r.stats.buffertime_avg), "buffer time {}", r.stats.buffertime_avg);
}

#[test]
fn a_full_receiver_refuses_and_the_sender_keeps_its_copy() {
    // b's buffer holds 600 kB: the 1 MB message is refused, stays at a, and nothing is delivered.
    let text =
        PAIR.replace("name = \"b\"", "name = \"b\"\nbuffer = \"600kB\"").replace("end = \"12s\"", "end = \"60s\"");
    let s = scenario(&text);
    let mut sim = Sim::new(&s, Options::default());
    sim.run();
    let r = sim.report();
    assert_eq!((r.stats.delivered, r.stats.refused), (0, 1));
    assert_eq!(sim.held(0).len(), 1);
}

#[test]
fn a_short_contact_carries_both_ways_in_turn() {
    // a and b each hold two 1 MB messages for the other; the contact at 250 kB/s has room for two of the
    // four. The link takes each side's next bundle only when it can carry it, so the sides take turns: one
    // message crosses each way and the third transfer is cut, rather than one side filling the contact
    // with everything it holds. With 0.5 s of delay a side may have up to 125 kB (virtual) on the way: still
    // one 1 MB bundle at a time, although its stand-in is a few hundred real bytes.
    for (delay, end) in [("0s", "19s"), ("0.5s", "20s")] {
        let mut text = PAIR.replace("end = \"12s\"", &format!("end = \"{end}\"\ndelay = \"{delay}\""));
        for (id, from, to) in [("M2", "a", "b"), ("M3", "b", "a"), ("M4", "b", "a")] {
            text.push_str(&format!(
                "[[message]]\ntime = 0\nid = \"{id}\"\nsize = \"1MB\"\nfrom = \"{from}\"\nto = \"{to}\"\nttl = \"1h\"\n"
            ));
        }
        let s = scenario(&text);
        let mut sim = Sim::new(&s, Options::default());
        sim.run();
        let r = sim.report();
        let delivered = |from: &str| r.messages.iter().filter(|m| m.from == from && m.delivered.is_some()).count();
        assert_eq!((delivered("a"), delivered("b")), (1, 1), "delay {delay}: {:?}", r.messages);
        assert_eq!((r.stats.started, r.stats.relayed, r.stats.aborted), (3, 2, 1), "delay {delay}");
    }
}

/// 30 walkers in a 500 m square with 30 m radios for two hours, and ample buffers.
const CITY: &str = r#"
duration = "2h"
world = [500, 500]
sample = "10min"
[interfaces.radio]
rate = "250kB/s"
range = 30
[[group]]
name = "p"
count = 30
buffer = "50MB"
movement = { model = "random-waypoint", speed = [0.5, 1.5], wait = ["0s", "60s"] }
[[traffic]]
from = ["*"]
to = ["*"]
interval = ["20s", "40s"]
size = ["50kB", "100kB"]
lifetime = "2h"
"#;

#[test]
fn overhead_is_ordered_epidemic_prophet_spray_and_spray_never_exceeds_its_copies() {
    let s = scenario(CITY);
    let variants = [
        Variant { name: "epidemic".into(), routing: Some(Routing::Epidemic), ..Variant::default() },
        Variant {
            name: "prophet".into(),
            routing: Some(Routing::Prophet(dtn_core::routing::ProphetParams::default())),
            ..Variant::default()
        },
        Variant { name: "spray".into(), routing: Some(Routing::SprayAndWait { copies: 4 }), ..Variant::default() },
    ];
    let runs = sweep(&s, &variants, &[7], 2, false);
    let overhead: Vec<f64> = runs.iter().map(|r| r.report.stats.overhead_ratio).collect();
    let delivered: Vec<u64> = runs.iter().map(|r| r.report.stats.delivered).collect();
    assert!(delivered.iter().all(|&d| d > 20), "every scheme delivers something: {delivered:?}");
    assert!(
        overhead[0] > overhead[1] && overhead[1] > overhead[2],
        "overhead epidemic > PRoPHET > spray: {overhead:?}"
    );
    // Spray-and-wait with L = 4: at most 4 nodes other than the destination ever hold a copy.
    let copies = runs[2].report.stats.copies_max;
    assert!((2..=4).contains(&copies), "spray copies {copies}");
    assert!(runs[0].report.stats.copies_max > 4, "epidemic spreads wider");
}

#[test]
fn same_seed_gives_identical_reports_and_another_seed_does_not() {
    let s = scenario(CITY);
    let a = serde_json::to_string(&run(&s, &Options::default())).unwrap();
    let b = serde_json::to_string(&run(&s, &Options::default())).unwrap();
    assert_eq!(a, b);
    let c = serde_json::to_string(&run(&s, &Options { seed: Some(99), ..Options::default() })).unwrap();
    assert_ne!(a, c);
}

#[test]
fn a_bad_trace_is_reported_with_its_line() {
    let dir = std::env::temp_dir().join(format!("dtn-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.trace"), "0 CONN 0 1 up\n5 CONN 0 7 up\n").unwrap();
    let text = "duration = \"1h\"\n[interfaces.r]\nrate = 1000\n[[group]]\nname = \"n\"\ncount = 2\n[contacts]\ntrace = \"bad.trace\"\n";
    std::fs::write(dir.join("s.toml"), text).unwrap();
    let e = Scenario::load(&dir.join("s.toml")).unwrap_err().to_string();
    assert!(e.contains("bad.trace line 2") && e.contains("2 nodes"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_example_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.nodes.is_empty());
            n += 1;
        }
    }
    assert!(n >= 4, "weather-van, camera-house, city-126 and scale-10k");
}
