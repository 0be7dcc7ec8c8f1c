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
