//! One crafted bundle per RFC 9171 rule a receiver can check, asserting the specific error from both the
//! slice decoder and the streaming decoder. Bundles are assembled by hand here (not with the crate's own
//! encoder) so that each one breaks exactly one rule while every CRC is still correct.

use dtn_core::bpv7::*;

// ---------- a tiny independent CBOR assembler ----------

fn head(major: u8, arg: u64) -> Vec<u8> {
    let m = major << 5;
    match arg {
        0..=23 => vec![m | arg as u8],
        24..=0xff => vec![m | 24, arg as u8],
        0x100..=0xffff => [&[m | 25][..], &(arg as u16).to_be_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[m | 26][..], &(arg as u32).to_be_bytes()].concat(),
        _ => [&[m | 27][..], &arg.to_be_bytes()].concat(),
    }
}
fn uint(v: u64) -> Vec<u8> {
    head(0, v)
}
fn arr(n: u64) -> Vec<u8> {
    head(4, n)
}
fn bstr(d: &[u8]) -> Vec<u8> {
    [head(2, d.len() as u64), d.to_vec()].concat()
}
fn text(s: &[u8]) -> Vec<u8> {
    [head(3, s.len() as u64), s.to_vec()].concat()
}
fn dtn(ssp: &str) -> Vec<u8> {
    [arr(2), uint(1), text(ssp.as_bytes())].concat()
}
fn ipn(n: u64, s: u64) -> Vec<u8> {
    [arr(2), uint(2), arr(2), uint(n), uint(s)].concat()
}
fn none() -> Vec<u8> {
    [arr(2), uint(1), uint(0)].concat()
}

/// Appends the CRC field for `crc` (0, 1, 2) to `items` (a block's encoding so far) and fills in the value.
fn seal(mut enc: Vec<u8>, crc: u8) -> Vec<u8> {
    let ty = match crc {
        1 => CrcType::Crc16,
        2 => CrcType::Crc32c,
        _ => return enc,
    };
    let n = ty.value_len();
    enc.extend(head(2, n as u64));
    let mut st = CrcState::new(ty);
    st.update(&enc);
    let v = st.finish_with_zeroed_field(ty);
    enc.extend_from_slice(&v.to_be_bytes()[4 - n..]);
    enc
}

#[derive(Clone)]
struct P {
    items: Option<u64>,
    version: u64,
    flags: u64,
    crc: u8,
    dest: Vec<u8>,
    src: Vec<u8>,
    report: Vec<u8>,
    ts: Vec<u8>,
    lifetime: u64,
    frag: Option<(u64, u64)>,
}

impl Default for P {
    fn default() -> Self {
        P {
            items: None,
            version: 7,
            flags: 0,
            crc: 2,
            dest: dtn("//collector/~data"),
            src: dtn("//station-1/"),
            report: none(),
            ts: [arr(2), uint(800_000_000_000), uint(3)].concat(),
            lifetime: 3_600_000,
            frag: None,
        }
    }
}

fn primary(p: &P) -> Vec<u8> {
    let n = p.items.unwrap_or(8 + 2 * u64::from(p.frag.is_some()) + u64::from(p.crc != 0));
    let mut e = [arr(n), uint(p.version), uint(p.flags), uint(u64::from(p.crc))].concat();
    e.extend([p.dest.clone(), p.src.clone(), p.report.clone(), p.ts.clone(), uint(p.lifetime)].concat());
    if let Some((o, t)) = p.frag {
        e.extend([uint(o), uint(t)].concat());
    }
    seal(e, p.crc)
}

fn block(ty: u64, num: u64, flags: u64, crc: u8, data: &[u8]) -> Vec<u8> {
    let items = 5 + u64::from(crc != 0);
    seal([arr(items), uint(ty), uint(num), uint(flags), uint(u64::from(crc)), bstr(data)].concat(), crc)
}

fn payload(data: &[u8]) -> Vec<u8> {
    block(1, 1, 0, 2, data)
}

