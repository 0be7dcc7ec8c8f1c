//! Test vectors for dtn7's format. Every hex string below was printed by dtn7 0.21.0's own `Beacon` and
//! `ServiceBlock` code (src/ipnd/beacon.rs and services.rs, copied unchanged into a scratch program with
//! bp7 0.10.7 and serde_cbor 0.11.2), so they are dtn7's bytes, not our reading of its encoder.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn eid(s: &str) -> Eid {
    s.parse().expect("test EID")
}

fn tcp(port: u16) -> (String, Option<u16>) {
    (TCP_CLA.to_owned(), Some(port))
}

/// dtnd's announcer with one TCP CLA on 4556 and `enable_period` off (dtnd's default):
/// `Beacon::with_config(eid, ServiceBlock::new(), None)` + `add_cla("tcp", &Some(4556))`.
const DTND_DEFAULT: &str = "8507038201682f2f6e6f6465312f00828182637463701911cca0";
/// Period 2 s, CLAs mtcp:16162 and tcp:4556, sequence number 7.
const PERIOD_TWO_CLAS: &str = "8607078201682f2f6e6f6465312f07828282646d746370193f2282637463701911cca002";
/// `ipn:23.0`, tcp:4556, custom string service (tag 63) "hi", period 10 s, sequence number 300.
const IPN_SERVICE: &str = "860707820282170019012c828182637463701911cca1183f82186818690a";
/// `Beacon::new("dtn://n1/")`: no service block, no period.
const PLAIN: &str = "8407018201652f2f6e312f00";
/// Period 5 s only.
const PERIOD_ONLY: &str = "8507058201652f2f6e312f0005";
/// A tcp CLA without a port.
const TCP_NO_PORT: &str = "8507038201652f2f6e312f0082818263746370f6a0";
/// What we send by default (node dtn://node1/, TCPCL 4556 at our address, period 2 s, sequence 7), as
/// dtn7's code builds it: `with_config(eid, ServiceBlock::new(), Some(2 s))` + `add_cla("tcp", &Some(4556))`
/// + `set_beacon_sequence_number(7)`.
const OUR_DEFAULT: &str = "8607078201682f2f6e6f6465312f07828182637463701911cca002";

fn vectors() -> Vec<(&'static str, Dtn7Beacon)> {
    let b = |flags, eid_s: &str, seq, clas, services, period_secs| Dtn7Beacon {
        version: IPND_VERSION,
        flags,
        eid: eid(eid_s),
        seq,
        clas,
        services,
        period_secs,
    };
    vec![
        (DTND_DEFAULT, b(0b011, "dtn://node1/", 0, vec![tcp(4556)], vec![], None)),
        (PERIOD_TWO_CLAS, b(0b111, "dtn://node1/", 7, vec![("mtcp".into(), Some(16162)), tcp(4556)], vec![], Some(2))),
        (IPN_SERVICE, b(0b111, "ipn:23.0", 300, vec![tcp(4556)], vec![(63, b"hi".to_vec())], Some(10))),
        (PLAIN, b(0b001, "dtn://n1/", 0, vec![], vec![], None)),
        (PERIOD_ONLY, b(0b101, "dtn://n1/", 0, vec![], vec![], Some(5))),
        (TCP_NO_PORT, b(0b011, "dtn://n1/", 0, vec![(TCP_CLA.into(), None)], vec![], None)),
    ]
}

#[test]
fn dtn7_vectors_decode_and_reencode_byte_for_byte() {
    for (h, expected) in vectors() {
        let bytes = hex(h);
        assert_eq!(Dtn7Beacon::decode(&bytes).unwrap(), expected, "{h}");
        assert_eq!(expected.encode(), bytes, "{h}");
    }
}

#[test]
fn our_default_beacon_is_exactly_what_dtn7_would_send() {
    let ours = Beacon {
        node_id: eid("dtn://node1/"),
        seq: 7,
        period: Some(Duration::from_secs(2)),
        endpoints: vec![TcpclEndpoint { addr: None, port: 4556 }],
    };
    let d = Dtn7Beacon::from_beacon(&ours);
    assert_eq!(d.encode(), hex(OUR_DEFAULT));
    assert_eq!(d.to_beacon().unwrap(), ours);
}

#[test]
fn mapping_to_our_terms() {
    let (beacon, format) = crate::beacon::decode_any(&hex(PERIOD_TWO_CLAS)).unwrap();
    assert_eq!(format, BeaconFormat::Dtn7);
    // mtcp is not TCPCL; only the tcp entry survives.
    assert_eq!(beacon.endpoints, vec![TcpclEndpoint { addr: None, port: 4556 }]);
    assert_eq!((beacon.seq, beacon.period), (7, Some(Duration::from_secs(2))));
    let (ipn, _) = crate::beacon::decode_any(&hex(IPN_SERVICE)).unwrap();
    assert_eq!(ipn.node_id, eid("ipn:23.0"));
    let (no_port, _) = crate::beacon::decode_any(&hex(TCP_NO_PORT)).unwrap();
    assert_eq!(no_port.endpoints, vec![TcpclEndpoint { addr: None, port: DEFAULT_TCPCL_PORT }]);
    let (plain, _) = crate::beacon::decode_any(&hex(PLAIN)).unwrap();
    assert!(plain.endpoints.is_empty() && plain.period.is_none());
}

