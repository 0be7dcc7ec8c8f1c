use dtn_core::bpv7::*;

#[test]
fn build_decode_encode() {
    let b = BundleBuilder::new("dtn://a/x".parse().unwrap(), "ipn:2.1".parse().unwrap())
        .creation(CreationTimestamp::new(1000, 1))
        .hop_limit(5)
        .previous_node("dtn://a/".parse().unwrap())
        .payload(b"hello".to_vec())
        .build()
        .unwrap();
    let bytes = b.to_vec();
    let d = Bundle::decode(&bytes).unwrap();
    assert_eq!(d.payload(), b"hello");
    assert_eq!(d.to_vec(), bytes);
    let mut dec = StreamDecoder::new(Limits::default());
    let mut sink = Vec::new();
    for c in bytes.chunks(3) {
        dec.feed(c, &mut sink).unwrap();
    }
    assert_eq!(sink, b"hello");
    let h = dec.take_header().unwrap();
    let mut out = Vec::new();
    StreamEncoder::encode(&h, &b"hello"[..], &mut out).unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn header_built_for_a_streamed_payload_matches_the_whole_bundle() {
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let builder = BundleBuilder::new("ipn:7.0".parse().unwrap(), "dtn://collector/~video".parse().unwrap())
        .creation(CreationTimestamp::new(5, 0))
        .crc_type(CrcType::Crc16)
        .hop_limit(9);
    let whole = builder.clone().payload(payload.clone()).build().unwrap().to_vec();
    let header = builder.build_header(payload.len() as u64, &Limits::default()).unwrap();
    let mut streamed = Vec::new();
    StreamEncoder::encode(&header, &payload[..], &mut streamed).unwrap();
    assert_eq!(streamed, whole);
    // A header that breaks a rule is refused before any payload is produced.
    let bad = BundleBuilder::new("ipn:7.0".parse().unwrap(), "ipn:8.1".parse().unwrap())
        .creation(CreationTimestamp::new(5, 0))
        .fragment(10, 20)
        .build_header(11, &Limits::default());
    assert!(matches!(bad, Err(DecodeError { kind: ErrorKind::FragmentBeyondAdu { .. }, .. })));
}
