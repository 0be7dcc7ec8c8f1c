//! Peers that misbehave. Each case ends that session the way RFC 9174 says (the exact SESS_TERM reason, a
//! MSG_REJECT, or a plain close), with a typed error, without panicking, and the listener keeps serving
//! other sessions afterwards (or meanwhile, for the slow ones).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use dtn_tcpcl::msg::*;
use dtn_tcpcl::{DecodeError, Event, Outcome, SessionError};
use tokio::time::{Instant, timeout};

fn term(reason: TermReason) -> Option<Message> {
    Some(Message::SessTerm(SessTerm { flags: 0, reason }))
}

fn reject(reason: RejectReason, t: u8) -> Option<Message> {
    Some(Message::MsgReject(MsgReject { reason, rejected_type: t }))
}

#[tokio::test]
async fn bad_magic_is_closed_without_a_word() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_bytes(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(raw.expect_eof().await.is_empty(), "nothing may be sent to a non-TCPCL peer");
    assert!(matches!(server.next().await, Err(SessionError::BadMagic)));
    server.assert_serves().await;
}

#[tokio::test]
async fn wrong_version_gets_contact_header_then_version_mismatch() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(3).await;
    assert_eq!(raw.recv_ch().await, ContactHeader { version: 4, flags: 0 });
    assert_eq!(raw.recv().await, term(TermReason::VersionMismatch));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::VersionMismatch(3))));
    server.assert_serves().await;
}

#[tokio::test]
async fn active_side_closes_on_a_wrong_version() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut raw = Raw { s, buf: Default::default() };
        assert_eq!(raw.recv_ch().await.version, 4);
        raw.send_ch(5).await;
        raw.expect_eof().await;
    });
    let r = dtn_tcpcl::connect(addr, cfg("dtn://client/")).await;
    assert!(matches!(r, Err(SessionError::VersionMismatch(5))), "{r:?}");
    peer.await.unwrap();
}

#[tokio::test]
async fn message_before_sess_init_is_contact_failure() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    raw.send(&Message::XferAck(XferAck { flags: 0, transfer_id: 0, length: 0 })).await;
    assert_eq!(raw.recv().await, reject(RejectReason::Unexpected, msg_type::XFER_ACK));
    assert_eq!(raw.recv().await, term(TermReason::ContactFailure));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::UnexpectedBeforeInit(msg_type::XFER_ACK))));
    server.assert_serves().await;
}

#[tokio::test]
async fn unknown_type_before_sess_init_is_rejected_and_closed() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    raw.send_bytes(&[0x99, 1, 2, 3]).await;
    assert_eq!(raw.recv().await, reject(RejectReason::TypeUnknown, 0x99));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::Decode(DecodeError::UnknownMessageType(0x99)))));
    server.assert_serves().await;
}

#[tokio::test]
async fn huge_sess_init_extension_length_is_contact_failure() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    let mut b = vec![msg_type::SESS_INIT, 0, 30];
    b.extend_from_slice(&(1u64 << 20).to_be_bytes()); // Segment MRU
    b.extend_from_slice(&(1u64 << 30).to_be_bytes()); // Transfer MRU
    b.extend_from_slice(&[0, 0]); // empty node ID
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    raw.send_bytes(&b).await;
    assert_eq!(raw.recv().await, term(TermReason::ContactFailure));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::Decode(DecodeError::ExtensionsTooLong { .. }))));
    server.assert_serves().await;
}

#[tokio::test]
async fn unknown_critical_session_extension_is_contact_failure() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    let crit = ExtensionItem { flags: EXT_CRITICAL, item_type: 0xBEEF, value: Bytes::new() };
    raw.send(&sess_init(30, 1 << 20, Extensions::from_items(&[crit]))).await;
    assert_eq!(raw.recv().await, term(TermReason::ContactFailure));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::SessionExtension(_))));
    // A non-critical unknown item is ignored.
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    let benign = ExtensionItem { flags: 0, item_type: 0xBEEF, value: Bytes::from_static(b"hello") };
    raw.send(&sess_init(30, 1 << 20, Extensions::from_items(&[benign]))).await;
    assert!(matches!(raw.recv().await, Some(Message::SessInit(_))));
    assert!(server.next().await.is_ok());
}