#[test]
fn explicit_addresses_and_sub_second_periods() {
    let ours = Beacon {
        node_id: eid("ipn:9.0"),
        seq: u32::MAX,
        period: Some(Duration::from_millis(1500)),
        endpoints: vec![
            TcpclEndpoint { addr: Some("192.0.2.7".parse().unwrap()), port: 4556 },
            TcpclEndpoint { addr: Some("2001:db8::1".parse().unwrap()), port: 4557 },
            TcpclEndpoint { addr: None, port: 4558 },
        ],
    };
    let d = Dtn7Beacon::from_beacon(&ours);
    assert_eq!(d.clas[0], ("tcpcl@192.0.2.7".to_owned(), Some(4556)));
    assert_eq!(d.clas[1], ("tcpcl@2001:db8::1".to_owned(), Some(4557)));
    assert_eq!(d.period_secs, Some(2), "1.5 s rounds up");
    let back = Dtn7Beacon::decode(&d.encode()).unwrap().to_beacon().unwrap();
    assert_eq!(back, Beacon { period: Some(Duration::from_secs(2)), ..ours.clone() });
    let tiny = Beacon { period: Some(Duration::from_millis(100)), ..ours };
    assert_eq!(Dtn7Beacon::from_beacon(&tiny).period_secs, Some(1), "never announce 0 to dtn7");
}

#[test]
fn five_elements_follow_the_flags_like_dtn7() {
    // PERIOD_ONLY with the service-block flag set: dtn7 would read the 5 as a service block and fail.
    let mut b = hex(PERIOD_ONLY);
    b[2] = 0b011;
    assert_eq!(Dtn7Beacon::decode(&b), Err(BeaconError::Cbor { at: 12, expected: "service block" }));
}

#[test]
fn typed_errors() {
    let err = |h: &str| Dtn7Beacon::decode(&hex(h)).unwrap_err();
    assert_eq!(err("8306038201652f2f6e312f"), BeaconError::ArrayLength { at: 0, what: "beacon", len: 3 });
    assert_eq!(err("8704018201652f2f6e312f00"), BeaconError::ArrayLength { at: 0, what: "beacon", len: 7 });
    assert_eq!(
        err("8404018201652f2f6e312f00"),
        BeaconError::UnsupportedVersion { format: BeaconFormat::Dtn7, version: 4 }
    );
    assert_eq!(err("8407018201652f2f6e312f0000"), BeaconError::TrailingBytes(1));
    assert_eq!(err("9f07018201652f2f6e312f00ff"), BeaconError::Indefinite(0));
    assert_eq!(err("840719010082"), BeaconError::IntRange { at: 2, field: "flags", value: 256 });
    assert!(matches!(err("8407018201f600"), BeaconError::NodeIdCbor(_)));
    // dtn:none would make dtn7 itself panic on the second beacon; we refuse it.
    let none = Dtn7Beacon::decode(&hex("84070182010000" /* dtn:none */)).unwrap();
    assert!(matches!(none.to_beacon(), Err(BeaconError::NotANodeId(_))));
    // Service block of one element.
    assert_eq!(err("8507038201652f2f6e312f008180"), BeaconError::ArrayLength { at: 12, what: "service block", len: 1 });
    // A CLA list claiming 2^32 entries is refused before anything is allocated.
    assert_eq!(
        err("8507038201652f2f6e312f00829affffffff"),
        BeaconError::TooMany { at: 13, what: "CLA list", max: MAX_CLAS }
    );
    // A port above 65535.
    assert_eq!(
        err("8507038201652f2f6e312f00828182637463701a00010000a0"),
        BeaconError::IntRange { at: 19, field: "CLA port", value: 65536 }
    );
}

#[test]
fn truncations_and_random_garbage_never_panic() {
    for (h, _) in vectors() {
        let bytes = hex(h);
        for n in 0..bytes.len() {
            assert!(Dtn7Beacon::decode(&bytes[..n]).is_err(), "{h} cut at {n}");
        }
    }
    // A fixed-seed xorshift: random datagrams, and valid vectors with random bytes overwritten.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds: Vec<Vec<u8>> = vectors().iter().map(|(h, _)| hex(h)).collect();
    for i in 0..20_000 {
        let mut buf = if i % 2 == 0 {
            (0..next() % 64).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            seeds[(next() % seeds.len() as u64) as usize].clone()
        };
        if !buf.is_empty() {
            for _ in 0..1 + next() % 3 {
                let at = (next() % buf.len() as u64) as usize;
                buf[at] = next() as u8;
            }
            if i % 3 == 0 {
                buf[0] = 0x80 | (buf[0] & 0x1f); // keep it looking like an array
            }
        }
        // Either outcome is fine; a panic fails the test.
        let _ = crate::beacon::decode_any(&buf);
    }
}
