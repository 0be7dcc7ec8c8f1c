//! Nodes that talk only through WireGuard tunnels on loopback (no TCPCL listener, no discovery).

mod common;

use std::time::Duration;

use common::{identity, wait_for_peer, wg_config as config};
use dtn_core::engine::Submission;
use dtn_core::store::Priority;
use dtn_node::{Identity, LinkClass, Node, NodeHandle, WgPeer};

async fn recv(h: &NodeHandle, ep: &str) -> dtn_node::Delivery {
    tokio::time::timeout(Duration::from_secs(20), h.recv(ep.parse().unwrap())).await.expect("delivery in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_both_ways_through_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (identity(dir.path(), "a"), identity(dir.path(), "b"));
    // a knows b's key only (b dials it); b knows a's key and address. The link is metered by default, so
    // bulk bundles wait for a free link (to any peer); normal and expedited ones go.
    let a = Node::start(config(dir.path(), "a", vec![WgPeer::new(kb, None)])).await.unwrap();
    assert_eq!(a.wg_identity(), Some(ka));
    let b = Node::start(config(dir.path(), "b", vec![WgPeer::new(ka, a.wg_addr())])).await.unwrap();
    let (ha, hb) = (a.handle(), b.handle());
    ha.register("dtn://a/~in".parse().unwrap()).unwrap();
    hb.register("dtn://b/~in".parse().unwrap()).unwrap();
    wait_for_peer(&ha).await;
    wait_for_peer(&hb).await;

    let expedited = |to: &str, data: &[u8]| {
        let mut s = Submission::new(0, to.parse().unwrap(), data.to_vec());
        s.priority = Priority::EXPEDITED;
        s
    };
    let mut s = Submission::new(0, "dtn://far/~in".parse().unwrap(), b"bulk, not worth paying for".to_vec());
    s.priority = Priority::BULK;
    let bulk = ha.submit(s).await.unwrap()[0].clone();
    let relayed = ha.submit(expedited("dtn://far/~in", b"alarm for far")).await.unwrap();
    let to_b = ha.submit(expedited("dtn://b/~in", b"alarm for b")).await.unwrap();
    let to_a = hb.submit(expedited("dtn://a/~in", b"alarm for a")).await.unwrap();
    let got = recv(&hb, "dtn://b/~in").await;
    assert_eq!((vec![got.id], got.payload), (to_b, b"alarm for b".to_vec()));
    let got = recv(&ha, "dtn://a/~in").await;
    assert_eq!((vec![got.id], got.payload), (to_a, b"alarm for a".to_vec()));
    // For a third node, b got a replica of the expedited bundle and none of the bulk one: the contact is
    // metered (over a wired one both would be replicated).
    let held = |h: &NodeHandle| h.list(100).unwrap().into_iter().map(|m| m.id).collect::<Vec<_>>();
    for _ in 0..100 {
        if held(&hb).contains(&relayed[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held(&hb).contains(&relayed[0]), "the expedited replica did not reach b");
    assert!(!held(&hb).contains(&bulk), "the bulk bundle crossed a metered link");
    let ep = b.wg_endpoint().unwrap();
    assert!(ep.stats().rx_bytes > 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wired_peer_carries_every_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (identity(dir.path(), "a"), identity(dir.path(), "b"));
    let mut pb = WgPeer::new(kb, None);
    pb.class = Some(LinkClass::Wired);
    let a = Node::start(config(dir.path(), "a", vec![pb])).await.unwrap();
    let mut pa = WgPeer::new(ka, a.wg_addr());
    pa.class = Some(LinkClass::Wired);
    let b = Node::start(config(dir.path(), "b", vec![pa])).await.unwrap();
    let (ha, hb) = (a.handle(), b.handle());
    hb.register("dtn://b/~in".parse().unwrap()).unwrap();
    let to_b = ha.send("dtn://b/~in".parse().unwrap(), vec![5; 2 << 20]).await.unwrap();
    let got = recv(&hb, "dtn://b/~in").await;
    assert_eq!((got.id, got.payload.len()), (to_b, 2 << 20));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_peer_key_gets_no_contact() {
    let dir = tempfile::tempdir().unwrap();
    let kc = identity(dir.path(), "c");
    let a = Node::start(config(dir.path(), "a", vec![WgPeer::new(kc, None)])).await.unwrap();
    // c has a's address but a key that is not a's: its handshakes are made for another node and a drops them.
    let wrong = Identity::generate().unwrap().public();
    let c = Node::start(config(dir.path(), "c", vec![WgPeer::new(wrong, a.wg_addr())])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(a.handle().peers().await.unwrap().is_empty());
    assert!(c.handle().peers().await.unwrap().is_empty());
    let st = a.wg_endpoint().unwrap().stats();
    // c's initiations did arrive and were refused, so the test is not passing for want of traffic.
    assert!(st.rx_datagrams > 0 && st.rejected + st.refused_handshakes > 0, "{st:?}");
    a.shutdown().await;
    c.shutdown().await;
}
