//! Discovery over real UDP multicast on this host. Each test uses its own port (a free ephemeral one), so
//! tests run in parallel and never touch dtn7's 3003. Where the host cannot do multicast (no multicast
//! route, e.g. a container with only loopback), each test says so on stderr and skips.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdp};
use std::time::Duration;

use dtn_discovery::dtn7::Dtn7Beacon;
use dtn_discovery::{
    BeaconFormat, DTN7_GROUP_V4, DTN7_GROUP_V6, Discovery, DiscoveryConfig, DiscoveryEvent, DiscoveryHandle, SendFormat,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    StdUdp::bind("0.0.0.0:0").and_then(|s| s.local_addr()).expect("ephemeral UDP port").port()
}

/// A plain socket on `port` that has joined the group, as a discovery node's socket would.
fn member(port: u16) -> std::io::Result<StdUdp> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.join_multicast_v4(&DTN7_GROUP_V4, &Ipv4Addr::UNSPECIFIED)?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(s.into())
}

/// The IPv6 counterpart of [`member`].
fn member_v6(port: u16) -> std::io::Result<StdUdp> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    s.join_multicast_v6(&DTN7_GROUP_V6, 0)?;
    s.set_multicast_loop_v6(true)?;
    s.set_multicast_hops_v6(1)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(s.into())
}

/// Joins the group on `port` and sends one datagram to it; true if it comes back. Otherwise prints why the
/// calling test is skipped, where `cargo test` does not hide it (straight to stderr, not via `eprintln!`).
fn multicast_works(test: &str, port: u16) -> bool {
    multicast_works_on(test, port, false)
}

fn multicast_works_on(test: &str, port: u16, v6: bool) -> bool {
    let group: SocketAddr = if v6 { (DTN7_GROUP_V6, port).into() } else { (DTN7_GROUP_V4, port).into() };
    let probe = || -> std::io::Result<()> {
        let s = if v6 { member_v6(port)? } else { member(port)? };
        s.send_to(b"probe", group)?;
        let mut buf = [0u8; 16];
        let (n, _) = s.recv_from(&mut buf)?;
        if &buf[..n] != b"probe" {
            return Err(std::io::Error::other("a different datagram came back"));
        }
        Ok(())
    };
    match probe() {
        Ok(()) => true,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: multicast to {group} does not work on this host ({e}); \
                 discovery over real sockets was not tested"
            );
            false
        }
    }
}

fn config(node: &str, tcpcl_port: u16, port: u16) -> DiscoveryConfig {
    let mut cfg = DiscoveryConfig::new(node.parse().expect("node ID"), tcpcl_port);
    cfg.port = port;
    cfg.interval = Duration::from_millis(100);
    cfg.timeout_intervals = 3;
    cfg
}

fn start(cfg: DiscoveryConfig) -> (DiscoveryHandle, Receiver<DiscoveryEvent>) {
    Discovery::start(cfg).expect("discovery starts")
}

/// The next event, failing the test after `WAIT`.
async fn next(rx: &mut Receiver<DiscoveryEvent>, what: &str) -> DiscoveryEvent {
    match timeout(WAIT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("event channel closed while waiting for {what}"),
        Err(_) => panic!("no event within {WAIT:?} while waiting for {what}"),
    }
}

fn assert_up(ev: DiscoveryEvent, node: &str, port: u16, format: BeaconFormat) {
    match ev {
        DiscoveryEvent::NeighbourUp { node_id, tcpcl, format: f } => {
            assert_eq!(node_id.to_string(), node);
            assert_eq!(tcpcl.port(), port);
            assert!(!tcpcl.ip().is_unspecified(), "{tcpcl}");
            assert_eq!(f, format);
        }
        other => panic!("expected NeighbourUp for {node}, got {other:?}"),
    }
}