#[tokio::test]
async fn peer_refusing_the_session_gets_a_reply() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    raw.send(&term(TermReason::Busy).unwrap()).await;
    assert_eq!(raw.recv().await, Some(Message::SessTerm(SessTerm { flags: TERM_REPLY, reason: TermReason::Busy })));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::PeerRefused(TermReason::Busy))));
}

#[tokio::test]
async fn slow_loris_contact_header_times_out_while_others_are_served() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let started = Instant::now();
    let mut raw = Raw::connect(server.addr).await;
    let loris = tokio::spawn(async move {
        for b in b"dtn" {
            raw.send_bytes(&[*b]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(raw.expect_eof().await.is_empty());
        started.elapsed()
    });
    // Served while the slow peer is still dribbling.
    server.assert_serves().await;
    assert!(matches!(server.next().await, Err(SessionError::NegotiationTimeout)));
    let took = loris.await.unwrap();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "closed after {took:?}");
}

#[tokio::test]
async fn silent_after_contact_header_gets_idle_sess_term() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send_ch(4).await;
    raw.recv_ch().await;
    // Never sends SESS_INIT.
    assert_eq!(raw.recv().await, term(TermReason::IdleTimeout));
    raw.expect_eof().await;
    assert!(matches!(server.next().await, Err(SessionError::NegotiationTimeout)));
    server.assert_serves().await;
}

/// An established session with a raw peer: the server's handle and events, and the raw side.
async fn established(server: &mut Server, keepalive: u16) -> (dtn_tcpcl::SessionHandle, dtn_tcpcl::SessionEvents, Raw) {
    let raw = Raw::handshake(server.addr, keepalive, 1 << 20).await;
    let (h, ev) = server.next().await.expect("session");
    (h, ev, raw)
}

#[tokio::test]
async fn huge_segment_length_mid_session_is_resource_exhaustion() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (_h, mut ev, mut raw) = established(&mut server, 30).await;
    let mut b = vec![msg_type::XFER_SEGMENT, XFER_START | XFER_END, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&(1u64 << 62).to_be_bytes());
    raw.send_bytes(&b).await;
    assert_eq!(raw.recv_non_keepalive().await, term(TermReason::ResourceExhaustion));
    raw.expect_eof().await;
    let e = ended(&mut ev).await;
    assert_eq!(e.reason, Some(TermReason::ResourceExhaustion));
    assert!(matches!(e.error, Some(SessionError::Decode(DecodeError::SegmentTooLong { .. }))), "{e:?}");
    server.assert_serves().await;
}

#[tokio::test]
async fn garbage_mid_session_is_rejected_and_closed() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (_h, mut ev, mut raw) = established(&mut server, 30).await;
    raw.send_bytes(&[0xEE; 100]).await;
    assert_eq!(raw.recv_non_keepalive().await, reject(RejectReason::TypeUnknown, 0xEE));
    raw.expect_eof().await;
    let e = ended(&mut ev).await;
    assert!(matches!(e.error, Some(SessionError::Decode(DecodeError::UnknownMessageType(0xEE)))), "{e:?}");
    server.assert_serves().await;
}

