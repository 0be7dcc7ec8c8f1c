//! TCPCLv4 sessions through the tunnel: bundles (as bytes) cross both ways, acknowledged.

mod common;

use bytes::Bytes;
use common::*;
use dtn_tcpcl::{Event, Outcome, SessionConfig, SessionEvents, SessionHandle};
use dtn_wg::tcpcl::{self, TCPCL_PORT};
use tokio::time::timeout;

/// Receives `count` transfers, acknowledging each segment, and returns them in order.
async fn receive(h: SessionHandle, ev: &mut SessionEvents, count: usize) -> Vec<Bytes> {
    let (mut done, mut current) = (Vec::new(), Vec::new());
    while done.len() < count {
        match timeout(T, ev.recv()).await.expect("event in time").expect("events open") {
            Event::Segment(s) => {
                current.extend_from_slice(&s.data);
                h.ack(s.transfer_id, s.len_so_far(), s.end).await.unwrap();
                if s.end {
                    done.push(Bytes::from(std::mem::take(&mut current)));
                }
            }
            Event::Ended(e) => panic!("session ended: {e:?}"),
            _ => {}
        }
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_cross_both_ways_through_the_tunnel() {
    let (a, b) = pair().await;
    let listener = b.listen(TCPCL_PORT).unwrap();
    let (ra, rb) = tokio::join!(
        tcpcl::connect(&a, b.public_key(), TCPCL_PORT, SessionConfig::new("dtn://a/")),
        tcpcl::accept(&listener, SessionConfig::new("dtn://b/"))
    );
    let ((ha, mut eva), (peer, hb, mut evb)) = (ra.unwrap(), rb.unwrap());
    // The passive side knows who connected by the WireGuard key, not by what TCPCL claims.
    assert_eq!(peer, a.public_key());
    assert_eq!(ha.peer_node_id(), "dtn://b/");
    assert_eq!(hb.peer_node_id(), "dtn://a/");
    assert_eq!(ha.params().peer_addr.ip(), b.tunnel_addr());

    let bundles: Vec<Bytes> = [100usize, 64 << 10, 1 << 20, 3 << 20]
        .iter()
        .enumerate()
        .map(|(i, &n)| Bytes::from((0..n).map(|j| (j * 7 + i) as u8).collect::<Vec<u8>>()))
        .collect();
    let (hb2, ha2) = (hb.clone(), ha.clone());
    let n = bundles.len();
    let at_b = tokio::spawn(async move { receive(hb2, &mut evb, n).await });
    let at_a = tokio::spawn(async move { receive(ha2, &mut eva, n).await });
    let sends: Vec<_> = bundles.iter().flat_map(|x| [ha.send(x.clone()), hb.send(x.clone())]).collect();
    for s in sends {
        assert_eq!(timeout(T, s).await.unwrap(), Outcome::Acked);
    }
    assert!(at_b.await.unwrap() == bundles);
    assert!(at_a.await.unwrap() == bundles);
    // All of it went through WireGuard: at least the bundle bytes crossed the UDP socket each way.
    let total: usize = bundles.iter().map(|x| x.len()).sum();
    assert!(a.stats().tx_bytes > total as u64 && b.stats().tx_bytes > total as u64);
}
