//! Writes the seed corpus: `cargo run --example make_seeds -- seeds` (from `dtn-core/fuzz`).
//!
//! Each seed is a small valid input that reaches a different part of the codec, so the fuzzer starts from
//! deep paths instead of having to discover CBOR framing and CRCs by itself. The output is deterministic;
//! rerun after a format change and commit the result.

use std::fs;
use std::path::{Path, PathBuf};

use dtn_core::bpv7::admin::{AdminRecord, StatusAssertion, StatusReport, reason};
use dtn_core::bpv7::{
    BlockFlags, BlockType, Bundle, BundleBuilder, BundleFlags, CrcType, CreationTimestamp, DtnTime, Eid,
};

fn eid(s: &str) -> Eid {
    s.parse().expect("seed EIDs are valid")
}

/// A creation time well after the DTN epoch (2025-10-29), so no bundle-age block is added implicitly.
const T: u64 = 815_000_000_000;

fn bundles() -> Vec<(&'static str, Bundle<'static>)> {
    let report = AdminRecord::StatusReport(StatusReport {
        received: StatusAssertion { asserted: true, time: Some(DtnTime(T + 5)) },
        forwarded: StatusAssertion::default(),
        delivered: StatusAssertion::default(),
        deleted: StatusAssertion::default(),
        reason: reason::NO_INFO,
        source: eid("ipn:3.0"),
        creation: CreationTimestamp::new(T, 2),
        fragment: Some((0, 512)),
    });
    let seeds = [
        // dtn scheme, CRC-32C everywhere, the three extension blocks a forwarder maintains.
        (
            "dtn-crc32c-hop-prev",
            BundleBuilder::new(eid("dtn://station-1/"), eid("dtn://collector/~data/baro"))
                .creation(CreationTimestamp::new(T, 1))
                .hop_limit(32)
                .previous_node(eid("dtn://relay-7/"))
                .payload(b"pressure=1013.2hPa".to_vec())
                .build(),
        ),
        // ipn scheme, CRC-16, creation time 0 so the bundle-age block is mandatory.
        (
            "ipn-crc16-no-clock",
            BundleBuilder::new(eid("ipn:977.1"), eid("ipn:2.7"))
                .crc_type(CrcType::Crc16)
                .bundle_age_ms(1234)
                .payload(vec![0x55; 40])
                .build(),
        ),
        // Fragment from an RFC 9758 three-element ipn source.
        (
            "ipn3-fragment",
            BundleBuilder::new(eid("ipn:4294967295.7.12"), eid("ipn:0.5.1"))
                .creation(CreationTimestamp::new(T, 9))
                .fragment(100, 1000)
                .payload((0..=255u8).cycle().take(300).collect())
                .build(),
        ),
        // Unknown private block with every "if unprocessable" flag, canonical blocks without CRC.
        (
            "unknown-block-no-block-crc",
            BundleBuilder::new(eid("ipn:5.1"), eid("dtn://sink/"))
                .creation(CreationTimestamp::new(T, 3))
                .block_crc_type(CrcType::None)
                .extension_block(
                    BlockType(192),
                    BlockFlags::REPLICATE_IN_FRAGMENTS
                        | BlockFlags::REPORT_IF_UNPROCESSABLE
                        | BlockFlags::DISCARD_IF_UNPROCESSABLE,
                    vec![0x82, 0x01, 0x63, b'a', b'b', b'c'],
                )
                .extension_block(BlockType(200), BlockFlags::default(), Vec::new())
                .payload(b"x".to_vec())
                .build(),
        ),
        // Primary block without CRC, covered by a block integrity block that targets it.
        (
            "bib-covers-primary",
            BundleBuilder::new(eid("ipn:8.1"), eid("ipn:9.1"))
                .creation(CreationTimestamp::new(T, 4))
                .primary_crc_type(CrcType::None)
                .extension_block(BlockType::BIB, BlockFlags::default(), vec![0x82, 0x00, 0x01, 0x01, 0x01])
                .payload(b"signed".to_vec())
                .build(),
        ),
        // No CRC anywhere (a BIB stands in for the primary block's): every byte can be mutated without
        // breaking a checksum, so the fuzzer reaches the accepting paths with non-canonical and
        // indefinite-length encodings.
        (
            "no-crc-anywhere",
            BundleBuilder::new(eid("dtn://gw/in"), eid("ipn:2.7"))
                .creation(CreationTimestamp::new(T, 6))
                .crc_type(CrcType::None)
                .previous_node(eid("ipn:3.0"))
                .bundle_age_ms(20)
                .hop_limit(8)
                .extension_block(BlockType::BIB, BlockFlags::default(), vec![0x81, 0x00])
                .payload(b"unchecked".to_vec())
                .build(),
        ),
        // Anonymous source: must-not-fragment is implied, no reports; empty payload.
        (
            "anonymous-empty",
            BundleBuilder::new(Eid::Null, eid("dtn://any/"))
                .creation(CreationTimestamp::new(T, 0))
                .payload(Vec::new())
                .build(),
        ),
        // All status-report requests, a separate report-to, CRC-16 blocks under a CRC-32C primary.
        (
            "reports-requested",
            BundleBuilder::new(eid("dtn://a/app"), eid("ipn:12.3"))
                .report_to(eid("dtn://ops/reports"))
                .creation(CreationTimestamp::new(T, 77))
                .lifetime_ms(3_600_000)
                .flags(BundleFlags::ALL_REPORTS | BundleFlags::STATUS_TIME_REQUESTED)
                .block_crc_type(CrcType::Crc16)
                .payload(b"hello".to_vec())
                .build(),
        ),
        // Administrative record: a status report about a fragment.
        (
            "admin-status-report",
            BundleBuilder::new(eid("ipn:3.0"), eid("ipn:1.0"))
                .creation(CreationTimestamp::new(T, 5))
                .flags(BundleFlags::ADMIN_RECORD)
                .payload(report.encode())
                .build(),
        ),
    ];
    seeds.into_iter().map(|(name, b)| (name, b.expect("seed bundles are valid"))).collect()
}