#[tokio::test]
async fn two_nodes_discover_each_other_and_notice_departure() {
    let port = free_port();
    if !multicast_works("two_nodes_discover_each_other_and_notice_departure", port) {
        return;
    }
    let (a, mut a_rx) = start(config("dtn://a/", 4556, port));
    let (b, mut b_rx) = start(config("ipn:2.0", 4600, port));
    assert_up(next(&mut a_rx, "a to see b").await, "ipn:2.0", 4600, BeaconFormat::Dtn7);
    assert_up(next(&mut b_rx, "b to see a").await, "dtn://a/", 4556, BeaconFormat::Dtn7);
    // Each hears its own beacons (multicast loop) and ignores them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.stats().own > 0 && b.stats().own > 0, "{:?} {:?}", a.stats(), b.stats());
    assert!(a_rx.try_recv().is_err(), "no further events while both keep beaconing");

    b.shutdown().await;
    let started = std::time::Instant::now();
    assert_eq!(next(&mut a_rx, "b to go").await, DiscoveryEvent::NeighbourDown { node_id: "ipn:2.0".parse().unwrap() });
    // dtn7's format announces whole seconds, so b's 100 ms period arrives as 1 s: the timeout is 3 × 1 s
    // after b's last beacon.
    let waited = started.elapsed();
    assert!(waited > Duration::from_millis(2500) && waited < Duration::from_millis(4500), "{waited:?}");
    assert_eq!(a.stats().garbage, 0);
    a.shutdown().await;
    assert!(b_rx.recv().await.is_none(), "b's channel closes when b stops");
}

#[tokio::test]
async fn our_format_and_both_formats() {
    let port = free_port();
    if !multicast_works("our_format_and_both_formats", port) {
        return;
    }
    let mut ours = config("dtn://ours/", 4556, port);
    ours.send = SendFormat::Ours;
    let mut both = config("dtn://both/", 4557, port);
    both.send = SendFormat::Both;
    let (a, mut a_rx) = start(ours);
    let (_b, mut b_rx) = start(both);
    assert_up(next(&mut b_rx, "both to see ours").await, "dtn://ours/", 4556, BeaconFormat::Ours);
    // The dtn7 datagram of an interval goes out first.
    assert_up(next(&mut a_rx, "ours to see both").await, "dtn://both/", 4557, BeaconFormat::Dtn7);
    // Two formats, same endpoint: no flapping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a_rx.try_recv().is_err());
    // Our format carries the period in milliseconds: "ours" is gone 3 × 100 ms after its last beacon.
    a.shutdown().await;
    let started = std::time::Instant::now();
    assert_eq!(
        next(&mut b_rx, "ours to go").await,
        DiscoveryEvent::NeighbourDown { node_id: "dtn://ours/".parse().unwrap() }
    );
    assert!(started.elapsed() < Duration::from_millis(2000), "{:?}", started.elapsed());
}

