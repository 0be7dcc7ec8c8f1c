//! Invariants checked by the fuzz targets.
//!
//! `dtn-core/tests/fuzz_regressions.rs` includes this file with `#[path]`, so a saved fuzzer input is
//! re-checked against exactly the invariants that flagged it, on stable and without libFuzzer. Keep it free
//! of dependencies other than `dtn_core` and `std` for that reason.
//!
//! Every function accepts arbitrary bytes. Errors returned by the codec are expected; a panic (an assertion
//! below, or one inside the codec) is a finding.

use dtn_core::bpv7::admin::AdminRecord;
use dtn_core::bpv7::{
    Bundle, BundleBuilder, BundleHeader, CreationTimestamp, DecodeError, Eid, ErrorKind, Limits, StreamDecoder,
    StreamEncoder, StreamError,
};

/// Chunk sizes for feeding an input to the stream decoder, derived from the input itself so that a saved
/// input alone reproduces a failure.
///
/// The seed hashes the whole input rather than taking its first byte: every decodable bundle starts with
/// 0x9f, so the first byte would give all the interesting inputs the same chunking.
pub fn chunk_plan(data: &[u8]) -> impl Iterator<Item = usize> + use<> {
    // FNV-1a: any change to the input, including a payload byte, moves the chunk boundaries.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // The largest chunk ranges from one byte (every header parse is resumed at every byte boundary) to
    // the whole input at once.
    let max = [1u64, 2, 3, 5, 9, 64, 700, 4096][(h & 7) as usize];
    let mut s = h | 1;
    std::iter::repeat_with(move || {
        // xorshift64: cheap, and good enough to vary chunk boundaries.
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        1 + (s % max) as usize
    })
}

/// What the stream decoder made of an input.
#[derive(Debug)]
pub enum StreamOutcome {
    /// The decoder rejected the bundle.
    Rejected(StreamError),
    /// The input ended before the bundle did.
    Incomplete,
    /// A complete bundle occupying the first `consumed` bytes of the input.
    Done { consumed: usize, header: Box<BundleHeader>, payload: Vec<u8> },
}

/// Feeds `data` to a fresh stream decoder in chunks of the given sizes (the plan must not run dry before
/// the input does).
pub fn stream_decode(data: &[u8], plan: impl IntoIterator<Item = usize>) -> StreamOutcome {
    let mut dec = StreamDecoder::new(Limits::default());
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut plan = plan.into_iter();
    while consumed < data.len() {
        let size = plan.next().expect("chunk plan ran out before the input");
        let chunk = &data[consumed..data.len().min(consumed + size.max(1))];
        let feed = match dec.feed(chunk, &mut payload) {
            Ok(f) => f,
            Err(e) => return StreamOutcome::Rejected(e),
        };
        assert!(feed.consumed <= chunk.len(), "consumed more than it was fed");
        consumed += feed.consumed;
        if feed.done {
            assert_eq!(dec.position(), consumed as u64, "position() disagrees with the bytes consumed");
            let header = Box::new(dec.take_header().expect("a finished bundle has a header"));
            return StreamOutcome::Done { consumed, header, payload };
        }
        // Until the bundle is complete, every byte fed belongs to it.
        assert_eq!(feed.consumed, chunk.len(), "unfinished bundle left input over");
    }
    match dec.finish() {
        Ok(()) => assert!(data.is_empty(), "finish() accepted a partial bundle"),
        Err(e) => assert!(e.is_truncated(), "finish() reported {e} instead of truncation"),
    }
    StreamOutcome::Incomplete
}