/// Bundles the builder cannot make, since it always writes the shortest definite-length form, but other
/// implementations may send. Written out by hand, without CRCs (a BIB covers the primary block), so the
/// fuzzer can keep mutating them into other valid bundles.
fn hand_written() -> Vec<(&'static str, Vec<u8>)> {
    let indefinite = [
        // The bundle, then the primary block as an indefinite array: version, flags, CRC type.
        &[0x9f, 0x9f, 0x07, 0x00, 0x00][..],
        // Destination ipn:2.1, both arrays indefinite.
        &[0x9f, 0x02, 0x9f, 0x02, 0x01, 0xff, 0xff],
        // Source dtn://s/x, the text in two chunks.
        &[0x82, 0x01, 0x7f, 0x63, b'/', b'/', b's', 0x62, b'/', b'x', 0xff],
        // Report-to dtn:none.
        &[0x9f, 0x01, 0x00, 0xff],
        // Creation timestamp [T, 1], lifetime one day, end of the primary block.
        &[0x9f, 0x1b, 0x00, 0x00, 0x00, 0xbd, 0xc1, 0xc9, 0x16, 0x00, 0x01, 0xff],
        &[0x1a, 0x05, 0x26, 0x5c, 0x00, 0xff],
        // BIB targeting block 0, as an indefinite array.
        &[0x9f, 0x0b, 0x02, 0x00, 0x00, 0x42, 0x81, 0x00, 0xff],
        // Hop count [8, 0] with the data itself an indefinite array.
        &[0x85, 0x0a, 0x03, 0x00, 0x00, 0x44, 0x9f, 0x08, 0x00, 0xff],
        // Payload "hello" as an indefinite array, then the end of the bundle.
        &[0x9f, 0x01, 0x01, 0x00, 0x00, 0x45, b'h', b'e', b'l', b'l', b'o', 0xff],
        &[0xff],
    ]
    .concat();
    let long_heads = [
        // The bundle, then the primary block with flags 0 written in two bytes.
        &[0x9f, 0x88, 0x07, 0x18, 0x00, 0x00][..],
        // Destination ipn:2.1 with every number longer than needed.
        &[0x82, 0x18, 0x02, 0x82, 0x19, 0x00, 0x02, 0x1a, 0x00, 0x00, 0x00, 0x01],
        // Source dtn://s/x with a two-byte text head; report-to dtn:none.
        &[0x82, 0x01, 0x78, 0x05, b'/', b'/', b's', b'/', b'x'],
        &[0x82, 0x01, 0x00],
        // Creation timestamp [T, 1]; lifetime one day in eight bytes.
        &[0x82, 0x1b, 0x00, 0x00, 0x00, 0xbd, 0xc1, 0xc9, 0x16, 0x00, 0x18, 0x01],
        &[0x1b, 0x00, 0x00, 0x00, 0x00, 0x05, 0x26, 0x5c, 0x00],
        // BIB targeting block 0.
        &[0x85, 0x0b, 0x02, 0x00, 0x00, 0x42, 0x81, 0x00],
        // Payload "hello" with long flags and length heads, then the end of the bundle.
        &[0x85, 0x01, 0x01, 0x18, 0x00, 0x00, 0x58, 0x05, b'h', b'e', b'l', b'l', b'o'],
        &[0xff],
    ]
    .concat();
    let seeds = vec![("indefinite-items", indefinite), ("long-heads", long_heads)];
    for (name, bytes) in &seeds {
        // Keep them valid as the codec evolves: a seed the decoder rejects would only teach the fuzzer errors.
        if let Err(e) = Bundle::decode(bytes) {
            panic!("hand-written seed {name} does not decode: {e}");
        }
    }
    seeds
}

