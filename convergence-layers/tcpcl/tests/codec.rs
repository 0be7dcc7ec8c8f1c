//! The wire format: every message type round-trips, byte layouts match RFC 9174, limits hold before any
//! allocation, and arbitrary input never panics the decoder.

use bytes::{Bytes, BytesMut};
use dtn_tcpcl::msg::*;
use dtn_tcpcl::{DecodeError, ExtensionError};
use proptest::prelude::*;

const LIMITS: Limits = Limits { max_segment_len: 1 << 20, max_extensions_len: 1 << 16 };

fn roundtrip(m: Message) {
    let enc = m.to_bytes();
    // Whole buffer.
    let mut b = BytesMut::from(&enc[..]);
    assert_eq!(decode_message(&mut b, &LIMITS).unwrap(), Decoded::Message(m.clone()));
    assert!(b.is_empty());
    // Byte by byte: never a message early, never consumes a partial one.
    let mut b = BytesMut::new();
    for (i, byte) in enc.iter().enumerate() {
        b.extend_from_slice(&[*byte]);
        match decode_message(&mut b, &LIMITS).unwrap() {
            Decoded::NeedMore(n) => {
                assert!(i + 1 < enc.len(), "NeedMore after the last byte");
                assert!(n > b.len() && n <= enc.len(), "NeedMore({n}) with {} of {} bytes", b.len(), enc.len());
                assert_eq!(b.len(), i + 1);
            }
            Decoded::Message(got) => {
                assert_eq!(i + 1, enc.len());
                assert_eq!(got, m);
            }
        }
    }
}

fn segment(flags: u8, ext: Vec<ExtensionItem>, data: &'static [u8]) -> Message {
    Message::XferSegment(XferSegment {
        flags,
        transfer_id: 0x0102_0304_0506_0708,
        extensions: Extensions::from_items(&ext),
        data: Bytes::from_static(data),
    })
}

#[test]
fn every_message_type_round_trips() {
    roundtrip(Message::SessInit(SessInit {
        keepalive: 30,
        segment_mru: 1 << 20,
        transfer_mru: 1 << 34,
        node_id: "dtn://node-α/".into(),
        extensions: Extensions::from_items(&[ExtensionItem {
            flags: 0,
            item_type: 0x1234,
            value: Bytes::from_static(b"x"),
        }]),
    }));
    roundtrip(Message::SessInit(SessInit {
        keepalive: 0,
        segment_mru: 0,
        transfer_mru: u64::MAX,
        node_id: String::new(),
        extensions: Extensions::empty(),
    }));
    for reason in 0..=7u8 {
        roundtrip(Message::SessTerm(SessTerm { flags: TERM_REPLY, reason: reason.into() }));
        roundtrip(Message::XferRefuse(XferRefuse { reason: reason.into(), transfer_id: u64::MAX }));
        roundtrip(Message::MsgReject(MsgReject { reason: reason.into(), rejected_type: 0xEE }));
    }
    roundtrip(segment(XFER_START, vec![ExtensionItem::transfer_length(12345)], b"first"));
    roundtrip(segment(0, vec![], b"middle"));
    roundtrip(segment(XFER_END, vec![], b""));
    roundtrip(segment(XFER_START | XFER_END, vec![], b"whole"));
    // Large data is split off the buffer rather than copied; still equal.
    let big: &'static [u8] = Box::leak(vec![7u8; 100_000].into_boxed_slice());
    roundtrip(segment(XFER_START | XFER_END, vec![], big));
    roundtrip(Message::XferAck(XferAck { flags: XFER_START | XFER_END | 0x80, transfer_id: 9, length: 1 << 40 }));
    roundtrip(Message::Keepalive);
}

#[test]
fn byte_layouts_match_rfc_9174() {
    let mut b = BytesMut::new();
    ContactHeader::ours().encode(&mut b);
    assert_eq!(&b[..], b"dtn!\x04\x00");
    assert_eq!(Message::Keepalive.to_bytes(), &[0x04][..]);
    assert_eq!(
        Message::SessTerm(SessTerm { flags: TERM_REPLY, reason: TermReason::Busy }).to_bytes(),
        &[0x05, 1, 3][..]
    );
    assert_eq!(
        Message::MsgReject(MsgReject { reason: RejectReason::TypeUnknown, rejected_type: 0x42 }).to_bytes(),
        &[0x06, 1, 0x42][..]
    );
    assert_eq!(
        Message::XferRefuse(XferRefuse { reason: RefuseReason::SessionTerminating, transfer_id: 1 }).to_bytes(),
        &[0x03, 6, 0, 0, 0, 0, 0, 0, 0, 1][..]
    );
    assert_eq!(
        Message::XferAck(XferAck { flags: XFER_END, transfer_id: 2, length: 3 }).to_bytes(),
        &[0x02, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3][..]
    );
    let init = Message::SessInit(SessInit {
        keepalive: 0x0102,
        segment_mru: 3,
        transfer_mru: 4,
        node_id: "ab".into(),
        extensions: Extensions::empty(),
    });
    let mut want = vec![0x07, 1, 2];
    want.extend_from_slice(&3u64.to_be_bytes());
    want.extend_from_slice(&4u64.to_be_bytes());
    want.extend_from_slice(&[0, 2, b'a', b'b', 0, 0, 0, 0]);
    assert_eq!(init.to_bytes(), &want[..]);
    // START segment with a Transfer Length item: flags, type 0x0001, length 8, value.
    let seg = segment(XFER_START, vec![ExtensionItem::transfer_length(5)], b"hi");
    let mut want = vec![0x01, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 13, 0, 0, 1, 0, 8];
    want.extend_from_slice(&5u64.to_be_bytes());
    want.extend_from_slice(&2u64.to_be_bytes());
    want.extend_from_slice(b"hi");
    assert_eq!(seg.to_bytes(), &want[..]);
    // Without START there is no extension field at all.
    let seg = segment(XFER_END, vec![], b"x");
    assert_eq!(seg.to_bytes(), &[0x01, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, b'x'][..]);
}

