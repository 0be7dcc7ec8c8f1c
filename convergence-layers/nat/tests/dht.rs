//! Discovery and rendezvous on a local Mainline testnet: every DHT node binds 127.0.0.1 and bootstraps only
//! from the testnet, so nothing here reaches the public DHT.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dtn_nat::mainline::async_dht::AsyncDht;
use dtn_nat::mainline::{Dht, MutableItem, ServerSettings, Testnet};
use dtn_nat::{
    Announcer, Endpoint, EndpointKind, EndpointRecord, MappingBehaviour, NatClass, NetworkName, Publisher,
    ResolveError, Resolver, Responder, RetransmitPolicy, SelectionConfig, SigningKey, StunClient, StunDiscovery,
};
use tokio::net::UdpSocket;

fn network() -> NetworkName {
    NetworkName::new("test-hills").unwrap()
}

fn testnet(size: usize) -> Testnet {
    Testnet::builder(size).bind_address(Ipv4Addr::LOCALHOST).build().expect("loopback testnet")
}

fn node(bootstrap: &[String]) -> AsyncDht {
    // Loopback answers in microseconds; a short timeout keeps queries that wait on a silent node short.
    Dht::builder()
        .bootstrap(bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("DHT node")
        .as_async()
}

fn quick() -> RetransmitPolicy {
    RetransmitPolicy { initial_rto: Duration::from_millis(100), max_transmissions: 3, final_wait_multiplier: 2 }
}

async fn announced(a: &Announcer) {
    let mut rx = a.announced();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|n| *n >= 1))
        .await
        .expect("announced within 30 s")
        .expect("announcer alive");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dtn-nat-dht-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn record(public_port: u16, nat: NatClass) -> EndpointRecord {
    EndpointRecord {
        published_at: 0,
        nat,
        endpoints: vec![
            Endpoint { kind: EndpointKind::Public, addr: SocketAddr::from(([127, 0, 0, 1], public_port)) },
            Endpoint { kind: EndpointKind::Lan, addr: "192.168.7.2:51820".parse().unwrap() },
        ],
        relays: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_responders_are_found_verified_and_selected_and_fakes_are_not() {
    let net = testnet(6);
    let info_hash = network().stun_info_hash();
    let every = Duration::from_secs(600);

    // Two real responders, each announced by its own DHT node.
    let r1 = Responder::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let r2 = Responder::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a1 = Announcer::spawn(node(&net.bootstrap), info_hash, r1.local_addr().port(), every);
    let a2 = Announcer::spawn(node(&net.bootstrap), info_hash, r2.local_addr().port(), every);
    // Fakes: a port where nothing listens, and a UDP echo service that reflects requests.
    let dead_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let a3 = Announcer::spawn(node(&net.bootstrap), info_hash, dead_port, every);
    let a4 = Announcer::spawn(node(&net.bootstrap), info_hash, echo_port, every);
    for a in [&a1, &a2, &a3, &a4] {
        announced(a).await;
    }

    // The NATed node: its STUN client on its own socket, discovery through its own DHT node.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let (client, _rx) = StunClient::on_socket(sock, quick());
    // Loopback addresses are refused by default; this closed test network allows them. Re-checks are due
    // at once so that the second refresh re-verifies.
    let cfg = SelectionConfig { allow_private: true, reverify_every: Duration::ZERO, ..SelectionConfig::default() };
    let discovery =
        StunDiscovery::new(node(&net.bootstrap), &network(), client.clone(), cfg).with_probe_policy(quick());

    assert!(discovery.selected().is_empty(), "nothing is selected before it is verified");
    let found = discovery.lookup().await;
    assert_eq!(found, 4, "the lookup finds all four announcements");
    assert!(discovery.selected().is_empty(), "found is not verified");
    discovery.verify_due().await;
    let mut chosen: Vec<SocketAddr> = discovery.selected().iter().map(|s| s.server).collect();
    chosen.sort();
    let mut real = vec![r1.local_addr(), r2.local_addr()];
    real.sort();
    assert_eq!(chosen, real, "exactly the two real responders are selected");
    assert!(discovery.selected().iter().all(|s| s.mapped == local));
    assert_eq!(discovery.mapping(Some(local)), MappingBehaviour::Public(local));
    assert_eq!(r1.stats().answered() + r2.stats().answered(), 2, "one Binding each");

    // A responder goes away: the periodic re-check drops it.
    let gone = r2.local_addr();
    drop(r2);
    let after = discovery.refresh().await;
    assert_eq!(after.iter().map(|s| s.server).collect::<Vec<_>>(), vec![r1.local_addr()], "{gone} dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_published_resolved_and_sequence_survives_restarts() {
    let net = testnet(5);
    let dir = temp_dir("publish");
    let key = SigningKey::from_bytes(&[42; 32]);
    let public = key.verifying_key().to_bytes();
    let resolver = Resolver::new(node(&net.bootstrap), &network());
    assert!(resolver.resolve(&public).await.unwrap().is_none(), "nothing published yet");

    let mut publisher = Publisher::new(node(&net.bootstrap), key.clone(), &network(), dir.join("seq")).unwrap();
    let first = record(40001, NatClass::Cone);
    let s1 = publisher.publish(&first).await.unwrap();
    let got = resolver.resolve(&public).await.unwrap().expect("resolved");
    assert_eq!((got.seq, &got.record), (s1, &first));

    // The mapping changed: a higher sequence, and resolvers see the new endpoints.
    let second = record(40002, NatClass::Cone);
    let s2 = publisher.publish(&second).await.unwrap();
    assert!(s2 > s1);
    assert_eq!(resolver.resolve(&public).await.unwrap().unwrap().record, second);

    // Restart: a new process (new DHT node) with the same sequence file goes on above s2.
    drop(publisher);
    let mut restarted = Publisher::new(node(&net.bootstrap), key.clone(), &network(), dir.join("seq")).unwrap();
    let third = record(40003, NatClass::Cone);
    let s3 = restarted.publish(&third).await.unwrap();
    assert!(s3 > s2, "{s3} > {s2}");
    assert_eq!(resolver.resolve(&public).await.unwrap().unwrap().record, third);

    // Even a lost sequence file does not take the number back: the DHT's highest seq is the floor.
    let mut amnesiac = Publisher::new(node(&net.bootstrap), key.clone(), &network(), dir.join("lost-seq")).unwrap();
    let fourth = record(40004, NatClass::Symmetric);
    let s4 = amnesiac.publish(&fourth).await.unwrap();
    assert!(s4 > s3, "{s4} > {s3}");
    let got = resolver.resolve(&public).await.unwrap().unwrap();
    assert_eq!((got.seq, got.record), (s4, fourth.clone()));

    // A forged item (bad signature, higher seq) is refused by the storing nodes and never resolved.
    let forged = MutableItem::new_signed_unchecked(
        public,
        [7; 64],
        &record(6666, NatClass::Public).encode().unwrap(),
        s4 + 100,
        Some(&network().endpoint_salt()),
    );
    let forger = node(&net.bootstrap);
    assert!(forger.put_mutable(forged, None).await.is_err(), "storing nodes verify signatures");
    let got = resolver.resolve(&public).await.unwrap().unwrap();
    assert_eq!((got.seq, got.record), (s4, fourth));

    // A validly signed item that is not a record is reported as such, not trusted.
    let other = SigningKey::from_bytes(&[9; 32]);
    let junk = MutableItem::new(other.clone(), b"\xff not a record", 1, Some(&network().endpoint_salt()));
    forger.put_mutable(junk, None).await.unwrap();
    let err = resolver.resolve(&other.verifying_key().to_bytes()).await.unwrap_err();
    assert!(matches!(err, ResolveError::Record(_)), "{err}");

    // Records are per network: another network's resolver does not see it.
    let elsewhere = Resolver::new(node(&net.bootstrap), &NetworkName::new("coast").unwrap());
    assert!(elsewhere.resolve(&public).await.unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_task_republishes_on_change_and_periodically() {
    let net = testnet(5);
    let dir = temp_dir("task");
    let key = SigningKey::from_bytes(&[5; 32]);
    let public = key.verifying_key().to_bytes();
    let resolver = Resolver::new(node(&net.bootstrap), &network());
    let publisher = Publisher::new(node(&net.bootstrap), key, &network(), dir.join("seq")).unwrap();
    let handle = publisher.spawn(record(1, NatClass::Cone), Duration::from_secs(3600));
    let mut status = handle.status();
    let first = *tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.publications >= 1))
        .await
        .unwrap()
        .unwrap();

    // Same reachability, new timestamp: not worth a publication before the hour is up.
    handle.update(EndpointRecord { published_at: 99, ..record(1, NatClass::Cone) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status.borrow().publications, 1);

    // The public mapping moved: published at once, with a higher sequence.
    handle.update(record(2, NatClass::Cone));
    let second = *tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.publications >= 2))
        .await
        .unwrap()
        .unwrap();
    assert!(second.last_seq > first.last_seq);
    assert_eq!(resolver.resolve(&public).await.unwrap().unwrap().record, record(2, NatClass::Cone));
    drop(handle);

    // Periodic republication without any change.
    let key = SigningKey::from_bytes(&[6; 32]);
    let publisher = Publisher::new(node(&net.bootstrap), key, &network(), dir.join("seq2")).unwrap();
    let handle = publisher.spawn(record(3, NatClass::Cone), Duration::from_millis(200));
    let mut status = handle.status();
    tokio::time::timeout(Duration::from_secs(60), status.wait_for(|s| s.publications >= 3))
        .await
        .expect("republished periodically")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A testnet whose storing nodes keep a single mutable item: storing a second item makes them forget the
/// first, which is how the `mainline` crate "expires" items (it has no time-based expiry to shorten).
async fn forgetful_testnet(size: usize) -> (Vec<AsyncDht>, Vec<String>) {
    let settings = || ServerSettings { max_mutable_values: 1, ..ServerSettings::default() };
    let first = Dht::builder()
        .server_mode()
        .server_settings(settings())
        .no_bootstrap()
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
        .as_async();
    let bootstrap = vec![first.info().await.local_addr().to_string()];
    let mut nodes = vec![first];
    for _ in 1..size {
        nodes.push(
            Dht::builder()
                .server_mode()
                .server_settings(settings())
                .bootstrap(&bootstrap)
                .bind_address(Ipv4Addr::LOCALHOST)
                .build()
                .unwrap()
                .as_async(),
        );
    }
    let mut all = Vec::new();
    for n in &nodes {
        all.push(n.info().await.local_addr().to_string());
    }
    (nodes, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_record_comes_back_with_the_next_republication() {
    let (_nodes, bootstrap) = forgetful_testnet(4).await;
    let dir = temp_dir("expiry");
    let resolver = Resolver::new(node(&bootstrap), &network());
    let key_a = SigningKey::from_bytes(&[1; 32]);
    let key_b = SigningKey::from_bytes(&[2; 32]);
    let pub_a = key_a.verifying_key().to_bytes();

    let mut a = Publisher::new(node(&bootstrap), key_a.clone(), &network(), dir.join("a")).unwrap();
    a.publish(&record(1, NatClass::Cone)).await.unwrap();
    assert!(resolver.resolve(&pub_a).await.unwrap().is_some());

    // Another item pushes A's out of every storing node: A's record has expired.
    let mut b = Publisher::new(node(&bootstrap), key_b, &network(), dir.join("b")).unwrap();
    b.publish(&record(2, NatClass::Cone)).await.unwrap();
    assert!(resolver.resolve(&pub_a).await.unwrap().is_none(), "expired");

    // A's publisher task republishes (here every 300 ms): the record is back.
    drop(a);
    let a = Publisher::new(node(&bootstrap), key_a, &network(), dir.join("a")).unwrap();
    let handle = a.spawn(record(1, NatClass::Cone), Duration::from_millis(300));
    let back = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(r) = resolver.resolve(&pub_a).await.unwrap() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("republished record resolvable again");
    assert_eq!(back.record, record(1, NatClass::Cone));
    drop(handle);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_runs_as_a_task_and_reports_its_selection() {
    let net = testnet(4);
    let r = Responder::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = Announcer::spawn(
        node(&net.bootstrap),
        network().stun_info_hash(),
        r.local_addr().port(),
        Duration::from_secs(600),
    );
    announced(&a).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (client, _rx) = StunClient::on_socket(sock, quick());
    let cfg = SelectionConfig { allow_private: true, ..SelectionConfig::default() };
    let d = Arc::new(StunDiscovery::new(node(&net.bootstrap), &network(), client, cfg).with_probe_policy(quick()));
    let (_task, mut selected) = d.spawn(Duration::from_secs(600));
    let got = tokio::time::timeout(Duration::from_secs(30), selected.wait_for(|s| !s.is_empty()))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(got[0].server, r.local_addr());
}