#[tokio::test]
async fn ipv6_only() {
    let port = free_port();
    if !multicast_works_on("ipv6_only", port, true) {
        return;
    }
    let v6 = |node, tcpcl| {
        let mut cfg = config(node, tcpcl, port);
        cfg.ipv4 = false;
        cfg.ipv6 = true;
        cfg
    };
    let (a, mut a_rx) = start(v6("dtn://a6/", 4556));
    let (_b, mut b_rx) = start(v6("dtn://b6/", 4557));
    assert!(a.local_addr_v4().is_none() && a.local_addr_v6().is_some());
    for (rx, node, tcpcl) in [(&mut a_rx, "dtn://b6/", 4557), (&mut b_rx, "dtn://a6/", 4556)] {
        match next(rx, "IPv6 discovery").await {
            DiscoveryEvent::NeighbourUp { node_id, tcpcl: SocketAddr::V6(addr), .. } => {
                assert_eq!((node_id.to_string().as_str(), addr.port()), (node, tcpcl));
            }
            other => panic!("expected an IPv6 NeighbourUp, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn garbage_is_counted_and_ignored() {
    let port = free_port();
    if !multicast_works("garbage_is_counted_and_ignored", port) {
        return;
    }
    let (a, mut a_rx) = start(config("dtn://a/", 4556, port));
    let junk = StdUdp::bind("0.0.0.0:0").expect("socket");
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        b"DTNB\x01\x00".to_vec(),                       // our magic, truncated
        b"DTNB\x09\0\0\0\0\0\0\0\0".to_vec(),           // unsupported version
        vec![0x85, 0x07, 0x03, 0x82, 0x01],             // dtn7 beacon, truncated
        vec![0x9f, 0x07, 0x01, 0xff],                   // indefinite-length array
        vec![0x84, 0x07, 0x01, 0x82, 0x01, 0x00, 0x00], // dtn7 beacon from dtn:none
        vec![
            0x85, 0x07, 0x03, 0x82, 0x01, 0x65, b'/', b'/', b'n', b'1', b'/', 0x00, 0x82, 0x9b, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff,
        ],
        vec![0xab; 5000], // longer than any beacon
    ];
    for g in &garbage {
        junk.send_to(g, (Ipv4Addr::LOCALHOST, port)).expect("unicast garbage");
        junk.send_to(g, (DTN7_GROUP_V4, port)).expect("multicast garbage");
    }
    // Discovery still works after the garbage: a node that starts now is found.
    let (_b, _b_rx) = start(config("dtn://b/", 4600, port));
    assert_up(next(&mut a_rx, "a to see b after garbage").await, "dtn://b/", 4600, BeaconFormat::Dtn7);
    let expected = 2 * garbage.len() as u64;
    let deadline = std::time::Instant::now() + WAIT;
    while a.stats().garbage < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.stats().garbage, expected, "{:?}", a.stats());
}

#[tokio::test]
async fn a_dtn7_node_is_discovered_and_sees_dtn7_beacons_from_us() {
    let port = free_port();
    if !multicast_works("a_dtn7_node_is_discovered_and_sees_dtn7_beacons_from_us", port) {
        return;
    }
    // A listener standing in for dtnd, joined before we start so it hears our first beacon. Async, so that
    // waiting on it does not block the runtime our discovery task runs on.
    let dtnd = member(port).expect("listener");
    dtnd.set_nonblocking(true).expect("non-blocking");
    let dtnd = tokio::net::UdpSocket::from_std(dtnd).expect("tokio socket");
    let (_a, mut a_rx) = start(config("dtn://a/", 4556, port));
    // dtnd 0.21's default beacon for node1 with its TCP CLA on 4556, as its own code encodes it.
    let dtnd_beacon = [
        0x85, 0x07, 0x03, 0x82, 0x01, 0x68, b'/', b'/', b'n', b'o', b'd', b'e', b'1', b'/', 0x00, 0x82, 0x81, 0x82,
        0x63, b't', b'c', b'p', 0x19, 0x11, 0xcc, 0xa0,
    ];
    dtnd.send_to(&dtnd_beacon, (DTN7_GROUP_V4, port)).await.expect("send dtn7 beacon");
    let ev = next(&mut a_rx, "a to see the dtn7 node").await;
    assert_up(ev, "dtn://node1/", 4556, BeaconFormat::Dtn7);

    // What we send on the group is a dtn7 beacon that dtn7 maps to "tcp" at our address.
    let mut buf = [0u8; 2048];
    let ours = loop {
        let (n, _) = timeout(WAIT, dtnd.recv_from(&mut buf)).await.expect("our beacon in time").expect("recv");
        if n == dtnd_beacon.len() && buf[..n] == dtnd_beacon {
            continue; // its own, looped back
        }
        break Dtn7Beacon::decode(&buf[..n]).expect("a dtn7 beacon");
    };
    assert_eq!(ours.eid.to_string(), "dtn://a/");
    assert_eq!(ours.clas, vec![("tcp".to_owned(), Some(4556))]);
    assert_eq!(ours.period_secs, Some(1), "100 ms is announced as dtn7's smallest period, 1 s");
}