#[test]
fn reason_codes_keep_unknown_values() {
    assert_eq!(TermReason::from(5), TermReason::ResourceExhaustion);
    assert_eq!(TermReason::from(0x99), TermReason::Other(0x99));
    assert_eq!(TermReason::Other(0x99).code(), 0x99);
    assert_eq!(RefuseReason::from(5), RefuseReason::ExtensionFailure);
    assert_eq!(RejectReason::from(3), RejectReason::Unexpected);
}

#[test]
fn contact_header_magic_is_checked_as_it_arrives() {
    assert_eq!(ContactHeader::decode(b""), Ok(None));
    assert_eq!(ContactHeader::decode(b"dt"), Ok(None));
    assert_eq!(ContactHeader::decode(b"dx"), Err(DecodeError::BadMagic));
    assert_eq!(ContactHeader::decode(b"GET / HTTP/1.1"), Err(DecodeError::BadMagic));
    assert_eq!(ContactHeader::decode(b"dtn!\x03\x01"), Ok(Some(ContactHeader { version: 3, flags: 1 })));
    assert!(ContactHeader { version: 4, flags: CH_CAN_TLS }.can_tls());
}

#[test]
fn limits_are_checked_before_the_bytes_arrive() {
    // A segment header announcing 2^62 bytes: rejected on the header alone.
    let mut b = BytesMut::from(&[0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    b.extend_from_slice(&(1u64 << 62).to_be_bytes());
    assert_eq!(decode_message(&mut b, &LIMITS), Err(DecodeError::SegmentTooLong { len: 1 << 62, max: 1 << 20 }));
    // SESS_INIT announcing 4 GiB of session extensions.
    let mut b = BytesMut::from(&[0x07, 0, 30][..]);
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(decode_message(&mut b, &LIMITS), Err(DecodeError::ExtensionsTooLong { len: u32::MAX, max: 1 << 16 }));
    // START segment announcing too many transfer extension bytes.
    let mut b = BytesMut::from(&[0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0, 0, 0][..]);
    assert!(matches!(decode_message(&mut b, &LIMITS), Err(DecodeError::ExtensionsTooLong { .. })));
    // A segment of exactly the limit is fine and asks for exactly its bytes.
    let mut b = BytesMut::from(&[0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    b.extend_from_slice(&(1u64 << 20).to_be_bytes());
    assert_eq!(decode_message(&mut b, &LIMITS), Ok(Decoded::NeedMore(18 + (1 << 20))));
    let mut b = BytesMut::from(&[0xEE][..]);
    assert_eq!(decode_message(&mut b, &LIMITS), Err(DecodeError::UnknownMessageType(0xEE)));
    let mut b = BytesMut::from(&[0x07, 0, 0][..]);
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&[0, 1, 0xFF, 0, 0, 0, 0]);
    assert_eq!(decode_message(&mut b, &LIMITS), Err(DecodeError::NodeIdNotUtf8));
}

#[test]
fn extension_items_are_validated() {
    let tl = ExtensionItem::transfer_length(99);
    let unknown = ExtensionItem { flags: 0, item_type: 0x7777, value: Bytes::from_static(b"ignored") };
    let critical = ExtensionItem { flags: EXT_CRITICAL, item_type: 0x7777, value: Bytes::new() };
    let ext = Extensions::from_items(&[unknown.clone(), tl.clone()]);
    assert_eq!(ext.items().unwrap(), vec![unknown.clone(), tl.clone()]);
    assert_eq!(ext.check_transfer(), Ok(Some(99)));
    assert_eq!(Extensions::from_items(std::slice::from_ref(&unknown)).check_session(), Ok(()));
    assert_eq!(
        Extensions::from_items(std::slice::from_ref(&critical)).check_session(),
        Err(ExtensionError::UnknownCritical { item_type: 0x7777 })
    );
    assert_eq!(
        Extensions::from_items(&[tl.clone(), critical]).check_transfer(),
        Err(ExtensionError::UnknownCritical { item_type: 0x7777 })
    );
    assert_eq!(
        Extensions::from_items(&[tl.clone(), tl]).check_transfer(),
        Err(ExtensionError::DuplicateTransferLength)
    );
    let short = ExtensionItem { flags: 0, item_type: EXT_TRANSFER_LENGTH, value: Bytes::from_static(b"1234") };
    assert_eq!(Extensions::from_items(&[short]).check_transfer(), Err(ExtensionError::BadTransferLength { len: 4 }));
    // The last item claims more bytes than the list holds.
    let overrun = Extensions::from_raw(Bytes::from_static(&[0, 0, 1, 0, 9, 1, 2]));
    assert_eq!(overrun.items(), Err(ExtensionError::Truncated { at: 0 }));
    assert_eq!(Extensions::from_raw(Bytes::from_static(&[0, 0])).items(), Err(ExtensionError::Truncated { at: 0 }));
}

fn arb_message() -> impl Strategy<Value = Message> {
    let bytes = |n| proptest::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from);
    let items = proptest::collection::vec((any::<u8>(), any::<u16>(), bytes(20)), 0..4).prop_map(|v| {
        Extensions::from_items(
            &v.into_iter()
                .map(|(flags, item_type, value)| ExtensionItem { flags, item_type, value })
                .collect::<Vec<_>>(),
        )
    });
    prop_oneof![
        (any::<u16>(), any::<u64>(), any::<u64>(), "[a-z:/0-9.-]{0,40}", items.clone()).prop_map(
            |(keepalive, segment_mru, transfer_mru, node_id, extensions)| {
                Message::SessInit(SessInit { keepalive, segment_mru, transfer_mru, node_id, extensions })
            }
        ),
        (any::<u8>(), any::<u8>()).prop_map(|(flags, r)| Message::SessTerm(SessTerm { flags, reason: r.into() })),
        (any::<u8>(), any::<u64>(), items, bytes(300)).prop_map(|(flags, transfer_id, ext, data)| {
            let extensions = if flags & XFER_START != 0 { ext } else { Extensions::empty() };
            Message::XferSegment(XferSegment { flags, transfer_id, extensions, data })
        }),
        (any::<u8>(), any::<u64>(), any::<u64>()).prop_map(|(flags, transfer_id, length)| Message::XferAck(XferAck {
            flags,
            transfer_id,
            length
        })),
        (any::<u8>(), any::<u64>())
            .prop_map(|(r, transfer_id)| Message::XferRefuse(XferRefuse { reason: r.into(), transfer_id })),
        Just(Message::Keepalive),
        (any::<u8>(), any::<u8>())
            .prop_map(|(r, rejected_type)| Message::MsgReject(MsgReject { reason: r.into(), rejected_type })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_messages_round_trip(msgs in proptest::collection::vec(arb_message(), 1..6), split in 0usize..64) {
        let mut wire = BytesMut::new();
        for m in &msgs { m.encode(&mut wire); }
        // Feed in two pieces at an arbitrary point; decoding must give back exactly the messages.
        let split = split.min(wire.len());
        let mut b = BytesMut::from(&wire[..split]);
        let mut got = Vec::new();
        let mut fed_rest = false;
        loop {
            match decode_message(&mut b, &LIMITS).unwrap() {
                Decoded::Message(m) => got.push(m),
                Decoded::NeedMore(_) if !fed_rest => { b.extend_from_slice(&wire[split..]); fed_rest = true; }
                Decoded::NeedMore(_) => break,
            }
        }
        prop_assert!(b.is_empty());
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), tiny in any::<bool>()) {
        let limits = if tiny { Limits { max_segment_len: 16, max_extensions_len: 8 } } else { LIMITS };
        let _ = ContactHeader::decode(&data);
        let mut b = BytesMut::from(&data[..]);
        let mut at = 0;
        while let Ok(Decoded::Message(m)) = decode_message(&mut b, &limits) {
            // Whatever decodes re-encodes to exactly the bytes it came from.
            let used = data.len() - b.len() - at;
            prop_assert_eq!(&m.to_bytes()[..], &data[at..at + used]);
            at += used;
            if let Message::XferSegment(s) = &m { let _ = s.extensions.check_transfer(); }
            if let Message::SessInit(s) = &m { let _ = s.extensions.check_session(); }
        }
    }

    #[test]
    fn garbage_after_a_valid_prefix_never_panics(msg in arb_message(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut b = BytesMut::new();
        msg.encode(&mut b);
        b.extend_from_slice(&tail);
        prop_assert_eq!(decode_message(&mut b, &LIMITS), Ok(Decoded::Message(msg)));
        while let Ok(Decoded::Message(_)) = decode_message(&mut b, &LIMITS) {}
    }
}