fn admin_records() -> Vec<(&'static str, Vec<u8>)> {
    let plain = AdminRecord::StatusReport(StatusReport {
        received: StatusAssertion::default(),
        forwarded: StatusAssertion { asserted: true, time: None },
        delivered: StatusAssertion::default(),
        deleted: StatusAssertion { asserted: true, time: Some(DtnTime(T)) },
        reason: reason::LIFETIME_EXPIRED,
        source: eid("dtn://station-1/"),
        creation: CreationTimestamp::new(T, 1),
        fragment: None,
    });
    let fragment = AdminRecord::StatusReport(StatusReport {
        received: StatusAssertion { asserted: true, time: Some(DtnTime(T + 1)) },
        forwarded: StatusAssertion::default(),
        delivered: StatusAssertion::default(),
        deleted: StatusAssertion::default(),
        reason: reason::NO_INFO,
        source: eid("ipn:4294967295.7.0"),
        creation: CreationTimestamp::new(T, 2),
        fragment: Some((10, 20)),
    });
    // A record type in the private range, with nested content kept as raw CBOR.
    let other = AdminRecord::Other {
        record_type: 0x1_0001,
        content: vec![0x83, 0x01, 0x9f, 0x02, 0xff, 0xa1, 0x61, b'k', 0xf6],
    };
    vec![
        ("status-report", plain.encode()),
        ("status-report-fragment", fragment.encode()),
        ("other-record", other.encode()),
    ]
}

const EIDS: [(&str, &str); 8] = [
    ("null", "dtn:none"),
    ("dtn-demux", "dtn://station-3/~telemetry/baro"),
    ("dtn-node", "dtn://node/"),
    ("dtn-reg-name", "dtn://a%2Fb.c_d~e!$&'()*+,;=/x"),
    ("ipn2", "ipn:977.1"),
    ("ipn3", "ipn:4294967295.7.12"),
    ("ipn3-zero-allocator", "ipn:0.5.1"),
    ("ipn-local-node", "ipn:!.7"),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("creating the seed directory");
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("{:5} bytes  {}", bytes.len(), path.display());
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "seeds".into()));
    for (name, b) in bundles() {
        write(&root.join("decode"), &format!("{name}.bundle"), &b.to_vec());
    }
    for (name, bytes) in hand_written() {
        write(&root.join("decode"), &format!("{name}.bundle"), &bytes);
    }
    for (name, bytes) in admin_records() {
        write(&root.join("admin_record"), &format!("{name}.bin"), &bytes);
    }
    for (name, text) in EIDS {
        write(&root.join("eid_text"), &format!("{name}.txt"), text.as_bytes());
    }
    for (name, bytes) in summaries() {
        write(&root.join("summary"), &format!("{name}.bin"), &bytes);
    }
}

/// Summaries of each shape: unique sequence runs, per-time runs, fragments, several sources.
fn summaries() -> Vec<(&'static str, Vec<u8>)> {
    use dtn_core::bpv7::BundleId;
    use dtn_core::store::{SeqMode, Summary};
    let id = |src: &Eid, t: u64, q: u64, frag: Option<(u64, u64)>| BundleId {
        source: src.clone(),
        creation: CreationTimestamp::new(t, q),
        fragment: frag,
    };
    let a = Eid::dtn("station-1", "").expect("valid");
    let b = Eid::ipn(7, 0);
    let mut mixed = Summary::new();
    for q in (0..40).filter(|q| q % 7 != 3) {
        mixed.insert(&id(&a, 800_000_000_000 + q, q, None), SeqMode::Unique);
        mixed.insert(&id(&b, q / 4, q % 4, None), SeqMode::PerTime);
    }
    mixed.insert(&id(&b, 9, 9, Some((100, 50))), SeqMode::PerTime);
    let mut one = Summary::new();
    one.insert(&id(&Eid::Null, 0, u64::MAX, None), SeqMode::PerTime);
    vec![("mixed", mixed.to_bytes()), ("one-run-max", one.to_bytes()), ("empty", Summary::new().to_bytes())]
}
