//! Two real sessions on loopback: pipelined transfers both ways, a 64 MiB streamed transfer with bounded
//! memory, refusal, termination from either side, and a cut that reports exactly the acknowledged length.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use dtn_tcpcl::{Event, Outcome, RefuseReason, SessionEvents, SessionHandle, TermReason};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::timeout;

/// Deterministic bytes, so the receiver can check every byte of a transfer it never holds whole.
fn pattern(offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let x = offset + i as u64;
        *b = (x ^ (x >> 8) ^ (x >> 16)) as u8;
    }
}

/// An `AsyncRead` that produces `pattern` bytes, standing in for a bundle file on disk.
struct PatternReader {
    offset: u64,
    len: u64,
}

impl AsyncRead for PatternReader {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.len - self.offset) as usize;
        let off = self.offset;
        pattern(off, buf.initialize_unfilled_to(n));
        buf.advance(n);
        self.offset += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// Receives and acknowledges every segment after a simulated "made durable" step; returns the transfers
/// completed, in order.
async fn durable_receiver(h: SessionHandle, mut ev: SessionEvents, count: usize) -> Vec<Bytes> {
    let mut done = Vec::new();
    let mut current = Vec::new();
    while done.len() < count {
        let s = next_segment(&mut ev).await;
        current.extend_from_slice(&s.data);
        tokio::task::yield_now().await; // "durable"
        h.ack(s.transfer_id, s.len_so_far(), s.end).await.unwrap();
        if s.end {
            done.push(Bytes::from(std::mem::take(&mut current)));
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_small_transfers_both_directions() {
    let mut a_cfg = cfg("dtn://a/");
    a_cfg.max_segment_size = 100; // several segments per transfer
    let ((a, aev), (b, bev)) = pair(a_cfg, cfg("dtn://b/")).await;
    assert_eq!(a.peer_node_id(), "dtn://b/");
    assert_eq!(b.peer_node_id(), "dtn://a/");
    assert_eq!(a.params().segment_size, 100);
    const N: usize = 200;
    let msgs: Vec<Bytes> = (0..N).map(|i| Bytes::from(format!("bundle {i} ").repeat(i % 50 + 1))).collect();
    let a_rx = tokio::spawn(durable_receiver(a.clone(), aev, N));
    let b_rx = tokio::spawn(durable_receiver(b.clone(), bev, N));
    // All sends are issued before any completes: they pipeline.
    let a_out: Vec<_> = msgs.iter().map(|m| a.send(m.clone())).collect();
    let b_out: Vec<_> = msgs.iter().map(|m| b.send(m.clone())).collect();
    for f in a_out.into_iter().chain(b_out) {
        assert_eq!(timeout(T, f).await.unwrap(), Outcome::Acked);
    }
    assert_eq!(b_rx.await.unwrap(), msgs);
    assert_eq!(a_rx.await.unwrap(), msgs);
    let s = a.stats();
    assert_eq!(s.transfers_acked, N as u64);
    assert_eq!(s.bytes_sent, s.bytes_acked_by_peer);
    assert_eq!(s.in_flight, 0);
    assert_eq!(b.stats().bytes_received, s.bytes_sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_64_mib_with_bounded_memory() {
    const LEN: u64 = 64 << 20;
    let mut a_cfg = cfg("dtn://a/");
    a_cfg.send_window = 4 << 20;
    a_cfg.max_segment_size = 256 << 10;
    let ((a, _aev), (b, mut bev)) = pair(a_cfg, cfg("dtn://b/")).await;
    let out = a.send_reader(PatternReader { offset: 0, len: LEN }, LEN);
    let mut got = 0u64;
    let mut expect = vec![0u8; 256 << 10];
    loop {
        let s = next_segment(&mut bev).await;
        assert_eq!(s.offset, got);
        assert_eq!(s.start, got == 0);
        assert_eq!(s.total_len, Some(LEN));
        pattern(got, &mut expect[..s.data.len()]);
        assert!(s.data[..] == expect[..s.data.len()], "data differs at offset {got}");
        got += s.data.len() as u64;
        b.ack(s.transfer_id, got, s.end).await.unwrap();
        if s.end {
            break;
        }
    }
    assert_eq!(got, LEN);
    assert_eq!(timeout(T, out).await.unwrap(), Outcome::Acked);
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.max_in_flight <= 4 << 20, "sender had {} bytes in flight", sa.max_in_flight);
    assert!(sb.max_rx_unacked <= (4 << 20) + (256 << 10), "receiver held {} unacked bytes", sb.max_rx_unacked);
    assert_eq!(sb.segments_received, LEN / (256 << 10));
}

#[tokio::test]
async fn refused_transfer_and_the_next_one_still_goes() {
    let ((a, _aev), (b, mut bev)) = pair(cfg("dtn://a/"), cfg("dtn://b/")).await;
    let first = a.send(Bytes::from_static(b"unwanted"));
    let second = a.send(Bytes::from_static(b"wanted"));
    let s = next_segment(&mut bev).await;
    b.refuse(s.transfer_id, RefuseReason::Completed).await.unwrap();
    assert_eq!(timeout(T, first).await.unwrap(), Outcome::Refused(RefuseReason::Completed));
    let s = next_segment(&mut bev).await;
    assert_eq!(&s.data[..], b"wanted");
    b.ack(s.transfer_id, s.len_so_far(), true).await.unwrap();
    assert_eq!(timeout(T, second).await.unwrap(), Outcome::Acked);
    // Acknowledging a refused transfer is an error, not a message.
    assert!(b.ack(0, 8, true).await.is_err());
}

#[tokio::test]
async fn refused_mid_transfer_stops_the_segments() {
    let mut a_cfg = cfg("dtn://a/");
    a_cfg.max_segment_size = 1000;
    a_cfg.send_window = 4000;
    let ((a, _aev), (b, mut bev)) = pair(a_cfg, cfg("dtn://b/")).await;
    let out = a.send(Bytes::from(vec![1u8; 1_000_000]));
    let s = next_segment(&mut bev).await;
    b.ack(s.transfer_id, s.len_so_far(), false).await.unwrap();
    b.refuse(s.transfer_id, RefuseReason::NoResources).await.unwrap();
    assert_eq!(timeout(T, out).await.unwrap(), Outcome::Refused(RefuseReason::NoResources));
    // At most a window's worth was ever sent of the million bytes.
    assert!(a.stats().bytes_sent <= 5000);
    assert_eq!(a.stats().in_flight, 0);
}

#[tokio::test]
async fn too_large_for_the_peer_is_not_sent() {
    let mut b_cfg = cfg("dtn://b/");
    b_cfg.transfer_mru = 1000;
    let ((a, _aev), (_b, _bev)) = pair(cfg("dtn://a/"), b_cfg).await;
    assert_eq!(a.send(Bytes::from(vec![0u8; 1001])).await, Outcome::TooLarge { max: 1000 });
    assert_eq!(a.stats().bytes_sent, 0);
}

/// One side terminates while a transfer is in progress: it finishes, later ones do not start, both sides
/// end cleanly with the reason, and `by_peer` tells who started.
async fn terminate_from(initiator_is_a: bool) {
    let mut a_cfg = cfg("dtn://a/");
    a_cfg.max_segment_size = 1000;
    let ((a, mut aev), (b, mut bev)) = pair(a_cfg, cfg("dtn://b/")).await;
    let in_progress = a.send(Bytes::from(vec![5u8; 10_000]));
    let s = next_segment(&mut bev).await;
    if initiator_is_a {
        a.terminate(TermReason::Busy)
    } else {
        b.terminate(TermReason::Busy)
    }
    // The peer hears about it (unless it is the initiator).
    let mut early = Vec::new();
    if initiator_is_a {
        loop {
            match next_event(&mut bev).await {
                Event::Terminating { reason } => break assert_eq!(reason, TermReason::Busy),
                Event::Segment(s) => early.push(s),
                e => panic!("unexpected {e:?}"),
            }
        }
    } else {
        match next_event(&mut aev).await {
            Event::Terminating { reason } => assert_eq!(reason, TermReason::Busy),
            e => panic!("unexpected {e:?}"),
        }
    }
    let late = a.send(Bytes::from_static(b"too late"));
    assert_eq!(timeout(T, late).await.unwrap(), Outcome::Cut { acked: 0 });
    // Finish the in-progress transfer, acknowledging everything (including what arrived meanwhile).
    let mut got = s.len_so_far();
    b.ack(s.transfer_id, got, false).await.unwrap();
    let mut early = early.into_iter();
    while got < 10_000 {
        let s = match early.next() {
            Some(s) => s,
            None => next_segment(&mut bev).await,
        };
        got = s.len_so_far();
        b.ack(s.transfer_id, got, s.end).await.unwrap();
    }
    assert_eq!(timeout(T, in_progress).await.unwrap(), Outcome::Acked);
    let (ea, eb) = (ended(&mut aev).await, ended(&mut bev).await);
    for (e, is_a) in [(ea, true), (eb, false)] {
        assert!(e.is_clean(), "{e:?}");
        assert_eq!(e.reason, Some(TermReason::Busy));
        assert_eq!(e.by_peer, initiator_is_a != is_a, "{e:?}");
    }
}

#[tokio::test]
async fn terminate_by_active_side() {
    terminate_from(true).await;
}

#[tokio::test]
async fn terminate_by_passive_side() {
    terminate_from(false).await;
}

#[tokio::test]
async fn dropping_the_last_handle_terminates() {
    let ((a, _aev), (_b, mut bev)) = pair(cfg("dtn://a/"), cfg("dtn://b/")).await;
    let a2 = a.clone();
    drop(a);
    assert!(timeout(Duration::from_millis(200), a2.closed()).await.is_err(), "a clone keeps it open");
    drop(a2);
    let e = ended(&mut bev).await;
    assert!(e.is_clean() && e.by_peer, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_reports_exactly_what_the_receiver_acknowledged() {
    let mut a_cfg = cfg("dtn://a/");
    a_cfg.max_segment_size = 10_000;
    a_cfg.send_window = 40_000;
    let ((a, _aev), (b, mut bev)) = pair(a_cfg, cfg("dtn://b/")).await;
    let out = a.send(Bytes::from(vec![9u8; 1_000_000]));
    // Acknowledge three segments (made durable), then stop consuming: the sender's window fills.
    let mut acked = 0;
    for _ in 0..3 {
        let s = next_segment(&mut bev).await;
        acked = s.len_so_far();
        b.ack(s.transfer_id, acked, false).await.unwrap();
    }
    wait_until(|| a.stats().bytes_acked_by_peer == acked).await;
    a.abort();
    assert_eq!(timeout(T, out).await.unwrap(), Outcome::Cut { acked });
    assert!(a.ended().unwrap().error.is_some());
    // The receiver sees the connection reset or closed, as an error, after the segments it already had.
    let e = ended(&mut bev).await;
    assert!(e.by_peer && e.error.is_some(), "{e:?}");
    // Later sends on the dead session are cut at 0 at once.
    assert_eq!(a.send(Bytes::from_static(b"x")).await, Outcome::Cut { acked: 0 });
}

#[tokio::test]
async fn receiver_abort_cuts_the_sender() {
    let ((a, _aev), (b, mut bev)) = pair(cfg("dtn://a/"), cfg("dtn://b/")).await;
    let out = a.send(Bytes::from(vec![1u8; 5_000_000]));
    let s = next_segment(&mut bev).await;
    b.ack(s.transfer_id, s.len_so_far(), false).await.unwrap();
    wait_until(|| a.stats().bytes_acked_by_peer == s.len_so_far()).await;
    b.abort();
    assert_eq!(timeout(T, out).await.unwrap(), Outcome::Cut { acked: s.len_so_far() });
}

#[tokio::test]
async fn zero_length_transfer() {
    let ((a, _aev), (b, mut bev)) = pair(cfg("dtn://a/"), cfg("dtn://b/")).await;
    let out = a.send(Bytes::new());
    let s = next_segment(&mut bev).await;
    assert!(s.start && s.end && s.data.is_empty() && s.total_len.is_none());
    b.ack(s.transfer_id, 0, true).await.unwrap();
    assert_eq!(timeout(T, out).await.unwrap(), Outcome::Acked);
}

#[tokio::test]
async fn source_failure_abandons_the_transfer() {
    let ((a, _aev), (b, mut bev)) = pair(cfg("dtn://a/"), cfg("dtn://b/")).await;
    // Claims 1 MiB but ends after 100 bytes.
    let out = a.send_reader(PatternReader { offset: 0, len: 100 }, 1 << 20);
    assert!(matches!(timeout(T, out).await.unwrap(), Outcome::SourceFailed { acked: 0, .. }));
    let next = a.send(Bytes::from_static(b"next"));
    let s = next_segment(&mut bev).await;
    assert_eq!(&s.data[..], b"next");
    b.ack(s.transfer_id, 4, true).await.unwrap();
    assert_eq!(timeout(T, next).await.unwrap(), Outcome::Acked);
}

#[tokio::test]
async fn idle_session_terminates_cleanly() {
    let mut a_cfg = cfg("dtn://a/");
    a_cfg.idle_timeout = Some(Duration::from_millis(300));
    let ((a, mut aev), (_b, mut bev)) = pair(a_cfg, cfg("dtn://b/")).await;
    let t0 = tokio::time::Instant::now();
    let (ea, eb) = (ended(&mut aev).await, ended(&mut bev).await);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(ea.is_clean() && !ea.by_peer && ea.reason == Some(TermReason::IdleTimeout), "{ea:?}");
    assert!(eb.is_clean() && eb.by_peer && eb.reason == Some(TermReason::IdleTimeout), "{eb:?}");
    assert_eq!(a.send(Bytes::from_static(b"late")).await, Outcome::Cut { acked: 0 });
}

/// Sessions run over any byte stream, not only TCP (the WireGuard layer hands them streams of a userspace
/// TCP stack): both directions carry bundles, and the given addresses label the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_an_in_memory_stream() {
    let (x, y) = tokio::io::duplex(64 << 10);
    let (la, lb): (std::net::SocketAddr, std::net::SocketAddr) =
        ("[fd00::a]:4556".parse().unwrap(), "[fd00::b]:4556".parse().unwrap());
    let (a, b) = tokio::join!(
        dtn_tcpcl::connect_stream(x, la, lb, cfg("dtn://a/")),
        dtn_tcpcl::accept_stream(y, lb, la, cfg("dtn://b/"))
    );
    let ((a, aev), (b, bev)) = (a.expect("active side"), b.expect("passive side"));
    assert_eq!(a.peer_node_id(), "dtn://b/");
    assert_eq!(a.params().peer_addr, lb);
    let msgs: Vec<Bytes> = (0..20).map(|i| Bytes::from(vec![i as u8; 1000 * (i + 1)])).collect();
    let a_rx = tokio::spawn(durable_receiver(a.clone(), aev, msgs.len()));
    let b_rx = tokio::spawn(durable_receiver(b.clone(), bev, msgs.len()));
    let outs: Vec<_> = msgs.iter().flat_map(|m| [a.send(m.clone()), b.send(m.clone())]).collect();
    for f in outs {
        assert_eq!(timeout(T, f).await.unwrap(), Outcome::Acked);
    }
    assert_eq!(b_rx.await.unwrap(), msgs);
    assert_eq!(a_rx.await.unwrap(), msgs);
    a.terminate(TermReason::Unknown);
    // The receivers' event queues are gone by now, so the session ends without being "clean"; it still ends.
    let e = timeout(T, b.closed()).await.unwrap();
    assert_eq!(e.reason, Some(TermReason::Unknown), "{e:?}");
}