/// Slice and stream decoders must agree on `data`, fed in chunks of the sizes `plan` gives.
pub fn check_stream(data: &[u8], plan: impl IntoIterator<Item = usize>) {
    let prefix = Bundle::decode_prefix(data, &Limits::default());
    match (stream_decode(data, plan), &prefix) {
        (StreamOutcome::Done { consumed, header, payload }, Ok((bundle, used))) => {
            assert_eq!(consumed, *used, "stream and slice end the bundle apart");
            assert_eq!(payload, bundle.payload(), "stream payload differs");
            assert_eq!(*header, bundle.header(), "stream header differs");
        }
        (StreamOutcome::Done { consumed, .. }, Err(e)) => {
            panic!("stream accepted a {consumed}-byte bundle that the slice decoder rejects: {e}")
        }
        (StreamOutcome::Rejected(e), Ok((_, used))) => {
            panic!("stream rejected a {used}-byte bundle that the slice decoder accepts: {e}")
        }
        (StreamOutcome::Incomplete, Ok((_, used))) => {
            panic!("stream wants more input after a complete {used}-byte bundle")
        }
        // Both reject. The error kinds may differ: the slice decoder sees the whole input and can spot a
        // broken rule the stream decoder has not reached yet (it waits for a block to be complete before
        // looking at its CRC field, for instance), and the two check a block's rules in different orders.
        (StreamOutcome::Incomplete | StreamOutcome::Rejected(_), Err(_)) => {}
    }
}

/// The `decode` target: `Bundle::decode` on arbitrary bytes, exact re-encoding, agreement with
/// `decode_prefix` and the stream decoder, and the forwarder's updates on whatever decodes.
pub fn check_bundle(data: &[u8]) {
    let limits = Limits::default();
    let whole = Bundle::decode(data);
    let prefix = Bundle::decode_prefix(data, &limits);
    // `decode` is `decode_prefix` plus "nothing follows".
    match (&whole, &prefix) {
        (Ok(_), Ok((_, used))) => assert_eq!(*used, data.len()),
        (Ok(_), Err(e)) => panic!("decode accepts what decode_prefix rejects: {e}"),
        (Err(e), Ok((_, used))) => assert_eq!(
            e,
            &DecodeError { offset: *used, kind: ErrorKind::TrailingBytes(data.len() - used) },
            "decode rejects a whole bundle for another reason than trailing bytes"
        ),
        (Err(_), Err(_)) => {}
    }

    // One segment, as when a whole file is handed over, then segments of varying size.
    check_stream(data, [data.len()]);
    check_stream(data, chunk_plan(data));

    if let Ok(bundle) = &whole {
        check_reencoding(bundle, data);
        check_forwarding(bundle);
        if bundle.is_admin_record() {
            check_admin_record(bundle.payload());
        }
    }
}

fn check_reencoding(bundle: &Bundle<'_>, data: &[u8]) {
    let limits = Limits::default();
    assert_eq!(bundle.to_vec(), data, "re-encoding is not byte-identical");
    assert_eq!(bundle.encoded_len(), data.len());
    let mut buf = vec![0u8; data.len()];
    assert_eq!(bundle.encode_to_slice(&mut buf), Ok(data.len()));
    assert_eq!(buf, data);
    let again = Bundle::decode(&buf).expect("the re-encoding of a decoded bundle must decode");
    assert_eq!(&again, bundle);
    assert_eq!(bundle.clone().into_owned().to_vec(), data);
    bundle.validate(&limits).expect("a decoded bundle must pass validate()");
    // Exercised for panics only: the answers depend on local policy.
    let _ = bundle.unprocessable_blocks(|_| false).discard.len();
    let _ = bundle.id().to_string();

    // Streaming the bundle back out must reproduce it too: the header keeps the payload block's head as
    // received, canonical or not.
    let header = bundle.header();
    let mut out = Vec::new();
    let written = StreamEncoder::encode(&header, bundle.payload(), &mut out).expect("stream-encoding a decoded bundle");
    assert_eq!(written, out.len() as u64);
    assert_eq!(header.encoded_len(), out.len() as u64);
    assert_eq!(out, data, "stream re-encoding differs");
    let joined =
        header.into_bundle(bundle.payload(), &limits).expect("header and payload of a decoded bundle must join");
    assert_eq!(joined.to_vec(), data, "into_bundle differs");
}