fn bundle(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![0x9f];
    for p in parts {
        v.extend_from_slice(p);
    }
    v.push(0xff);
    v
}

fn ok_bundle() -> Vec<u8> {
    bundle(&[primary(&P::default()), payload(b"21.5C")])
}

/// Decodes with both decoders and returns the error kind, asserting they agree.
fn rule_broken_with(bytes: &[u8], limits: Limits) -> ErrorKind {
    let slice = Bundle::decode_with(bytes, &limits).expect_err("slice decoder accepted an invalid bundle");
    let mut dec = StreamDecoder::new(limits);
    let mut sink = Vec::new();
    let mut stream_err = None;
    for chunk in bytes.chunks(7) {
        match dec.feed(chunk, &mut sink) {
            Ok(f) if f.done && f.consumed < chunk.len() => {
                stream_err = Some(ErrorKind::TrailingBytes(0));
                break;
            }
            Ok(_) => {}
            Err(StreamError::Decode(e)) => {
                stream_err = Some(e.kind);
                break;
            }
            Err(e) => panic!("sink error {e}"),
        }
    }
    let stream_err = stream_err.or_else(|| dec.finish().err().map(|e| e.kind));
    match (&slice.kind, &stream_err) {
        // The stream decoder sees a concatenation, so extra bytes are the next bundle's business.
        (ErrorKind::TrailingBytes(_), Some(ErrorKind::TrailingBytes(_))) => {}
        (a, Some(b)) => assert_eq!(a, b, "slice and stream decoders disagree"),
        (a, None) => panic!("stream decoder accepted what the slice decoder rejected with {a}"),
    }
    slice.kind
}

fn rule_broken(bytes: &[u8]) -> ErrorKind {
    rule_broken_with(bytes, Limits::default())
}

#[test]
fn the_reference_bundle_is_valid() {
    let b = ok_bundle();
    let d = Bundle::decode(&b).expect("valid");
    assert_eq!(d.payload(), b"21.5C");
    assert_eq!(d.to_vec(), b);
}

