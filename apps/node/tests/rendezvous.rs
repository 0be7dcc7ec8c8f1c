//! Rendezvous on a local Mainline testnet: every DHT node binds 127.0.0.1 and bootstraps only from the
//! testnet, so nothing here reaches the public DHT. Two nodes that know only each other's identity key find
//! each other's address through their endpoint records and exchange bundles through the tunnel.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{identity, wg_config};
use dtn_nat::mainline::{Dht, Testnet};
use dtn_nat::{EndpointKind, NatClass, NetworkName, Resolver};
use dtn_node::{Node, NodeConfig, NodeHandle, RendezvousTiming, WgPeer};

const NETWORK: &str = "test-rendezvous";

fn config(dir: &std::path::Path, name: &str, peers: Vec<WgPeer>, bootstrap: &[SocketAddr]) -> NodeConfig {
    let mut cfg = wg_config(dir, name, peers);
    if let Some(wg) = cfg.wg.as_mut() {
        wg.network = NETWORK.into();
        wg.dht_bootstrap = bootstrap.to_vec();
        // Short timers so that the test takes seconds; loopback STUN servers are allowed in this closed
        // network.
        wg.rendezvous = RendezvousTiming {
            discovery_every: Duration::from_secs(1),
            republish_every: Duration::from_secs(60),
            resolve_every: Duration::from_secs(1),
            announce_every: Duration::from_secs(60),
            allow_private: true,
            dht_request_timeout: Some(Duration::from_millis(300)),
        };
    }
    cfg
}

/// A DHT testnet on loopback (kept alive by the first value) and its bootstrap addresses.
fn testnet() -> (Testnet, Vec<SocketAddr>) {
    let net = Testnet::builder(5).bind_address(Ipv4Addr::LOCALHOST).build().expect("loopback testnet");
    let bootstrap = net.bootstrap.iter().map(|a| a.parse().unwrap()).collect();
    (net, bootstrap)
}

