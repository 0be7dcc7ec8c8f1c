//! An open endpoint (a relay) takes WireGuard sessions from keys it was not configured with, names each by
//! its identity key, and holds no more of them than its cap; a closed endpoint still refuses them.

mod common;

use std::time::Duration;

use common::*;
use dtn_wg::{Endpoint, Error, Identity, PeerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// An identity whose public key has the given sign bit (the bit a WireGuard key does not carry).
fn identity_with_sign(sign: u8) -> Identity {
    (10u8..=255)
        .map(|n| Identity::from_seed(&[n; 32]))
        .find(|i| i.public().as_bytes()[31] >> 7 == sign)
        .expect("a seed with that sign bit")
}

async fn open(cap: usize) -> Endpoint {
    let mut c = cfg();
    c.accept_unknown_peers = cap;
    Endpoint::bind(&id(1), c).await.unwrap()
}

/// A stranger that knows the open endpoint's key and address.
async fn stranger(who: &Identity, open: &Endpoint) -> Endpoint {
    let mut c = cfg();
    c.peers.push(PeerConfig::new(open.public_key(), Some(open.local_addr())));
    c.connect_timeout = Duration::from_secs(3);
    Endpoint::bind(who, c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_accepted_and_named_by_its_identity_key() {
    let relay = open(8).await;
    let listener = relay.listen(7000).unwrap();
    // Both signs of the Edwards x coordinate: the WireGuard key alone cannot tell them apart.
    for sign in [0u8, 1] {
        let who = identity_with_sign(sign);
        let s = stranger(&who, &relay).await;
        let (c, a) = tokio::join!(s.connect(relay.public_key(), 7000), timeout(T, listener.accept()));
        let mut c = c.unwrap();
        let mut a = a.expect("accepted in time").unwrap();
        assert_eq!(a.peer(), who.public(), "sign {sign}");
        assert_eq!(a.peer_addr().ip(), who.public().tunnel_addr());
        c.write_all(b"through the relay").await.unwrap();
        let mut got = [0u8; 17];
        timeout(T, a.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"through the relay");
        // The relay can answer on the connection, and reach the stranger by key once it is named.
        a.write_all(b"ok").await.unwrap();
        let mut ok = [0u8; 2];
        timeout(T, c.read_exact(&mut ok)).await.unwrap().unwrap();
        assert_eq!(&ok, b"ok");
        let st = relay.peer_status(who.public()).await.expect("the stranger is a peer now");
        assert_eq!(st.endpoint, Some(s.local_addr()));
    }
    let st = relay.stats();
    assert_eq!(st.refused_handshakes + st.spoofed, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_endpoint_refuses_strangers() {
    let closed = open(0).await;
    let _l = closed.listen(7000).unwrap();
    let s = stranger(&id(5), &closed).await;
    assert!(matches!(s.connect(closed.public_key(), 7000).await, Err(Error::TimedOut(_))));
    assert!(closed.stats().refused_handshakes >= 1, "{:?}", closed.stats());
    assert!(closed.peer_status(id(5).public()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_beyond_the_cap_are_refused() {
    let relay = open(1).await;
    let listener = relay.listen(7000).unwrap();
    let first = stranger(&id(5), &relay).await;
    let (c, a) = tokio::join!(first.connect(relay.public_key(), 7000), timeout(T, listener.accept()));
    let (_c, a) = (c.unwrap(), a.expect("accepted in time").unwrap());
    assert_eq!(a.peer(), id(5).public());
    // The only slot is taken and its holder is active: the next stranger gets nothing.
    let second = stranger(&id(6), &relay).await;
    assert!(matches!(second.connect(relay.public_key(), 7000).await, Err(Error::TimedOut(_))));
    assert!(relay.stats().refused_handshakes >= 1, "{:?}", relay.stats());
    assert!(relay.peer_status(id(6).public()).await.is_none());
    // The first one is still served.
    assert!(relay.peer_status(id(5).public()).await.is_some());
}