#[test]
fn version_must_be_7() {
    let b = bundle(&[primary(&P { version: 6, ..P::default() }), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::UnsupportedVersion(6));
}

#[test]
fn primary_crc_mismatch() {
    let mut b = ok_bundle();
    b[10] ^= 0x01; // inside the destination EID text
    assert!(matches!(rule_broken(&b), ErrorKind::CrcMismatch { block: 0, .. }));
}

#[test]
fn payload_crc_mismatch_both_crc_types() {
    for crc in [1, 2] {
        let p = block(1, 1, 0, crc, b"0123456789");
        let mut b = bundle(&[primary(&P::default()), p]);
        let at = b.len() - 8;
        b[at] ^= 0x40;
        assert!(matches!(rule_broken(&b), ErrorKind::CrcMismatch { block: 1, .. }), "crc type {crc}");
    }
}

#[test]
fn primary_without_crc_needs_a_bib_covering_it() {
    let no_crc = P { crc: 0, ..P::default() };
    let b = bundle(&[primary(&no_crc), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::PrimaryCrcMissing);
    // A BIB whose target list names block 0 makes it acceptable (RFC 9171 §4.3.1).
    let asb_targets_0 = [arr(1), uint(0), uint(1), uint(0)].concat();
    let b = bundle(&[primary(&no_crc), block(11, 2, 0, 2, &asb_targets_0), payload(b"x")]);
    Bundle::decode(&b).expect("primary covered by a BIB");
    // A BIB covering only the payload does not.
    let asb_targets_1 = [arr(1), uint(1), uint(1), uint(0)].concat();
    let b = bundle(&[primary(&no_crc), block(11, 2, 0, 2, &asb_targets_1), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::PrimaryCrcMissing);
    // And the check can be relaxed by configuration for lax peers.
    let b = bundle(&[primary(&no_crc), payload(b"x")]);
    let lax = Limits { require_primary_crc: false, ..Limits::default() };
    Bundle::decode_with(&b, &lax).expect("relaxed");
}

#[test]
fn duplicate_block_numbers() {
    let b = bundle(&[primary(&P::default()), block(200, 2, 0, 0, b""), block(201, 2, 0, 0, b""), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::DuplicateBlockNumber(2));
}

#[test]
fn payload_missing() {
    let b = bundle(&[primary(&P::default()), block(200, 2, 0, 0, b"")]);
    assert_eq!(rule_broken(&b), ErrorKind::MissingPayload);
    let b = bundle(&[primary(&P::default())]);
    assert_eq!(rule_broken(&b), ErrorKind::NoCanonicalBlocks);
}

#[test]
fn payload_not_last() {
    let b = bundle(&[primary(&P::default()), payload(b"x"), block(200, 2, 0, 0, b"")]);
    assert_eq!(rule_broken(&b), ErrorKind::PayloadNotLast);
}

#[test]
fn at_most_one_previous_node_age_and_hop_count() {
    let cases = [
        (6, dtn("//a/"), "previous-node"),
        (7, uint(5), "bundle-age"),
        (10, [arr(2), uint(9), uint(0)].concat(), "hop-count"),
    ];
    for (ty, data, name) in cases {
        let b = bundle(&[primary(&P::default()), block(ty, 2, 0, 0, &data), block(ty, 3, 0, 0, &data), payload(b"x")]);
        assert_eq!(rule_broken(&b), ErrorKind::DuplicateExtensionBlock(name));
    }
}

#[test]
fn hop_limit_between_1_and_255() {
    for limit in [0u64, 256, 70_000] {
        let hc = [arr(2), uint(limit), uint(0)].concat();
        let b = bundle(&[primary(&P::default()), block(10, 2, 0, 0, &hc), payload(b"x")]);
        assert_eq!(rule_broken(&b), ErrorKind::HopLimitOutOfRange(limit));
    }
    for limit in [1u64, 255] {
        let hc = [arr(2), uint(limit), uint(0)].concat();
        let b = bundle(&[primary(&P::default()), block(10, 2, 0, 0, &hc), payload(b"x")]);
        assert_eq!(Bundle::decode(&b).expect("limit in range").hop_count().map(|h| h.limit), Some(limit));
    }
}

#[test]
fn fragment_fields_present_exactly_when_flag_set() {
    // Flag set, fields missing.
    let p = P { flags: 0x01, items: Some(9), ..P::default() };
    let b = bundle(&[primary(&p), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::PrimaryFieldsMismatch { fragment: true, .. }));
    // Fields present, flag clear.
    let p = P { frag: Some((0, 10)), ..P::default() };
    let b = bundle(&[primary(&p), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::PrimaryFieldsMismatch { fragment: false, .. }));
    // Both: valid.
    let p = P { flags: 0x01, frag: Some((4, 10)), ..P::default() };
    let d = Bundle::decode(&bundle(&[primary(&p), payload(b"xy")])).expect("valid fragment").id();
    assert_eq!(d.fragment, Some((4, 2)));
}

#[test]
fn fragment_must_fit_in_the_adu() {
    let p = P { flags: 0x01, frag: Some((9, 10)), ..P::default() };
    let b = bundle(&[primary(&p), payload(b"xy")]);
    assert_eq!(rule_broken(&b), ErrorKind::FragmentBeyondAdu { offset: 9, len: 2, total: 10 });
}

#[test]
fn creation_time_zero_requires_bundle_age() {
    let p = P { ts: [arr(2), uint(0), uint(0)].concat(), ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::MissingBundleAge);
    let b = bundle(&[primary(&p), block(7, 2, 0, 0, &uint(1234)), payload(b"x")]);
    assert_eq!(Bundle::decode(&b).expect("age present").bundle_age_ms(), Some(1234));
}

#[test]
fn admin_records_request_no_reports() {
    for report_flag in [0x4000u64, 0x1_0000, 0x2_0000, 0x4_0000] {
        let p = P { flags: 0x02 | report_flag, ..P::default() };
        assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::AdminRecordRequestsReports);
    }
    let p = P { flags: 0x02, ..P::default() };
    let b = bundle(&[primary(&p), block(200, 2, 0x02, 0, b""), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::AdminRecordBlockReportFlag(2));
    let b = bundle(&[primary(&p), block(1, 1, 0x02, 2, b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::AdminRecordBlockReportFlag(1));
}

#[test]
fn anonymous_source_rules() {
    let p = P { src: none(), ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::AnonymousSourceRules);
    let p = P { src: none(), flags: 0x04 | 0x2_0000, ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::AnonymousSourceRules);
    let p = P { src: none(), flags: 0x04, ..P::default() };
    Bundle::decode(&bundle(&[primary(&p), payload(b"x")])).expect("anonymous, unfragmentable");
}

#[test]
fn trailing_bytes() {
    let mut b = ok_bundle();
    b.extend_from_slice(&[0, 0, 0]);
    let e = Bundle::decode(&b).expect_err("trailing");
    assert_eq!(e.kind, ErrorKind::TrailingBytes(3));
    assert_eq!(e.offset, b.len() - 3);
    // decode_prefix is how a stream of bundles is walked.
    let (_, used) = Bundle::decode_prefix(&b, &Limits::default()).expect("prefix");
    assert_eq!(used, b.len() - 3);
}

#[test]
fn size_limits() {
    let big = bundle(&[primary(&P::default()), payload(&[7u8; 5000])]);
    let small = Limits { max_bundle_len: 1000, ..Limits::default() };
    assert!(matches!(rule_broken_with(&big, small), ErrorKind::BundleTooLarge { limit: 1000, .. }));

    let ext = block(200, 2, 0, 0, &[1u8; 3000]);
    let b = bundle(&[primary(&P::default()), ext, payload(b"x")]);
    let hdr = Limits { max_header_len: 1024, ..Limits::default() };
    assert_eq!(rule_broken_with(&b, hdr), ErrorKind::HeaderTooLarge(1024));

    let mut parts = vec![primary(&P::default())];
    for n in 2..10 {
        parts.push(block(200, n, 0, 0, b""));
    }
    parts.push(payload(b"x"));
    let few = Limits { max_blocks: 4, ..Limits::default() };
    assert_eq!(rule_broken_with(&bundle(&parts), few), ErrorKind::TooManyBlocks(4));

    let long = format!("//{}/", "n".repeat(300));
    let b = bundle(&[primary(&P { dest: dtn(&long), ..P::default() }), payload(b"x")]);
    let short = Limits { max_eid_len: 100, ..Limits::default() };
    assert!(matches!(rule_broken_with(&b, short), ErrorKind::Eid { source: EidError::TooLong(100), .. }));
}

#[test]
fn length_fields_never_drive_allocation() {
    // A payload claiming 2^62 bytes is refused from its head alone, by both decoders, before anything is
    // buffered or reserved.
    let mut b = vec![0x9f];
    b.extend(primary(&P::default()));
    b.extend([arr(6), uint(1), uint(1), uint(0), uint(2)].concat());
    b.extend(head(2, 1 << 62));
    b.extend([1, 2, 3]);
    assert!(matches!(rule_broken(&b), ErrorKind::BundleTooLarge { limit: 4_294_967_296, .. }));
    // Within the limit but beyond the input: the slice decoder reports truncation without reserving the
    // announced size; the stream decoder waits for bytes (bounded memory) and reports it at the end.
    let mut b = vec![0x9f];
    b.extend(primary(&P::default()));
    b.extend([arr(6), uint(1), uint(1), uint(0), uint(2)].concat());
    b.extend(head(2, 1 << 31));
    b.extend([1, 2, 3]);
    assert_eq!(rule_broken(&b), ErrorKind::Truncated);
}

#[test]
fn bundle_must_be_an_indefinite_array() {
    let mut b = ok_bundle();
    b[0] = 0x82;
    b.pop();
    assert_eq!(rule_broken(&b), ErrorKind::NotIndefiniteArray);
    assert!(matches!(rule_broken(&[0x01, 0x02]), ErrorKind::UnexpectedCbor { .. }));
}

#[test]
fn block_numbering_rules() {
    assert_eq!(
        rule_broken(&bundle(&[primary(&P::default()), block(200, 0, 0, 0, b""), payload(b"x")])),
        ErrorKind::BlockNumberZero
    );
    assert_eq!(
        rule_broken(&bundle(&[primary(&P::default()), block(1, 2, 0, 0, b"x")])),
        ErrorKind::PayloadBlockNumber(2)
    );
    assert_eq!(
        rule_broken(&bundle(&[primary(&P::default()), block(200, 1, 0, 0, b""), payload(b"x")])),
        ErrorKind::NumberOneNotPayload(200)
    );
    assert_eq!(
        rule_broken(&bundle(&[primary(&P::default()), block(0, 2, 0, 0, b""), payload(b"x")])),
        ErrorKind::ReservedBlockType
    );
}

#[test]
fn crc_type_and_field_shape() {
    let p = P { crc: 0, items: Some(9), ..P::default() };
    let mut e = primary(&p);
    // Patch the CRC type item (fourth byte: array, version, flags, crc type) to 3.
    e[3] = 0x03;
    e.extend([0x41, 0x00]);
    assert_eq!(rule_broken(&bundle(&[e, payload(b"x")])), ErrorKind::UnknownCrcType(3));

    // A CRC-32C field encoded as a 2-byte string.
    let mut e = [arr(6), uint(1), uint(1), uint(0), uint(2), bstr(b"x")].concat();
    e.extend([0x42, 0, 0]);
    assert_eq!(rule_broken(&bundle(&[primary(&P::default()), e])), ErrorKind::CrcFieldMalformed { block: 1, len: 4 });
}

#[test]
fn block_array_shapes() {
    let e = [arr(7), uint(200), uint(2), uint(0), uint(0), bstr(b""), uint(0), uint(0)].concat();
    assert_eq!(rule_broken(&bundle(&[primary(&P::default()), e, payload(b"x")])), ErrorKind::CanonicalBlockLength(7));
    let e = [arr(6), uint(200), uint(2), uint(0), uint(0), bstr(b""), uint(0)].concat();
    assert!(matches!(
        rule_broken(&bundle(&[primary(&P::default()), e, payload(b"x")])),
        ErrorKind::CanonicalFieldsMismatch { block: 2, items: 6, crc_type: 0 }
    ));
    let p = P { items: Some(12), ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::PrimaryBlockLength(12));
    // Indefinite-length (chunked) byte string as block data.
    let e = [arr(5), uint(1), uint(1), uint(0), uint(0), vec![0x5f, 0x41, b'x', 0xff]].concat();
    assert!(matches!(rule_broken(&bundle(&[primary(&P::default()), e])), ErrorKind::UnexpectedCbor { .. }));
}

#[test]
fn endpoint_id_rules() {
    // Scheme code 0 is reserved; other unknown schemes are carried as received (RFC 9171 §4.2.5.1).
    let reserved_scheme = [arr(2), uint(0), uint(0)].concat();
    let b = bundle(&[primary(&P { dest: reserved_scheme, ..P::default() }), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::Eid { field: "destination EID", source: EidError::UnknownScheme(0) }));
    let unknown_scheme = [arr(2), uint(3), text(b"whatever")].concat();
    let b = bundle(&[primary(&P { dest: unknown_scheme, ..P::default() }), payload(b"x")]);
    let d = Bundle::decode(&b).expect("unknown schemes are forwarded");
    assert!(matches!(&d.primary().destination, Eid::Unknown(u) if u.scheme == 3));
    assert_eq!(d.to_vec(), b);

    let b = bundle(&[primary(&P { src: dtn("station"), ..P::default() }), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::Eid { field: "source node ID", source: EidError::BadDtnSsp(_) }));

    let b = bundle(&[primary(&P { report: [arr(2), uint(1), uint(5)].concat(), ..P::default() }), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::Eid { source: EidError::BadDtnNone(5), .. }));

    let ipn4 = [arr(2), uint(2), arr(4), uint(1), uint(2), uint(3), uint(4)].concat();
    let b = bundle(&[primary(&P { dest: ipn4, ..P::default() }), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::Eid { source: EidError::BadIpnShape, .. }));

    let ipn3_big = [arr(2), uint(2), arr(3), uint(1 << 33), uint(2), uint(3)].concat();
    let b = bundle(&[primary(&P { dest: ipn3_big, ..P::default() }), payload(b"x")]);
    assert!(matches!(rule_broken(&b), ErrorKind::Eid { source: EidError::IpnComponentTooLarge, .. }));

    let bad_utf8 = [arr(2), uint(1), text(&[b'/', b'/', 0xff, b'/'])].concat();
    let b = bundle(&[primary(&P { dest: bad_utf8, ..P::default() }), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::InvalidUtf8);

    let b = bundle(&[primary(&P { dest: ipn(977, 1), ..P::default() }), payload(b"x")]);
    assert_eq!(Bundle::decode(&b).expect("ipn").primary().destination.to_string(), "ipn:977.1");
}

#[test]
fn creation_timestamp_shape() {
    let p = P { ts: [arr(3), uint(1), uint(2), uint(3)].concat(), ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::BadCreationTimestamp);
    let p = P { ts: uint(5), ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::BadCreationTimestamp);
}

#[test]
fn known_extension_blocks_must_be_well_formed() {
    let cases: [(u64, Vec<u8>, &str); 4] = [
        (7, text(b"old"), "bundle-age"),
        (7, [uint(5), uint(6)].concat(), "bundle-age"),
        (10, [arr(3), uint(9), uint(0), uint(0)].concat(), "hop-count"),
        (6, uint(4), "previous-node"),
    ];
    for (ty, data, what) in cases {
        let b = bundle(&[primary(&P::default()), block(ty, 2, 0, 0, &data), payload(b"x")]);
        assert_eq!(rule_broken(&b), ErrorKind::MalformedExtensionData { block: 2, what });
    }
}

#[test]
fn truncation_anywhere_is_reported_as_truncation() {
    let b =
        bundle(&[primary(&P::default()), block(10, 2, 0, 1, &[arr(2), uint(9), uint(0)].concat()), payload(b"abcdef")]);
    for cut in 0..b.len() {
        let e = Bundle::decode(&b[..cut]).expect_err("truncated");
        assert_eq!(e.kind, ErrorKind::Truncated, "cut at {cut}");
        let mut dec = StreamDecoder::new(Limits::default());
        dec.feed(&b[..cut], &mut Vec::new()).expect("a prefix is not an error for the stream decoder");
        if cut > 0 {
            assert_eq!(dec.finish().expect_err("unfinished").kind, ErrorKind::Truncated);
        }
    }
}

#[test]
fn errors_point_at_the_offending_byte() {
    let mut b = ok_bundle();
    // Replace the version (byte 2: after 0x9f and the array head) with 6.
    assert_eq!(b[2], 7);
    b[2] = 6;
    let e = Bundle::decode(&b).expect_err("version");
    assert_eq!(e.offset, 2);
    assert!(e.to_string().starts_with("byte 2: unsupported bundle protocol version 6"), "{e}");
}

#[test]
fn unknown_blocks_are_handled_per_their_flags() {
    let b = bundle(&[
        primary(&P::default()),
        block(200, 2, 0x10, 0, b"discard me"),
        block(201, 3, 0x02, 0, b"report me"),
        block(202, 4, 0x00, 0, b"keep me"),
        payload(b"x"),
    ]);
    let mut d = Bundle::decode(&b).expect("valid").into_owned();
    let u = d.unprocessable_blocks(|_| false);
    assert_eq!(u, UnprocessableBlocks { delete_bundle: false, report: true, discard: vec![2] });
    // A node that understands type 200 keeps it.
    assert!(d.unprocessable_blocks(|t| t.0 == 200).discard.is_empty());
    d.remove_block(2).expect("removed");
    let reencoded = d.to_vec();
    let again = Bundle::decode(&reencoded).expect("still valid");
    assert_eq!(again.extension_blocks().len(), 2);
    // Unknown blocks we keep are re-emitted byte for byte.
    assert_eq!(again.block(4).expect("kept").encoded(), &block(202, 4, 0, 0, b"keep me")[..]);

    let b = bundle(&[primary(&P::default()), block(203, 2, 0x04 | 0x10, 0, b""), payload(b"x")]);
    assert!(Bundle::decode(&b).expect("valid").unprocessable_blocks(|_| false).delete_bundle);
}

#[test]
fn forwarding_updates_keep_the_bundle_valid() {
    let hc = [arr(2), uint(2), uint(1)].concat();
    let b = bundle(&[primary(&P::default()), block(10, 5, 0, 1, &hc), payload(b"obs")]);
    let mut d = Bundle::decode(&b).expect("valid").into_owned();
    let me: Eid = "dtn://relay-7/".parse().expect("eid");
    d.set_previous_node(&me).expect("prev");
    d.set_bundle_age_ms(4200).expect("age");
    assert_eq!(d.increment_hop_count().expect("hop"), Some(HopCount { limit: 2, count: 2 }));
    let out = d.to_vec();
    let again = Bundle::decode(&out).expect("forwarded bundle valid");
    assert_eq!(again.previous_node(), Some(&me));
    assert_eq!(again.bundle_age_ms(), Some(4200));
    assert!(!again.hop_count().expect("hc").exceeded());
    // The primary block is immutable in transit: its bytes are untouched.
    assert_eq!(again.primary_encoded(), d.primary_encoded());
    assert_eq!(&out[1..1 + again.primary_encoded().len()], &b[1..1 + again.primary_encoded().len()]);
    // New blocks get fresh numbers; the hop-count block keeps number 5 and its CRC type.
    let hop = again.blocks().iter().find(|b| b.block_type() == BlockType::HOP_COUNT).expect("hop");
    assert_eq!((hop.number(), hop.crc_type()), (5, CrcType::Crc16));
    let mut d2 = again.into_owned();
    d2.increment_hop_count().expect("hop");
    assert!(d2.hop_count().expect("hc").exceeded());
}

/// Wraps the items of a block (all but its CRC value) as an indefinite-length array and seals it, with the
/// CRC computed over the whole block including the closing break (RFC 9171 §4.3.1, §4.3.2).
fn seal_indefinite(items: Vec<u8>, crc: u8) -> Vec<u8> {
    let mut enc = [vec![0x9f], items].concat();
    let ty = match crc {
        1 => CrcType::Crc16,
        2 => CrcType::Crc32c,
        _ => {
            enc.push(0xff);
            return enc;
        }
    };
    let n = ty.value_len();
    enc.extend(head(2, n as u64));
    let value_at = enc.len();
    enc.extend(std::iter::repeat_n(0, n));
    enc.push(0xff);
    let mut st = CrcState::new(ty);
    st.update(&enc);
    let v = st.finish();
    enc[value_at..value_at + n].copy_from_slice(&v.to_be_bytes()[4 - n..]);
    enc
}

#[test]
fn indefinite_length_blocks_and_items_are_accepted() {
    // RFC 9171 §4.1 does not prohibit indefinite-length items inside blocks; only block data and the CRC
    // field must be definite. Primary block, EID, creation timestamp and blocks all indefinite here.
    let dest = [vec![0x9f], uint(2), vec![0x9f], uint(9), uint(1), vec![0xff, 0xff]].concat();
    let ts = [vec![0x9f], uint(800_000_000_000), uint(3), vec![0xff]].concat();
    let prim = [uint(7), uint(0), uint(2), dest, dtn("//station-1/"), none(), ts, uint(3_600_000)].concat();
    for crc in [0u8, 1, 2] {
        let hop =
            seal_indefinite([uint(10), uint(2), uint(0), uint(u64::from(crc)), bstr(&[0x82, 5, 0])].concat(), crc);
        let pay = seal_indefinite([uint(1), uint(1), uint(0), uint(u64::from(crc)), bstr(b"0123456789")].concat(), crc);
        let b = bundle(&[seal_indefinite(prim.clone(), 2), hop, pay]);
        let d = Bundle::decode(&b).expect("indefinite-length items are valid");
        assert_eq!(d.primary().destination.to_string(), "ipn:9.1");
        assert_eq!(d.hop_count().map(|h| h.limit), Some(5));
        assert_eq!(d.payload(), b"0123456789");
        assert_eq!(d.to_vec(), b, "re-encoding keeps the received form");
        // The streaming decoder, byte by byte, agrees, and its encoder reproduces the bundle.
        let mut dec = StreamDecoder::new(Limits::default());
        let mut sink = Vec::new();
        for byte in &b {
            dec.feed(std::slice::from_ref(byte), &mut sink).expect("stream accepts it");
        }
        assert_eq!(sink, b"0123456789");
        let header = dec.take_header().expect("done");
        let mut out = Vec::new();
        StreamEncoder::encode(&header, &sink[..], &mut out).expect("encode");
        assert_eq!(out, b);
        assert_eq!(header.into_bundle(&sink, &Limits::default()).expect("joins").to_vec(), b);
        // A corrupted CRC on the indefinite payload block is still caught by both decoders.
        if crc != 0 {
            let mut bad = b.clone();
            let at = bad.len() - 4;
            bad[at] ^= 1;
            assert!(matches!(rule_broken(&bad), ErrorKind::CrcMismatch { block: 1, .. }));
        }
    }
    // An indefinite block with an item too many.
    let extra = seal_indefinite([uint(1), uint(1), uint(0), uint(0), bstr(b"x"), uint(0)].concat(), 0);
    let b = bundle(&[primary(&P::default()), extra]);
    assert!(matches!(rule_broken(&b), ErrorKind::CanonicalFieldsMismatch { block: 1, .. }));
}

#[test]
fn local_node_eids_never_arrive_from_elsewhere() {
    let local = [arr(2), uint(2), arr(2), uint(0xffff_ffff), uint(3)].concat();
    let b = bundle(&[primary(&P { dest: local.clone(), ..P::default() }), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::LocalNodeEid("destination"));
    let b = bundle(&[primary(&P { src: local, ..P::default() }), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::LocalNodeEid("source"));
}

#[test]
fn ipn_null_source_is_anonymous() {
    // RFC 9758 §5.2: ipn:0.0 is the null endpoint, so the anonymous-source rules apply to it too.
    let p = P { src: ipn(0, 0), ..P::default() };
    assert_eq!(rule_broken(&bundle(&[primary(&p), payload(b"x")])), ErrorKind::AnonymousSourceRules);
    let p = P { src: ipn(0, 0), flags: 0x04, ..P::default() };
    Bundle::decode(&bundle(&[primary(&p), payload(b"x")])).expect("anonymous, unfragmentable");
    // ... and no block of an anonymous bundle may ask for a report (RFC 9171 §4.2.4).
    let b = bundle(&[primary(&p), block(200, 2, 0x02, 0, b""), payload(b"x")]);
    assert_eq!(rule_broken(&b), ErrorKind::AnonymousSourceRules);
}

#[test]
fn a_bcb_is_never_discarded() {
    // RFC 9172 §3.8 forbids the discard flag on a BCB; if one carries it anyway, dropping the BCB would leave
    // its target encrypted for good, so it is kept.
    let b =
        bundle(&[primary(&P::default()), block(12, 2, 0x10, 0, b"opaque"), block(200, 3, 0x10, 0, b""), payload(b"x")]);
    let d = Bundle::decode(&b).expect("valid");
    assert_eq!(d.unprocessable_blocks(|_| false).discard, vec![3]);
}
