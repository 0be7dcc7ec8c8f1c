//! Our extension formats (`dtn_core::proto`) on arbitrary bytes. Every decoder gets the same input, none may
//! panic, and whatever one accepts re-encodes to exactly the input (the bundle class up to the flag bits it
//! ignores): each value has one encoding, which the signature fields rely on. The input also goes through
//! `AdminRecord::decode` and `Bundle::decode`, to reach the records and blocks the way the router does.
//!
//! The invariants are kept here rather than in `src/lib.rs`, so `tests/fuzz_regressions.rs` does not replay
//! saved inputs through them yet; move them there when the first finding needs a regression test.

#![no_main]

use dtn_core::bpv7::Bundle;
use dtn_core::bpv7::admin::AdminRecord;
use dtn_core::proto::{
    BundleClass, CustodyRequest, CustodySignal, Hello, Offer, OurRecord, Receipts, copies_of, decode_copies, encode_copies,
};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    if let Ok(c) = BundleClass::decode(data) {
        let bytes = c.encode();
        assert_eq!(BundleClass::decode(&bytes), Ok(c), "bundle class does not survive re-encoding");
    }
    if let Ok(r) = CustodyRequest::decode(data) {
        assert_eq!(r.encode(), data, "custody request re-encodes differently");
    }
    if let Ok(n) = decode_copies(data) {
        assert!(n > 0, "zero copies accepted");
        assert_eq!(encode_copies(n), data, "copies re-encode differently");
    }
    if let Ok(s) = CustodySignal::decode(data) {
        assert_eq!(s.encode(), data, "custody signal re-encodes differently");
        check_record(OurRecord::CustodySignal(s));
    }
    if let Ok(h) = Hello::decode(data) {
        assert_eq!(h.encode(), data, "hello re-encodes differently");
        check_record(OurRecord::Hello(h));
    }
    if let Ok(r) = Receipts::decode(data) {
        assert_eq!(r.encode(), data, "receipts re-encode differently");
        check_record(OurRecord::Receipts(r));
    }
    if let Ok(o) = Offer::decode(data) {
        assert_eq!(o.encode(), data, "offer re-encodes differently");
        check_record(OurRecord::Offer(o));
    }
    if let Ok(rec) = AdminRecord::decode(data)
        && let Ok(Some(ours)) = OurRecord::from_admin(&rec)
    {
        check_record(ours);
    }
    if let Ok(bundle) = Bundle::decode(data) {
        // Errors are expected (a malformed or repeated block); only panics are findings.
        if let Ok(Some(c)) = BundleClass::of(&bundle) {
            assert_eq!(BundleClass::decode(&c.encode()), Ok(c));
        }
        let _ = CustodyRequest::of(&bundle);
        let _ = copies_of(&bundle);
        if bundle.is_admin_record()
            && let Ok(rec) = AdminRecord::decode(bundle.payload())
            && let Ok(Some(ours)) = OurRecord::from_admin(&rec)
        {
            check_record(ours);
        }
    }
}

/// A decoded record survives the administrative-record framing, and what its signature covers is a prefix
/// of the payload that carries it.
fn check_record(rec: OurRecord) {
    let payload = rec.to_admin_payload();
    assert!(payload.starts_with(&rec.signed_bytes()), "signed bytes are not a prefix of the payload");
    let again = AdminRecord::decode(&payload).expect("an encoded record must decode as an administrative record");
    assert_eq!(OurRecord::from_admin(&again), Ok(Some(rec)), "record does not survive the admin framing");
}

fuzz_target!(|data: &[u8]| check(data));