#[tokio::test]
async fn unexpected_messages_mid_session_are_rejected_and_the_session_lives() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (h, mut ev, mut raw) = established(&mut server, 30).await;
    raw.send(&sess_init(30, 1 << 20, Extensions::empty())).await;
    assert_eq!(raw.recv_non_keepalive().await, reject(RejectReason::Unexpected, msg_type::SESS_INIT));
    raw.send(&Message::XferAck(XferAck { flags: 0, transfer_id: 7, length: 1 })).await;
    assert_eq!(raw.recv_non_keepalive().await, reject(RejectReason::Unexpected, msg_type::XFER_ACK));
    // A middle segment of a transfer that never started.
    let seg = XferSegment { flags: 0, transfer_id: 3, extensions: Extensions::empty(), data: Bytes::from_static(b"?") };
    raw.send(&Message::XferSegment(seg)).await;
    assert_eq!(raw.recv_non_keepalive().await, reject(RejectReason::Unexpected, msg_type::XFER_SEGMENT));
    // Still a working session.
    let seg = XferSegment {
        flags: XFER_START | XFER_END,
        transfer_id: 0,
        extensions: Extensions::empty(),
        data: Bytes::from_static(b"ok"),
    };
    raw.send(&Message::XferSegment(seg)).await;
    let s = next_segment(&mut ev).await;
    h.ack(s.transfer_id, 2, true).await.unwrap();
    assert_eq!(
        raw.recv_non_keepalive().await,
        Some(Message::XferAck(XferAck { flags: XFER_START | XFER_END, transfer_id: 0, length: 2 }))
    );
}

#[tokio::test]
async fn transfer_extensions_and_mru_are_enforced() {
    let mut s_cfg = cfg("dtn://server/");
    s_cfg.transfer_mru = 1000;
    let mut server = Server::start(s_cfg).await;
    let (h, mut ev, mut raw) = established(&mut server, 30).await;
    let refused = |reason, transfer_id| Some(Message::XferRefuse(XferRefuse { reason, transfer_id }));
    let start = |id, items: &[ExtensionItem], end: bool, data: &'static [u8]| {
        Message::XferSegment(XferSegment {
            flags: XFER_START | if end { XFER_END } else { 0 },
            transfer_id: id,
            extensions: Extensions::from_items(items),
            data: Bytes::from_static(data),
        })
    };
    // Unknown critical transfer extension: Extension Failure.
    let crit = ExtensionItem { flags: EXT_CRITICAL, item_type: 0x4242, value: Bytes::new() };
    raw.send(&start(0, &[crit], true, b"x")).await;
    assert_eq!(raw.recv_non_keepalive().await, refused(RefuseReason::ExtensionFailure, 0));
    // Announced length above our Transfer MRU: No Resources, and its later segments are refused too.
    raw.send(&start(1, &[ExtensionItem::transfer_length(5000)], false, b"x")).await;
    assert_eq!(raw.recv_non_keepalive().await, refused(RefuseReason::NoResources, 1));
    let rest = XferSegment {
        flags: XFER_END,
        transfer_id: 1,
        extensions: Extensions::empty(),
        data: Bytes::from_static(b"y"),
    };
    raw.send(&Message::XferSegment(rest)).await;
    assert_eq!(raw.recv_non_keepalive().await, refused(RefuseReason::NoResources, 1));
    // More data than announced: Not Acceptable.
    raw.send(&start(2, &[ExtensionItem::transfer_length(1)], true, b"xy")).await;
    assert_eq!(raw.recv_non_keepalive().await, refused(RefuseReason::NotAcceptable, 2));
    // Unknown non-critical items are ignored; the transfer is delivered with its announced length.
    let benign = ExtensionItem { flags: 0, item_type: 0x4242, value: Bytes::from_static(b"zz") };
    raw.send(&start(3, &[benign, ExtensionItem::transfer_length(2)], false, b"a")).await;
    let s = next_segment(&mut ev).await;
    assert_eq!((s.transfer_id, s.total_len, s.start, s.end), (3, Some(2), true, false));
    h.ack(3, 1, false).await.unwrap();
    assert_eq!(
        raw.recv_non_keepalive().await,
        Some(Message::XferAck(XferAck { flags: XFER_START, transfer_id: 3, length: 1 }))
    );
    // Nothing was delivered for the refused transfers.
    assert!(ev.try_recv().is_err());
}