/// Reads endpoint records from the testnet, as any node of the network would.
fn resolver(net: &Testnet) -> Resolver {
    let dht = Dht::builder()
        .bootstrap(&net.bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .as_async();
    Resolver::new(dht, &NetworkName::new(NETWORK).unwrap())
}

async fn recv(h: &NodeHandle, ep: &str) -> dtn_node::Delivery {
    tokio::time::timeout(Duration::from_secs(60), h.recv(ep.parse().unwrap())).await.expect("delivery in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_know_only_keys_meet_through_their_records() {
    let (net, bootstrap) = testnet();
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (identity(dir.path(), "a"), identity(dir.path(), "b"));

    // The STUN responder: it shares its tunnel's socket and announces it in the DHT.
    let mut scfg = config(dir.path(), "s", vec![], &bootstrap);
    scfg.wg.as_mut().unwrap().stun_responder = true;
    let s = Node::start(scfg).await.unwrap();
    // a and b: each other's key, no address.
    let a = Node::start(config(dir.path(), "a", vec![WgPeer::new(kb, None)], &bootstrap)).await.unwrap();
    let b = Node::start(config(dir.path(), "b", vec![WgPeer::new(ka, None)], &bootstrap)).await.unwrap();
    let (ha, hb) = (a.handle(), b.handle());
    ha.register("dtn://a/~in".parse().unwrap()).unwrap();
    hb.register("dtn://b/~in".parse().unwrap()).unwrap();

    // a's record carries the public mapping its STUN client learnt over the tunnel's own socket (on
    // loopback: the socket's address, so a classifies itself as public).
    let resolver = resolver(&net);
    let a_addr = a.wg_addr().unwrap();
    let mut learnt = false;
    for _ in 0..60 {
        if let Ok(Some(r)) = resolver.resolve(ka.as_bytes()).await
            && r.record.nat == NatClass::Public
            && r.record.endpoints.iter().any(|e| e.kind == EndpointKind::Public && e.addr == a_addr)
        {
            learnt = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(learnt, "a's record never carried its STUN mapping");

    let to_b = ha.send("dtn://b/~in".parse().unwrap(), b"found you".to_vec()).await.unwrap();
    let to_a = hb.send("dtn://a/~in".parse().unwrap(), b"found you too".to_vec()).await.unwrap();
    let got = recv(&hb, "dtn://b/~in").await;
    assert_eq!((got.id, got.payload), (to_b, b"found you".to_vec()));
    let got = recv(&ha, "dtn://a/~in").await;
    assert_eq!((got.id, got.payload), (to_a, b"found you too".to_vec()));

    // The path is the one the records named: each side sends to the other's tunnel socket.
    let ea = a.wg_endpoint().unwrap();
    let st = ea.peer_status(kb).await.unwrap();
    assert_eq!(st.endpoint, b.wg_addr());
    a.shutdown().await;
    b.shutdown().await;
    s.shutdown().await;
}

/// Two nodes that will not punch (`via_relay`, as behind a carrier-grade NAT) and know only each other's
/// key: each finds the relay in the DHT, learns its key over STUN, proves it with a handshake and keeps a
/// session with it; bundles then cross the relay as an ordinary DTN hop, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_cannot_punch_meet_through_a_relay() {
    let (net, bootstrap) = testnet();
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb, kr) = (identity(dir.path(), "a"), identity(dir.path(), "b"), identity(dir.path(), "r"));

    // The relay knows nobody: it takes whoever comes.
    let mut rcfg = config(dir.path(), "r", vec![], &bootstrap);
    rcfg.wg.as_mut().unwrap().relay = true;
    let r = Node::start(rcfg).await.unwrap();
    let natted = |name: &str, peer| {
        let mut c = config(dir.path(), name, vec![WgPeer::new(peer, None)], &bootstrap);
        c.wg.as_mut().unwrap().via_relay = true;
        c
    };
    let a = Node::start(natted("a", kb)).await.unwrap();
    let b = Node::start(natted("b", ka)).await.unwrap();
    let (ha, hb, hr) = (a.handle(), b.handle(), r.handle());
    ha.register("dtn://a/~in".parse().unwrap()).unwrap();
    hb.register("dtn://b/~in".parse().unwrap()).unwrap();

    let to_b = ha.send("dtn://b/~in".parse().unwrap(), b"via the relay".to_vec()).await.unwrap();
    let to_a = hb.send("dtn://a/~in".parse().unwrap(), b"and back".to_vec()).await.unwrap();
    let got = recv(&hb, "dtn://b/~in").await;
    assert_eq!((got.id, got.payload), (to_b, b"via the relay".to_vec()));
    let got = recv(&ha, "dtn://a/~in").await;
    assert_eq!((got.id, got.payload), (to_a, b"and back".to_vec()));

    // They came through the relay: it stored both and passed them on, and a and b never had a tunnel to
    // each other.
    // A transmission counts once the receiver acknowledged it, which may come just after the delivery.
    let mut st = hr.stats().await.unwrap();
    for _ in 0..100 {
        if st.stored >= 2 && st.forwarded >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = hr.stats().await.unwrap();
    }
    assert!(st.stored >= 2 && st.forwarded >= 2, "{st:?}");
    let ea = a.wg_endpoint().unwrap();
    assert_eq!(ea.peer_status(kb).await.unwrap().endpoint, None);
    assert!(ea.peer_status(kr).await.unwrap().last_handshake.is_some());
    // The relay serves them as peers it was never configured with, named by their keys.
    let er = r.wg_endpoint().unwrap();
    assert!(er.peer_status(ka).await.is_some() && er.peer_status(kb).await.is_some());

    // b's endpoint record names the relay, so that a peer that can punch knows where else to find it.
    let resolver = resolver(&net);
    let mut listed = false;
    for _ in 0..60 {
        if let Ok(Some(rec)) = resolver.resolve(kb.as_bytes()).await
            && rec.record.relays.contains(kr.as_bytes())
        {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(listed, "b's record never named its relay");
    a.shutdown().await;
    b.shutdown().await;
    r.shutdown().await;
}

#[tokio::test]
async fn a_relay_without_rendezvous_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::wg_config(dir.path(), "r", vec![]);
    cfg.wg.as_mut().unwrap().relay = true;
    let err = Node::start(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("needs rendezvous"), "{err}");
}

/// No flag on a: its handshakes to b's published address go unanswered (b does not know a's key and
/// refuses them, as a firewall that drops them would), so after the punch rounds `decide` turns to a relay
/// by itself, and a's bundle reaches b through the relay b uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_punching_falls_back_to_a_relay_by_itself() {
    let (_net, bootstrap) = testnet();
    let dir = tempfile::tempdir().unwrap();
    let (kb, kr) = (identity(dir.path(), "b"), identity(dir.path(), "r"));
    let mut rcfg = config(dir.path(), "r", vec![], &bootstrap);
    rcfg.wg.as_mut().unwrap().relay = true;
    let r = Node::start(rcfg).await.unwrap();
    let mut bcfg = config(dir.path(), "b", vec![], &bootstrap);
    bcfg.wg.as_mut().unwrap().via_relay = true;
    let b = Node::start(bcfg).await.unwrap();
    let a = Node::start(config(dir.path(), "a", vec![WgPeer::new(kb, None)], &bootstrap)).await.unwrap();
    let (ha, hb) = (a.handle(), b.handle());
    hb.register("dtn://b/~in".parse().unwrap()).unwrap();

    let id = ha.send("dtn://b/~in".parse().unwrap(), b"after four silent rounds".to_vec()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(120), hb.recv("dtn://b/~in".parse().unwrap()))
        .await
        .expect("delivery in time")
        .unwrap();
    assert_eq!((got.id, got.payload), (id, b"after four silent rounds".to_vec()));
    let ea = a.wg_endpoint().unwrap();
    assert!(ea.peer_status(kr).await.unwrap().last_handshake.is_some(), "a reached the relay");
    assert!(ea.peer_status(kb).await.unwrap().last_handshake.is_none(), "never a tunnel to b");
    assert!(b.wg_endpoint().unwrap().stats().refused_handshakes >= 1);
    a.shutdown().await;
    b.shutdown().await;
    r.shutdown().await;
}
