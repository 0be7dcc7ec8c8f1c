//! Differential tests against the `bp7` crate (0.12, the BPv7 codec of dtn7-rs).
//!
//! (i) Bundles made with bp7's builders and encoded with `to_cbor()` must decode in our codec to the same
//! fields, block by block, and re-encode to the same bytes. (ii) Bundles made with our builder must decode in
//! bp7 (`Bundle::try_from`) to the same fields, pass bp7's validation and be re-encoded by bp7 byte for byte.
//! Both directions also check the encoding against the independent reference encoder of `common`.
//!
//! The generated bundles are restricted to what bp7 can represent (see [`bp7_subset`]). Where bp7 departs from
//! RFC 9171 the deviation is documented by a dedicated test below that asserts our precise behaviour next to
//! bp7's, rather than being worked around silently.
//!
//! Cases are generated from a fixed seed so that every run checks the same bundles; `PROPTEST_CASES` changes
//! how many.

mod common;

use std::time::Duration;

use bp7::crc::{CRC_16, CRC_32, CRC_NO, CrcBlock, CrcValue};
use bp7::eid::EndpointID;
use bp7::error::Error as Bp7Error;
use bp7::flags::BlockControlFlags;
use bp7::primary::PrimaryBlockBuilder;
use bp7::{CanonicalBlock, CanonicalBlockBuilder, CanonicalData};
use common::*;
use dtn_core::bpv7::{
    BlockData, BlockFlags, BlockType, Bundle, BundleBuilder, BundleFlags, CrcType, CreationTimestamp, Eid, EidError,
    ErrorKind, HopCount, IpnEid, IpnForm, Limits,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config(cases: u32, seed: u64) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// What bp7 0.12 can represent without failing or changing the bundle. Each restriction is a bp7 limitation
/// that has its own test below:
/// * ipn EIDs only in the two-element form (RFC 9758's three-element form is unknown to bp7), node number > 0
///   (bp7 rewrites `ipn:0.n` to `ipn:0.0`);
/// * destination not `dtn:none` (bp7's primary block builder refuses it);
/// * no reserved bundle or block flag bits, block flags below 256, hop counts below 256.
fn bp7_subset() -> Subset {
    Subset {
        ipn2_only: true,
        no_null_destination: true,
        no_reserved_bundle_flags: true,
        assigned_block_flags_only: true,
        small_hop_count: true,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Conversions and comparison
// ---------------------------------------------------------------------------------------------------------

fn bp7_eid(e: &Eid) -> EndpointID {
    match e {
        Eid::Null => EndpointID::none(),
        Eid::Dtn(d) => EndpointID::with_dtn(d.ssp()).expect("bp7 accepts every dtn EID we generate"),
        Eid::Ipn(i) => EndpointID::with_ipn(i.fqnn, i.service).expect("bp7 subset: node number > 0"),
        Eid::Unknown(_) => unreachable!("the generators make no EIDs of unknown schemes"),
    }
}

/// bp7 computes CRC values while encoding; the "empty" variants only select the type.
fn bp7_crc(c: CrcType) -> CrcValue {
    match c {
        CrcType::None => CrcValue::CrcNo,
        CrcType::Crc16 => CrcValue::Crc16Empty,
        CrcType::Crc32c => CrcValue::Crc32Empty,
    }
}

fn bp7_block(ty: u64, number: u64, flags: u64, crc: CrcType, data: CanonicalData) -> CanonicalBlock {
    CanonicalBlockBuilder::default()
        .block_type(ty)
        .block_number(number)
        .block_control_flags(u8::try_from(flags).expect("bp7 subset: block flags below 256"))
        .crc(bp7_crc(crc))
        .data(data)
        .build()
        .expect("data is set")
}

/// Makes the bundle of `spec` with bp7's builders. With `sort`, bp7's `BundleBuilder` orders the blocks (by
/// descending block number); otherwise `Bundle::new` keeps the spec's order.
fn to_bp7(spec: &Spec, sort: bool) -> bp7::Bundle {
    let mut primary = PrimaryBlockBuilder::default()
        .bundle_control_flags(spec.flags)
        .crc(bp7_crc(spec.crc))
        .destination(bp7_eid(&spec.destination))
        .source(bp7_eid(&spec.source))
        .report_to(bp7_eid(&spec.report_to))
        .creation_timestamp(bp7::CreationTimestamp::with_time_and_seq(spec.time, spec.sequence))
        .lifetime(Duration::from_millis(spec.lifetime));
    if let Some(f) = spec.fragment {
        primary = primary.fragmentation_offset(f.offset).total_data_length(f.total_adu_len);
    }
    let primary = primary.build().expect("bp7 subset: destination is not dtn:none");
    let mut blocks: Vec<CanonicalBlock> = spec
        .ext
        .iter()
        .map(|e| {
            let data = match &e.kind {
                Kind::PreviousNode(n) => CanonicalData::PreviousNode(bp7_eid(n)),
                Kind::BundleAge(a) => CanonicalData::BundleAge(*a),
                Kind::HopCount(h) => CanonicalData::HopCount(h.limit as u8, h.count as u8),
                Kind::Opaque => CanonicalData::Unknown(e.data.clone()),
            };
            bp7_block(e.ty, e.number, e.flags, e.crc, data)
        })
        .collect();
    blocks.push(bp7_block(1, 1, spec.payload_flags, spec.payload_crc, CanonicalData::Data(spec.payload.clone())));
    if sort {
        bp7::bundle::BundleBuilder::default().primary(primary).canonicals(blocks).build().expect("has a payload block")
    } else {
        bp7::Bundle::new(primary, blocks)
    }
}

/// The CRC value bytes at the end of an encoded block (empty without CRC).
fn crc_tail(encoded: &[u8], c: CrcType) -> &[u8] {
    &encoded[encoded.len() - c.value_len()..]
}

/// Compares our view of a bundle with bp7's, field by field and block by block.
fn compare(ours: &Bundle<'_>, theirs: &bp7::Bundle) -> Result<(), TestCaseError> {
    let p = ours.primary();
    let q = &theirs.primary;
    // Compared in bp7's own text form: bp7 prints a two-element ipn node number whole, where we write a
    // non-zero allocator out (RFC 9758 §4).
    prop_assert_eq!(bp7_eid(&p.destination).to_string(), q.destination.to_string());
    prop_assert_eq!(bp7_eid(&p.source).to_string(), q.source.to_string());
    prop_assert_eq!(bp7_eid(&p.report_to).to_string(), q.report_to.to_string());
    prop_assert_eq!(p.flags.0, q.bundle_control_flags);
    prop_assert_eq!(u64::from(p.crc_type.code()), u64::from(q.crc.to_code()));
    prop_assert_eq!(crc_tail(ours.primary_encoded(), p.crc_type), q.crc.bytes().unwrap_or_default());
    prop_assert_eq!(p.creation.time.0, q.creation_timestamp.dtntime());
    prop_assert_eq!(p.creation.sequence, q.creation_timestamp.seqno());
    prop_assert_eq!(u128::from(p.lifetime_ms), q.lifetime.as_millis());
    let frag = q.has_fragmentation().then_some((q.fragmentation_offset, q.total_data_length));
    prop_assert_eq!(p.fragment.map(|f| (f.offset, f.total_adu_len)), frag);

    prop_assert_eq!(ours.blocks().len(), theirs.canonicals.len());
    for (a, b) in ours.blocks().iter().zip(&theirs.canonicals) {
        prop_assert_eq!(a.block_type().0, b.block_type);
        prop_assert_eq!(a.number(), b.block_number);
        prop_assert_eq!(a.flags().0, u64::from(b.block_control_flags));
        prop_assert_eq!(u64::from(a.crc_type().code()), u64::from(b.crc.to_code()));
        prop_assert_eq!(crc_tail(a.encoded(), a.crc_type()), b.crc.bytes().unwrap_or_default());
        match (a.typed(), b.data()) {
            (BlockData::Payload, CanonicalData::Data(d)) | (BlockData::Opaque, CanonicalData::Unknown(d)) => {
                prop_assert!(a.data() == &d[..], "data of block {}", a.number());
            }
            (BlockData::PreviousNode(e), CanonicalData::PreviousNode(x)) => {
                prop_assert_eq!(bp7_eid(e).to_string(), x.to_string());
                prop_assert_eq!(a.data(), &b.data().to_cbor()[..]);
            }
            (BlockData::BundleAge(x), CanonicalData::BundleAge(y)) => {
                prop_assert_eq!(x, y);
                prop_assert_eq!(a.data(), &b.data().to_cbor()[..]);
            }
            (BlockData::HopCount(h), CanonicalData::HopCount(limit, count)) => {
                prop_assert_eq!((h.limit, h.count), (u64::from(*limit), u64::from(*count)));
                prop_assert_eq!(a.data(), &b.data().to_cbor()[..]);
            }
            (x, y) => return Err(TestCaseError::fail(format!("block {}: ours {x:?}, bp7 {y:?}", a.number()))),
        }
    }
    prop_assert!(Some(ours.payload()) == theirs.payload().map(|p| &p[..]), "payloads differ");
    Ok(())
}

fn bp7_validate(b: &bp7::Bundle) -> Result<(), TestCaseError> {
    b.validate().map_err(|e| TestCaseError::fail(format!("bp7 validation failed: {e:?}")))
}

// ---------------------------------------------------------------------------------------------------------
// Generated cases
// ---------------------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(3000, 0x0bd7_1a5e_0000_0001))]

    /// (i) bp7 → ours. Half of the bundles whose primary block has no CRC keep the BIB that makes this legal;
    /// the others are what bp7 makes by default (CRC type 0, nothing covering the primary block), which RFC
    /// 9171 §4.3.1 forbids: we refuse those unless `Limits::require_primary_crc` is off.
    #[test]
    fn bp7_bundles_decode_identically(
        spec in spec(Style::Wire, bp7_subset()),
        sort in any::<bool>(),
        drop_bib in any::<bool>(),
        chunks in chunk_sizes(),
    ) {
        let mut spec = spec;
        if drop_bib && spec.crc == CrcType::None {
            spec.ext.retain(|e| e.ty != 11);
        }
        let mut theirs = to_bp7(&spec, sort);
        let bytes = theirs.to_cbor();
        bp7_validate(&theirs)?;
        if sort {
            // bp7's BundleBuilder puts the blocks in descending block-number order (the payload, 1, last).
            spec.ext.sort_by_key(|e| std::cmp::Reverse(e.number));
        }
        prop_assert!(bytes == spec.encode(), "bp7's encoding differs from the reference encoding");

        let limits = if spec.crc == CrcType::None && !spec.has_bib_on_primary() {
            let err = Bundle::decode(&bytes).map(|_| ()).map_err(|e| e.kind);
            prop_assert_eq!(err, Err(ErrorKind::PrimaryCrcMissing));
            let streamed = stream_decode(&bytes, &chunks, Limits::default()).map(|_| ());
            prop_assert_eq!(streamed.map_err(|f| f.kind), Err(Some(ErrorKind::PrimaryCrcMissing)));
            Limits { require_primary_crc: false, ..Limits::default() }
        } else {
            Limits::default()
        };
        let ours = Bundle::decode_with(&bytes, &limits)?;
        check_decoded(&ours, &spec)?;
        compare(&ours, &theirs)?;
        prop_assert!(ours.to_vec() == bytes, "re-encoding changed bp7's bytes");
        let s = stream_decode(&bytes, &chunks, limits)?;
        prop_assert_eq!(&s.header, &ours.header());
        prop_assert!(s.payload == ours.payload());
    }

    /// (ii) ours → bp7: bp7 decodes our bundles to the same fields, finds them valid (CRCs included) and
    /// re-encodes them byte for byte.
    #[test]
    fn our_bundles_decode_identically_in_bp7(spec in spec(Style::Builder, bp7_subset())) {
        let ours = spec.build()?;
        let bytes = ours.to_vec();
        prop_assert!(bytes == spec.encode(), "our builder's encoding differs from the reference encoding");
        let mut theirs = bp7::Bundle::try_from(bytes.clone())
            .map_err(|e| TestCaseError::fail(format!("bp7 cannot decode our bundle: {e:?}")))?;
        bp7_validate(&theirs)?;
        prop_assert!(theirs.crc_valid(), "bp7 disagrees with our CRCs");
        compare(&ours, &theirs)?;
        prop_assert!(theirs.to_cbor() == bytes, "bp7 re-encodes our bundle differently");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Where bp7 departs from RFC 9171 (and one place where we do)
// ---------------------------------------------------------------------------------------------------------

/// A simple valid bundle of ours, for the cases below.
fn ours_builder() -> BundleBuilder {
    BundleBuilder::new("dtn://src/app".parse().expect("EID"), "ipn:2.1".parse().expect("EID"))
        .creation(CreationTimestamp::new(800_000_000_000, 7))
        .payload(b"payload".to_vec())
}

/// bp7's standard bundle (`new_std_payload_bundle`, and every bundle whose CRC type is left at its default)
/// has a primary block with CRC type 0 and no BIB. RFC 9171 §4.3.1: "the CRC type code for the primary block
/// MUST be non-zero" unless a BIB targets it. We refuse such a bundle by default, with `PrimaryCrcMissing`,
/// and accept it, unchanged, when `Limits::require_primary_crc` is off.
#[test]
fn bp7_default_bundles_have_no_primary_crc() {
    let src = EndpointID::with_dtn("node1/app").expect("EID");
    let dst = EndpointID::with_ipn(2, 1).expect("EID");
    let mut theirs = bp7::bundle::new_std_payload_bundle(src, dst, b"hello".to_vec());
    assert_eq!(theirs.primary.crc, CrcValue::CrcNo);
    assert!(theirs.validate().is_ok(), "bp7 finds its own CRC-less bundle valid");
    let bytes = theirs.to_cbor();

    let err = Bundle::decode(&bytes).expect_err("RFC 9171 §4.3.1");
    assert_eq!(err.kind, ErrorKind::PrimaryCrcMissing);
    let stream = stream_decode(&bytes, &[5], Limits::default()).map(|_| ());
    assert_eq!(stream.map_err(|f| f.kind), Err(Some(ErrorKind::PrimaryCrcMissing)));

    let lax = Limits { require_primary_crc: false, ..Limits::default() };
    let ours = Bundle::decode_with(&bytes, &lax).expect("accepted when the CRC requirement is off");
    assert_eq!(ours.primary().crc_type, CrcType::None);
    assert_eq!(ours.payload(), b"hello");
    assert_eq!(ours.hop_count(), Some(HopCount { limit: 32, count: 0 }));
    assert_eq!(ours.to_vec(), bytes);
    assert!(stream_decode(&bytes, &[5], lax).is_ok());
}

/// RFC 9171 §4.2.3: "Bundle processing control flags that are unrecognized MUST be ignored". bp7 decodes a
/// bundle with a reserved bit (here bit 3, 0x08) but its validation rejects it; we accept the bundle and keep
/// the bit.
#[test]
fn bp7_rejects_reserved_bundle_flags() {
    let ours = ours_builder().flags(BundleFlags(0x08)).build().expect("unrecognised flags are ignored");
    let bytes = ours.to_vec();
    let back = Bundle::decode(&bytes).expect("valid");
    assert_eq!(back.primary().flags, BundleFlags(0x08));
    assert_eq!(back.to_vec(), bytes);

    let theirs = bp7::Bundle::try_from(bytes).expect("bp7 decodes it");
    assert_eq!(theirs.primary.bundle_control_flags, 0x08);
    let errs = theirs.validate().expect_err("bp7 treats reserved bundle flags as an error");
    assert!(matches!(&errs[..], [Bp7Error::BundleControlFlagsError(_)]), "{errs:?}");
}

/// RFC 9171 §4.2.4: block flags are an unsigned integer whose bits 7 to 63 are unassigned, and unrecognised
/// flags MUST be ignored. bp7 holds block flags in a `u8`, so a block with bit 8 set does not decode at all,
/// and its validation rejects the reserved bits 3, 5 and 6. We accept both and keep the bits.
#[test]
fn bp7_rejects_unassigned_and_reserved_block_flags() {
    for flags in [0x100u64, 1 << 40, 0x08, 0x20, 0x40] {
        let ours = ours_builder().payload_flags(BlockFlags(flags)).build().expect("unrecognised flags are ignored");
        let bytes = ours.to_vec();
        let back = Bundle::decode(&bytes).expect("valid");
        assert_eq!(back.payload_block().flags(), BlockFlags(flags));
        assert_eq!(back.to_vec(), bytes);

        match bp7::Bundle::try_from(bytes) {
            Ok(theirs) => {
                assert!(flags <= 0xff, "bp7 decoded block flags {flags:#x}, which do not fit its u8");
                let errs = theirs.validate().expect_err("bp7 treats reserved block flags as an error");
                assert!(matches!(&errs[..], [Bp7Error::BlockControlFlagsError(_)]), "{flags:#x}: {errs:?}");
            }
            Err(e) => {
                assert!(flags > 0xff, "bp7 failed to decode block flags {flags:#x}: {e:?}");
                assert!(matches!(e, Bp7Error::CborDecodeError(_)), "{e:?}");
            }
        }
    }
}

/// RFC 9171 §4.4.3: the hop count is an unsigned integer (a bundle that looped past its hop limit has a count
/// above the limit, and a limit of 255 allows counts of 256 and more). bp7 reads both numbers into `u8`, so
/// such a block becomes undecodable data and bp7's validation rejects the bundle. We decode it and report the
/// exceeded limit.
#[test]
fn bp7_cannot_represent_hop_counts_above_255() {
    let mut b = ours_builder().hop_limit(255).build().expect("valid");
    for _ in 0..300 {
        b.increment_hop_count().expect("still valid");
    }
    let bytes = b.to_vec();
    let back = Bundle::decode(&bytes).expect("a hop count above the limit is valid on the wire");
    let hc = back.hop_count().expect("hop count block");
    assert_eq!(hc, HopCount { limit: 255, count: 300 });
    assert!(hc.exceeded());

    let theirs = bp7::Bundle::try_from(bytes).expect("bp7 decodes the bundle");
    let block = theirs.extension_block_by_type(bp7::HOP_COUNT_BLOCK);
    assert!(block.is_some_and(|blk| matches!(blk.data(), CanonicalData::Unknown(_))));
    let errs = theirs.validate().expect_err("bp7 rejects a hop count above 255");
    assert!(matches!(&errs[..], [Bp7Error::CanonicalBlockError(m)] if m.contains("can not be decoded")), "{errs:?}");
}

/// RFC 9171 §4.4.3: "The hop limit MUST be in the range 1 through 255." bp7 builds, encodes and validates a
/// hop count block with limit 0; we refuse it with `HopLimitOutOfRange`.
#[test]
fn bp7_accepts_hop_limit_zero() {
    let src = EndpointID::with_dtn("node1/app").expect("EID");
    let dst = EndpointID::with_ipn(2, 1).expect("EID");
    let mut theirs = bp7::bundle::new_std_payload_bundle(src, dst, b"x".to_vec());
    theirs.canonicals.retain(|c| c.block_type != bp7::HOP_COUNT_BLOCK);
    theirs.add_canonical_block(bp7::new_hop_count_block(0, BlockControlFlags::empty(), 0));
    theirs.set_crc(CRC_32);
    // bp7 fills in CRC values while encoding; validating before that would fail on the CRCs.
    let bytes = theirs.to_cbor();
    assert!(theirs.validate().is_ok(), "bp7 accepts hop limit 0: {:?}", theirs.validate());
    let err = Bundle::decode(&bytes).expect_err("RFC 9171 §4.4.3");
    assert_eq!(err.kind, ErrorKind::HopLimitOutOfRange(0));
}

/// RFC 9171 §4.2.3: an anonymous bundle (source `dtn:none`) MUST have the "must not be fragmented" flag set and
/// MUST NOT request status reports. bp7 checks neither; we refuse both with `AnonymousSourceRules`.
#[test]
fn bp7_does_not_enforce_the_anonymous_source_rules() {
    for (flags, what) in [(0u64, "without must-not-fragment"), (0x04 | 0x2_0000, "requesting delivery reports")] {
        let primary = PrimaryBlockBuilder::default()
            .bundle_control_flags(flags)
            .crc(CrcValue::Crc32Empty)
            .destination(EndpointID::with_ipn(2, 1).expect("EID"))
            .source(EndpointID::none())
            .report_to(EndpointID::none())
            .creation_timestamp(bp7::CreationTimestamp::with_time_and_seq(800_000_000_000, 1))
            .lifetime(Duration::from_secs(60))
            .build()
            .expect("primary block");
        let mut payload = bp7::new_payload_block(BlockControlFlags::empty(), b"x".to_vec());
        payload.set_crc_type(CRC_16);
        let mut theirs = bp7::Bundle::new(primary, vec![payload]);
        let bytes = theirs.to_cbor();
        assert!(theirs.validate().is_ok(), "bp7 accepts an anonymous bundle {what}: {:?}", theirs.validate());
        let err = Bundle::decode(&bytes).expect_err("RFC 9171 §4.2.3");
        assert_eq!(err.kind, ErrorKind::AnonymousSourceRules, "anonymous bundle {what}");
    }
}

/// RFC 9171 §4.2.4: "For each bundle whose bundle processing control flags indicate that the bundle's ADU is
/// an administrative record, or whose source node ID is the null endpoint ID ..., the value of the 'Transmit
/// status report if block can't be processed' flag in every canonical block of the bundle MUST be zero."
///
/// bp7 enforces both halves of this rule. Our codec enforces only the administrative-record half
/// (`AdminRecordBlockReportFlag`): an anonymous bundle whose block asks for such a report is built, encoded
/// and decoded without complaint. This test fails until the codec refuses it; it expects
/// `AnonymousSourceRules`, the error kind for the other anonymous-source rules.
#[test]
fn anonymous_bundles_must_not_ask_for_block_reports() {
    let flag = BlockFlags::REPORT_IF_UNPROCESSABLE;
    // Encoded by the reference encoder, so that the bytes do not depend on our builder accepting them.
    let mut c = Cbor::canonical();
    c.out.push(0x9f);
    let start = c.out.len();
    c.array(9);
    c.uint(7);
    c.uint(BundleFlags::MUST_NOT_FRAGMENT.0);
    c.uint(2);
    c.eid(&Eid::ipn(2, 1));
    c.eid(&Eid::Null);
    c.eid(&Eid::Null);
    c.array(2);
    c.uint(800_000_000_000);
    c.uint(1);
    c.uint(60_000);
    c.crc(CrcType::Crc32c, start);
    c.block(1, 1, flag.0, CrcType::Crc32c, b"x");
    c.out.push(0xff);
    let bytes = c.out;

    let theirs = bp7::Bundle::try_from(bytes.clone()).expect("bp7 decodes it");
    let errs = theirs.validate().expect_err("bp7 refuses it (RFC 9171 §4.2.4)");
    assert!(matches!(&errs[..], [Bp7Error::BundleError(m)] if m.contains("source node is omitted")), "{errs:?}");

    let slice = Bundle::decode(&bytes).map(|_| ()).map_err(|e| e.kind);
    assert_eq!(slice, Err(ErrorKind::AnonymousSourceRules), "slice decoder");
    let stream = stream_decode(&bytes, &[4], Limits::default()).map(|_| ()).map_err(|f| f.kind);
    assert_eq!(stream, Err(Some(ErrorKind::AnonymousSourceRules)), "stream decoder");
    let built = BundleBuilder::new(Eid::Null, Eid::ipn(2, 1))
        .creation(CreationTimestamp::new(800_000_000_000, 1))
        .payload_flags(flag)
        .payload(b"x".to_vec())
        .build()
        .map(|_| ())
        .map_err(|e| e.kind);
    assert_eq!(built, Err(ErrorKind::AnonymousSourceRules), "builder");
}

/// RFC 9171 §4.1: "Each bundle SHALL be ... represented as a CBOR indefinite-length array." bp7 also decodes a
/// bundle sent as a definite-length array; we refuse it with `NotIndefiniteArray` (§4.1 allows, but does not
/// require, accepting and transforming such input).
#[test]
fn bp7_accepts_a_definite_length_bundle_array() {
    let bytes = ours_builder().build().expect("valid").to_vec();
    assert_eq!((bytes[0], bytes[bytes.len() - 1]), (0x9f, 0xff));
    let mut definite = vec![0x82];
    definite.extend_from_slice(&bytes[1..bytes.len() - 1]);

    let theirs = bp7::Bundle::try_from(definite.clone()).expect("bp7 decodes a definite-length bundle");
    assert!(theirs.validate().is_ok());
    assert_eq!(theirs.payload().map(|p| &p[..]), Some(&b"payload"[..]));
    assert_eq!(Bundle::decode(&definite).expect_err("RFC 9171 §4.1").kind, ErrorKind::NotIndefiniteArray);
}

/// RFC 9171 §4.2.5.1.1: `demux = *VCHAR` and the node name is a URI reg-name, so a dtn EID has no spaces. bp7
/// only checks for the leading "//" and a non-empty node name, and encodes `dtn://node/with space`; we refuse
/// the bundle with `BadDtnSsp` for the destination.
#[test]
fn bp7_accepts_dtn_eids_with_spaces() {
    let dst = EndpointID::with_dtn("node/with space").expect("bp7 accepts the EID");
    let mut theirs = bp7::bundle::new_std_payload_bundle(EndpointID::with_ipn(1, 1).expect("EID"), dst, vec![1]);
    theirs.set_crc(CRC_32);
    let bytes = theirs.to_cbor();
    assert!(theirs.validate().is_ok(), "{:?}", theirs.validate());
    let err = Bundle::decode(&bytes).expect_err("RFC 9171 §4.2.5.1.1");
    assert!(
        matches!(&err.kind, ErrorKind::Eid { field: "destination EID", source: EidError::BadDtnSsp(s) } if s == "//node/with space"),
        "{err:?}"
    );
    assert!("dtn://node/with space".parse::<Eid>().is_err());
}

/// An encoded one-byte bundle from `ipn:1.1` to `destination`.
fn small_bundle_to(destination: Eid) -> Vec<u8> {
    BundleBuilder::new("ipn:1.1".parse().expect("EID"), destination)
        .creation(CreationTimestamp::new(800_000_000_000, 7))
        .payload(b"x".to_vec())
        .build()
        .expect("valid")
        .to_vec()
}

/// RFC 9758's three-element ipn form (`ipn:allocator.node.service`, an array of three numbers) is newer than
/// bp7 0.12, which only knows the two-element form and fails to decode the bundle. We decode it and keep the
/// form, so that re-encoding reproduces the bytes. (Not an RFC 9171 deviation; it limits the generated cases.)
#[test]
fn bp7_does_not_know_the_three_element_ipn_form() {
    let three = Eid::Ipn(IpnEid { fqnn: (977 << 32) | 5, service: 1, form: IpnForm::ThreeElement });
    let bytes = small_bundle_to(three.clone());
    let back = Bundle::decode(&bytes).expect("valid");
    assert_eq!(back.primary().destination.to_string(), "ipn:977.5.1");
    assert_eq!(back.to_vec(), bytes);
    assert!(bp7::Bundle::try_from(bytes).is_err(), "bp7 0.12 cannot decode the three-element form");
}

/// bp7 rewrites a received `ipn:0.n` (node number 0, service n ≠ 0) to `ipn:0.0` while decoding. The bundle it
/// holds then differs from the one received: its CRC no longer matches bp7's re-encoding, so bp7's validation
/// fails, and a bundle without CRC would be forwarded with another destination. We keep the EID as received.
#[test]
fn bp7_rewrites_ipn_node_zero() {
    let bytes = small_bundle_to(Eid::ipn(0, 5));
    let back = Bundle::decode(&bytes).expect("valid");
    assert_eq!(back.primary().destination.to_string(), "ipn:0.5");
    assert_eq!(back.to_vec(), bytes);

    let mut theirs = bp7::Bundle::try_from(bytes.clone()).expect("bp7 decodes it");
    assert_eq!(theirs.primary.destination.to_string(), "ipn:0.0");
    let errs = theirs.validate().expect_err("the primary CRC no longer matches");
    assert!(matches!(&errs[..], [Bp7Error::PrimaryBlockError(m)] if m.contains("CRC")), "{errs:?}");
    assert_ne!(theirs.to_cbor(), bytes);
}

/// A smoke check of the mapping between the two CRC type codes, so the generated cases test what they claim.
#[test]
fn crc_type_codes_agree() {
    for (ours, theirs) in [(CrcType::None, CRC_NO), (CrcType::Crc16, CRC_16), (CrcType::Crc32c, CRC_32)] {
        assert_eq!(ours.code(), theirs);
        assert_eq!(bp7_crc(ours).to_code(), theirs);
    }
    assert_eq!(BlockType::HOP_COUNT.0, bp7::HOP_COUNT_BLOCK);
    assert_eq!(BlockType::BUNDLE_AGE.0, bp7::BUNDLE_AGE_BLOCK);
    assert_eq!(BlockType::PREVIOUS_NODE.0, bp7::PREVIOUS_NODE_BLOCK);
}