/// What a forwarder does to every bundle it sends on (RFC 9171 §4.4) must leave a bundle that decodes
/// exactly when `validate` accepts it (a forwarder may push a bundle over a limit, but must be able to
/// tell).
fn check_forwarding(bundle: &Bundle<'_>) {
    let limits = Limits::default();
    let node: Eid = "ipn:977.0".parse().expect("literal EID");
    let mut fwd = bundle.clone();
    fwd.set_previous_node(&node).expect("setting the previous node");
    let age = bundle.bundle_age_ms().unwrap_or(0).saturating_add(1500);
    fwd.set_bundle_age_ms(age).expect("setting the bundle age");
    let hops = fwd.increment_hop_count().expect("incrementing the hop count");
    assert_eq!(hops.is_some(), bundle.hop_count().is_some());
    let bytes = fwd.to_vec();
    match (fwd.validate(&limits), Bundle::decode(&bytes)) {
        (Ok(()), Ok(back)) => {
            assert_eq!(back.previous_node(), Some(&node));
            assert_eq!(back.bundle_age_ms(), Some(age));
            assert_eq!(back.hop_count(), hops);
            assert_eq!(back.payload(), bundle.payload());
            assert_eq!(back.primary(), bundle.primary());
        }
        (Err(_), Err(_)) => {}
        (Ok(()), Err(e)) => panic!("forwarded bundle passes validate() but does not decode: {e}"),
        (Err(e), Ok(_)) => panic!("forwarded bundle decodes but fails validate(): {e}"),
    }
}

/// The `admin_record` target: whatever decodes re-encodes to something that decodes to the same record,
/// and encoding is stable.
pub fn check_admin_record(data: &[u8]) {
    let Ok(rec) = AdminRecord::decode(data) else {
        return;
    };
    let bytes = rec.encode();
    let again = AdminRecord::decode(&bytes).expect("an encoded administrative record must decode");
    assert_eq!(again, rec);
    assert_eq!(again.encode(), bytes, "encoding is not stable");
}

/// The `eid_text` target: whatever parses displays as text that parses to the same EID, with the same
/// encoding, and displays the same again; the EID also survives the CBOR encoding inside a bundle.
pub fn check_eid_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(eid) = text.parse::<Eid>() else {
        return;
    };
    // Display may normalise (`ipn:0.5.1` shows as `ipn:5.1`, node 2^32-1 as `!`), but only once.
    let shown = eid.to_string();
    let clip = |s: &str| s.chars().take(80).collect::<String>();
    let again: Eid = shown
        .parse()
        .unwrap_or_else(|e| panic!("{:?} displays as {:?}, which does not parse: {e}", clip(text), clip(&shown)));
    assert_eq!(again, eid);
    assert_eq!(again.to_string(), shown, "Display is not stable");
    // Equality ignores the ipn form (two or three elements); the encoding must not change.
    assert_eq!(again.to_cbor(), eid.to_cbor());
    assert_eq!(eid.to_cbor().len(), eid.encoded_len());
    let node = eid.node_id();
    assert_eq!(node.to_string().parse::<Eid>().as_ref(), Ok(&node));

    // Through CBOR and back, as the destination of a bundle. The builder may refuse an EID as a destination
    // (longer than `Limits::max_eid_len`, which text does not limit, or the ipn local node), but what it
    // builds must decode: a node must not send a bundle that the next node rejects.
    let source: Eid = "ipn:1.0".parse().expect("literal EID");
    let built = BundleBuilder::new(source, eid.clone()).creation(CreationTimestamp::new(1, 0)).build();
    if let Ok(built) = built {
        let bytes = built.to_vec();
        let decoded = Bundle::decode(&bytes)
            .unwrap_or_else(|e| panic!("a bundle built for {} does not decode: {e}", clip(&shown)));
        assert_eq!(decoded.primary().destination, eid);
        assert_eq!(decoded.primary().destination.to_string(), shown);
    }
}

/// `Summary::decode` on arbitrary bytes (a peer's summary arrives from the network): whatever decodes must
/// re-encode to bytes that decode to the same summary, and set operations on it must not panic.
pub fn check_summary(data: &[u8]) {
    use dtn_core::store::Summary;
    let Ok(s) = Summary::decode(data) else { return };
    let again = Summary::decode(&s.to_bytes()).expect("re-encoded summary decodes");
    assert_eq!(again, s);
    let d = s.difference(&Summary::new());
    assert_eq!(d, s);
    assert!(s.difference(&s).is_empty());
    let mut u = Summary::new();
    u.union_with(&s);
    assert_eq!(u, s);
}