#[tokio::test]
async fn silent_peer_gets_keepalives_then_idle_timeout() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (_h, mut ev, mut raw) = established(&mut server, 1).await;
    let t0 = Instant::now();
    // We do not answer anything; the server keeps the session alive, then gives up after 2 × 1 s.
    assert_eq!(raw.recv().await, Some(Message::Keepalive));
    assert_eq!(raw.recv_non_keepalive().await, term(TermReason::IdleTimeout));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(4), "{took:?}");
    raw.expect_eof().await;
    let e = ended(&mut ev).await;
    assert!(matches!(e.error, Some(SessionError::KeepaliveTimeout)), "{e:?}");
    server.assert_serves().await;
}

/// dtn7-rs ends a session silent for one keepalive interval: ours must come well before that.
#[tokio::test]
async fn keepalives_come_within_half_the_interval() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (_h, _ev, mut raw) = established(&mut server, 4).await;
    let t0 = Instant::now();
    assert_eq!(raw.recv().await, Some(Message::Keepalive));
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(3500), "first keepalive after {took:?} of a 4 s interval");
}

#[tokio::test]
async fn peer_that_never_acks_fills_the_window_and_no_more() {
    let mut s_cfg = cfg("dtn://server/");
    s_cfg.send_window = 64 << 10;
    s_cfg.max_segment_size = 16 << 10;
    let mut server = Server::start(s_cfg).await;
    let (h, mut ev, mut raw) = established(&mut server, 30).await;
    let outs: Vec<_> = (0..20).map(|_| h.send(Bytes::from(vec![0u8; 100 << 10]))).collect();
    let mut received = 0usize;
    // Read for a while without acknowledging anything.
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Ok(Some(m)) = timeout(deadline - Instant::now(), raw.recv()).await {
        if let Message::XferSegment(s) = m {
            received += s.data.len();
        }
    }
    assert_eq!(received, 64 << 10, "exactly one window was sent");
    let st = h.stats();
    assert_eq!((st.in_flight, st.max_in_flight, st.transfers_acked), (64 << 10, 64 << 10, 0));
    // The session is still usable for control: terminate; the raw peer never finishes, so we abort.
    h.abort();
    for o in outs {
        assert_eq!(timeout(T, o).await.unwrap(), Outcome::Cut { acked: 0 });
    }
    assert!(matches!(ended(&mut ev).await.error, Some(SessionError::Aborted)));
    server.assert_serves().await;
}

#[tokio::test]
async fn owner_that_drops_events_ends_the_session() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (h, ev, mut raw) = established(&mut server, 30).await;
    drop(ev);
    let seg = XferSegment {
        flags: XFER_START | XFER_END,
        transfer_id: 0,
        extensions: Extensions::empty(),
        data: Bytes::from_static(b"x"),
    };
    raw.send(&Message::XferSegment(seg)).await;
    assert_eq!(raw.recv_non_keepalive().await, term(TermReason::Unknown));
    assert!(matches!(h.closed().await.error, Some(SessionError::OwnerGone)));
    let _ = Event::Ended; // the owner saw nothing: it had dropped its receiver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_sends_but_never_reads_is_reset() {
    let mut server = Server::start(cfg("dtn://server/")).await;
    let (h, mut ev, mut raw) = established(&mut server, 1).await;
    // Our writer gets stuck on bulk data the peer never reads...
    let out = h.send(Bytes::from(vec![0u8; 32 << 20]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...while the peer keeps sending transfers we must answer (refuse), so our control queue fills.
    let crit = ExtensionItem { flags: EXT_CRITICAL, item_type: 0x4242, value: Bytes::new() };
    let t0 = Instant::now();
    for id in 0..3000u64 {
        let seg = XferSegment {
            flags: XFER_START | XFER_END,
            transfer_id: id,
            extensions: Extensions::from_items(std::slice::from_ref(&crit)),
            data: Bytes::new(),
        };
        if timeout(Duration::from_secs(1), raw.send_bytes(&Message::XferSegment(seg).to_bytes())).await.is_err() {
            break;
        }
    }
    let e = ended(&mut ev).await;
    assert!(matches!(e.error, Some(SessionError::Stalled)), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert!(matches!(timeout(T, out).await.unwrap(), Outcome::Cut { acked: 0 }));
    server.assert_serves().await;
}
