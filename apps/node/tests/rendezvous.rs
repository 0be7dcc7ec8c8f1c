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

async fn recv(h: &NodeHandle, ep: &str) -> dtn_node::Delivery {
    tokio::time::timeout(Duration::from_secs(60), h.recv(ep.parse().unwrap())).await.expect("delivery in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_know_only_keys_meet_through_their_records() {
    let net = Testnet::builder(5).bind_address(Ipv4Addr::LOCALHOST).build().expect("loopback testnet");
    let bootstrap: Vec<SocketAddr> = net.bootstrap.iter().map(|a| a.parse().unwrap()).collect();
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
    let dht = Dht::builder()
        .bootstrap(&net.bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .as_async();
    let resolver = Resolver::new(dht, &NetworkName::new(NETWORK).unwrap());
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
