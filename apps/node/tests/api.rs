//! The application API end to end on one node: a real LMDB store in a temporary directory, the HTTP API on
//! loopback, and the blocking client the `dtn` command uses.

use std::time::Duration;

use dtn_client::{Client, ClientError, SendOptions};
use dtn_node::{Node, NodeConfig};

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut cfg = NodeConfig::new("dtn://solo/".parse().unwrap(), dir.join("store"));
    cfg.tcpcl = None;
    cfg.discovery = false;
    cfg.api = Some("127.0.0.1:0".parse().unwrap());
    cfg.seed = 7;
    cfg
}

/// Runs blocking client calls off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_and_restart_keep_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    let ids = blocking(move || {
        c.register("dtn://solo/~in").unwrap();
        let a = c.send("dtn://solo/~in", &b"first"[..], Some(5), &SendOptions::default()).unwrap();
        let b = c.send("dtn://solo/~in", &b"second"[..], Some(6), &SendOptions::default()).unwrap();
        let got = c.recv("dtn://solo/~in", Duration::from_secs(5), false).unwrap().expect("a bundle");
        assert_eq!((got.id.as_str(), &got.payload[..]), (a.id.as_str(), &b"first"[..]));
        (a.id, b.id)
    })
    .await;
    node.shutdown().await;

    // The second bundle was never taken: it is delivered after the restart, the first is not.
    let node = Node::start(config(dir.path())).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    blocking(move || {
        let got = c.recv("dtn://solo/~in", Duration::from_secs(5), false).unwrap().expect("the second bundle");
        assert_eq!((got.id.as_str(), &got.payload[..]), (ids.1.as_str(), &b"second"[..]));
        assert!(c.recv("dtn://solo/~in", Duration::ZERO, false).unwrap().is_none(), "delivered twice");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_ack_hands_a_bundle_to_one_reader_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    blocking(move || {
        c.register("dtn://solo/~m").unwrap();
        c.send("dtn://solo/~m", &b"x"[..], Some(1), &SendOptions::default()).unwrap();
        let got = c.recv("dtn://solo/~m", Duration::from_secs(5), true).unwrap().expect("a bundle");
        assert!(c.recv("dtn://solo/~m", Duration::ZERO, true).unwrap().is_none(), "handed out twice");
        c.ack(&got.id).unwrap();
        assert!(matches!(c.ack(&got.id), Err(ClientError::Node(_))), "acknowledged twice");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_list_show_delete_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    blocking(move || {
        let payloads: Vec<Vec<u8>> = (0..500u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let ids = c.send_batch("dtn://far/~data", &payloads).unwrap();
        assert_eq!(ids.len(), 500);
        let listed = c.list().unwrap();
        assert_eq!(listed.len(), 500);
        let shown = c.show(&ids[7]).unwrap();
        assert_eq!(shown["destination"], "dtn://far/~data");
        let raw = c.raw(&ids[7]).unwrap();
        let b = dtn_core::bpv7::Bundle::decode(&raw).unwrap();
        assert_eq!(b.payload(), 7u32.to_be_bytes());
        c.delete(&ids[7]).unwrap();
        assert!(matches!(c.show(&ids[7]), Err(ClientError::Node(m)) if m.contains("not stored")));
        assert!(matches!(c.delete(&ids[7]), Err(ClientError::Node(_))));
        let stats = c.stats().unwrap();
        assert_eq!(stats["store"]["bundles"], 499);
        assert_eq!(stats["deleted"], 1);
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_one_clear_line_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let addr = node.api_addr().unwrap();
    let c = Client::new(addr);
    blocking(move || {
        let e = c.send("not an eid", &b"x"[..], Some(1), &SendOptions::default()).unwrap_err().to_string();
        assert!(e.contains("bad destination"), "{e}");
        assert!(!e.contains('\n'), "{e:?}");
        let e = c.import(b"\x00garbage").unwrap_err().to_string();
        assert!(e.contains("not a bundle"), "{e}");
        let e = c.show("dtn://x/-1").unwrap_err().to_string();
        assert!(e.contains("not a bundle ID"), "{e}");
        // Nothing was stored by the bad requests; a good batch of one goes through.
        assert_eq!(c.list().unwrap().len(), 0);
        assert_eq!(c.send_batch("dtn://far/", &[vec![1; 10]]).unwrap().len(), 1);
        // Still serving.
        c.send("dtn://far/", &b"ok"[..], Some(2), &SendOptions::default()).unwrap();
        assert_eq!(c.list().unwrap().len(), 2);
    })
    .await;
    node.shutdown().await;
    // Nothing listens any more: the client says so in one line.
    let e = blocking(move || Client::new(addr).stats().unwrap_err()).await;
    assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_takes_an_exported_bundle_once() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let na = Node::start(config(a.path())).await.unwrap();
    let mut cb = config(b.path());
    cb.node_id = "dtn://other/".parse().unwrap();
    let nb = Node::start(cb).await.unwrap();
    let (ca, cb) = (Client::new(na.api_addr().unwrap()), Client::new(nb.api_addr().unwrap()));
    blocking(move || {
        let sent = ca.send("dtn://other/~in", &b"carried by hand"[..], Some(15), &SendOptions::default()).unwrap();
        let raw = ca.raw(&sent.id).unwrap();
        cb.register("dtn://other/~in").unwrap();
        cb.import(&raw).unwrap();
        cb.import(&raw).unwrap();
        let got = cb.recv("dtn://other/~in", Duration::from_secs(5), false).unwrap().expect("imported bundle");
        assert_eq!(got.payload, b"carried by hand");
        assert!(cb.recv("dtn://other/~in", Duration::ZERO, false).unwrap().is_none());
    })
    .await;
    na.shutdown().await;
    nb.shutdown().await;
}

/// Writes a raw HTTP request (the client library would not send a lying Content-Length) and returns the
/// status line, or what reading it gave.
/// A raw request's whole answer, headers included.
fn raw_answer(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    // No half-close: the server takes the end of the request stream for a client gone.
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn raw_request(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_payloads_are_stored_in_parts_and_delivered_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.fragment_payload = Some(64 << 10);
    let node = Node::start(cfg).await.unwrap();
    let addr = node.api_addr().unwrap();
    let c = Client::new(addr);
    blocking(move || {
        c.register("dtn://solo/~in").unwrap();
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 256) as u8).collect();
        let sent = c
            .send(
                "dtn://solo/~in",
                std::io::Cursor::new(data.clone()),
                Some(data.len() as u64),
                &SendOptions::default(),
            )
            .unwrap();
        assert_eq!(sent.fragments, 16, "1,000,003 bytes in parts of 64 KiB");
        let got = c.recv("dtn://solo/~in", Duration::from_secs(10), false).unwrap().expect("the payload");
        assert_eq!(got.id, sent.id);
        assert!(got.payload == data, "the payload came back changed ({} bytes)", got.payload.len());

        // A body that ends before its Content-Length: the parts already stored are deleted.
        let head = "POST /send?dst=dtn://solo/~in HTTP/1.1\r\nhost: x\r\ncontent-length: 500000\r\n\r\n";
        let status = raw_request(addr, head, &vec![1u8; 300_000]);
        assert!(!status.contains(" 200 "), "a cut body was accepted: {status}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !c.list().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "parts of a cut payload stay: {:?}", c.list().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            c.recv("dtn://solo/~in", Duration::from_secs(1), false).unwrap().is_none(),
            "a cut payload was delivered"
        );

        // Without a length, a payload longer than one part is refused with a clear answer.
        let head = "POST /send?dst=dtn://solo/~in HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut body = format!("{:x}\r\n", 100_000).into_bytes();
        body.extend(vec![2u8; 100_000]);
        body.extend(b"\r\n0\r\n\r\n");
        let status = raw_request(addr, head, &body);
        assert!(status.contains(" 411 "), "{status}");
        // The node still serves.
        c.send("dtn://solo/~in", &b"after"[..], Some(5), &SendOptions::default()).unwrap();
        assert_eq!(c.recv("dtn://solo/~in", Duration::from_secs(5), false).unwrap().unwrap().payload, b"after");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_clock_dates_bundles_by_their_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.has_clock = false;
    let node = Node::start(cfg).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    let id = blocking(move || {
        c.register("dtn://solo/~age").unwrap();
        let id = c.send("dtn://solo/~age", &b"reading"[..], Some(7), &SendOptions::default()).unwrap().id;
        // Created with time 0: the ID says so.
        assert!(id.starts_with("dtn://solo/-0-"), "{id}");
        std::thread::sleep(Duration::from_millis(300));
        let mut s = c.subscribe("dtn://solo/~age", false, usize::MAX).unwrap();
        let d = s.next(Duration::from_secs(5)).unwrap().expect("the bundle");
        assert_eq!((d.creation_time, &d.payload[..]), (0, &b"reading"[..]));
        let age = d.age_ms.expect("a bundle from a clockless source has an age");
        assert!((300..10_000).contains(&age), "age {age} ms");
        s.close();
        id
    })
    .await;
    node.shutdown().await;

    // Restarted, the time base goes on from where it was: a new bundle gets another ID, and /recv gives
    // the age in a header.
    let mut cfg = config(dir.path());
    cfg.has_clock = false;
    let node = Node::start(cfg).await.unwrap();
    let addr = node.api_addr().unwrap();
    blocking(move || {
        let c = Client::new(addr);
        let id2 = c.send("dtn://solo/~age", &b"later"[..], Some(5), &SendOptions::default()).unwrap().id;
        assert_ne!(id, id2);
        let head = raw_answer(
            addr,
            "GET /recv?endpoint=dtn://solo/~age&wait=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"",
        );
        assert!(head.contains("x-creation-time: 0"), "{head}");
        assert!(head.contains("x-bundle-age: "), "{head}");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_beyond_the_quota_is_refused_with_507_and_what_was_accepted_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.quota = 256 << 10;
    let node = Node::start(cfg).await.unwrap();
    let addr = node.api_addr().unwrap();
    let accepted = blocking(move || {
        let c = Client::new(addr);
        let mut accepted = Vec::new();
        let mut refused = None;
        for i in 0..40u8 {
            match c.send_batch("dtn://elsewhere/~x", &[vec![i; 20_000]]) {
                Ok(ids) => accepted.extend(ids),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("the quota refuses at some point");
        assert!(matches!(&e, ClientError::Node(m) if m.contains("store full")), "{e}");
        let head = raw_answer(addr, "POST /send/batch?dst=dtn://elsewhere/~x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 20004\r\n\r\n", &{
            let mut b = 20_000u32.to_be_bytes().to_vec();
            b.extend(vec![1u8; 20_000]);
            b
        });
        assert!(head.starts_with("HTTP/1.1 507"), "{head:?}");
        assert!(accepted.len() >= 5, "{} accepted", accepted.len());
        accepted
    })
    .await;
    node.shutdown().await;
    // Everything accepted is still there after a restart.
    let mut cfg = config(dir.path());
    cfg.quota = 256 << 10;
    let node = Node::start(cfg).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    blocking(move || {
        let listed: Vec<String> = c.list().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_string()).collect();
        for id in &accepted {
            assert!(listed.contains(id), "{id} was accepted and is gone");
        }
    })
    .await;
    node.shutdown().await;
}

/// Over the WebSocket with manual acknowledgement, a bundle is the client's until it acknowledges it: what
/// it gives back comes again on the same socket, what it did not acknowledge before closing comes again on
/// the next, in the order it was first sent, and what it acknowledged never comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_manual_ack_gives_back_what_was_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    blocking(move || {
        let ep = "dtn://solo/~ws";
        c.register(ep).unwrap();
        // Small ones (one of them empty), one stored in parts, and one more after it.
        let mut payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + i as usize]).collect();
        payloads[2].clear();
        let mut ids = c.send_batch(ep, &payloads).unwrap();
        let big = vec![7u8; 3 << 20];
        let sent = c.send(ep, std::io::Cursor::new(big.clone()), Some(big.len() as u64), &SendOptions::default());
        assert_eq!(sent.as_ref().unwrap().fragments, 3, "stored in parts");
        ids.push(sent.unwrap().id);
        ids.push(c.send(ep, &b"last"[..], Some(4), &SendOptions::default()).unwrap().id);
        payloads.push(big.clone());
        payloads.push(b"last".to_vec());

        let wait = Duration::from_secs(5);
        let mut s = c.subscribe(ep, true, 64 << 20).unwrap();
        let got: Vec<_> = (0..7).map(|_| s.next(wait).unwrap().expect("a delivery")).collect();
        assert_eq!(got.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), ids, "in the order sent");
        assert_eq!(got.iter().map(|d| d.payload.clone()).collect::<Vec<_>>(), payloads);
        assert!(got.iter().all(|d| !d.truncated() && d.len == d.payload.len() as u64));
        assert!(got.iter().all(|d| d.creation_time > 0 && d.age_ms.is_none()), "a node with a clock");
        assert!(got.iter().all(|d| d.destination == ep && d.source == "dtn://solo/"));
        assert!(s.next(Duration::from_millis(300)).unwrap().is_none(), "delivered twice on one socket");

        // Given back, in any order: it comes again on this socket, in the order first sent.
        s.nack(&[&ids[4], &ids[1]]).unwrap();
        let again: Vec<_> = (0..2).map(|_| s.next(wait).unwrap().expect("given back").id).collect();
        assert_eq!(again, [ids[1].clone(), ids[4].clone()]);
        assert!(s.next(Duration::from_millis(300)).unwrap().is_none());
        // An ID this socket was never given changes nothing; acknowledged ones never come again.
        s.ack(&[ids[0].as_str(), ids[3].as_str(), "dtn://nobody/-1-1"]).unwrap();
        // The acknowledgement is on its way before the close.
        std::thread::sleep(Duration::from_millis(200));
        s.close();

        // The rest comes to the next socket in the order it was last sent; here payloads are cut to 16 bytes.
        let mut s = c.subscribe(ep, true, 16).unwrap();
        let rest: Vec<_> = (0..5).map(|_| s.next(wait).unwrap().expect("given back")).collect();
        let order: Vec<&str> = rest.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(order, [&ids[2], &ids[5], &ids[6], &ids[1], &ids[4]]);
        assert_eq!((rest[0].payload.len(), rest[0].len, rest[0].truncated()), (0, 0, false), "the empty one");
        assert!(rest[1].truncated() && rest[1].len == big.len() as u64 && rest[1].payload == big[..16]);
        assert_eq!((rest[2].payload.as_slice(), rest[2].truncated()), (&b"last"[..], false));
        assert!(s.next(Duration::from_millis(300)).unwrap().is_none(), "an acknowledged bundle came again");
        s.ack(&order).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.close();

        let mut s = c.subscribe(ep, true, 16).unwrap();
        assert!(s.next(Duration::from_millis(500)).unwrap().is_none(), "delivered after its acknowledgement");
        // A second stream (automatic) on the same endpoint finds nothing either, and the node still serves.
        let mut auto = c.subscribe(ep, false, 16).unwrap();
        assert!(auto.next(Duration::from_millis(100)).unwrap().is_none());
        c.send(ep, &b"new"[..], Some(3), &SendOptions::default()).unwrap();
        let fresh = match s.next(Duration::from_millis(500)).unwrap() {
            Some(d) => d,
            None => auto.next(wait).unwrap().expect("a new bundle reaches one of the streams"),
        };
        assert_eq!(fresh.payload, b"new");
        assert!(matches!(c.subscribe("not an eid", true, 16).map(|_| ()), Err(ClientError::Node(_))));
        s.close();
        auto.close();
    })
    .await;
    node.shutdown().await;
}

/// A manual stream sends at most 1024 bundles ahead of acknowledgements; one given back leaves that window at
/// once (and comes again), one acknowledged makes room for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_window_counts_neither_acknowledged_nor_given_back_bundles() {
    const WINDOW: usize = 1024;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let c = Client::new(node.api_addr().unwrap());
    blocking(move || {
        let ep = "dtn://solo/~window";
        c.register(ep).unwrap();
        let payloads: Vec<Vec<u8>> = (0..WINDOW as u32 + 2).map(|i| i.to_be_bytes().to_vec()).collect();
        let ids = c.send_batch(ep, &payloads).unwrap();
        let mut s = c.subscribe(ep, true, 16).unwrap();
        let wait = Duration::from_secs(5);
        let got: Vec<String> = (0..WINDOW).map(|_| s.next(wait).unwrap().expect("within the window").id).collect();
        assert_eq!(got, ids[..WINDOW]);
        assert!(s.next(Duration::from_millis(500)).unwrap().is_none(), "sent beyond the window");

        // Given back: out of the window, and delivered again before the two never sent.
        s.nack(&[&ids[7], &ids[3]]).unwrap();
        let again: Vec<String> = (0..2).map(|_| s.next(wait).unwrap().expect("given back").id).collect();
        assert_eq!(again, [ids[3].clone(), ids[7].clone()]);
        assert!(s.next(Duration::from_millis(500)).unwrap().is_none(), "the window is full again");

        // Acknowledged: room for exactly that many more.
        s.ack(&[&ids[0]]).unwrap();
        assert_eq!(s.next(wait).unwrap().expect("room for one").id, ids[WINDOW]);
        assert!(s.next(Duration::from_millis(500)).unwrap().is_none(), "room for one only");
        s.close();
    })
    .await;
    node.shutdown().await;
}

/// The van met a station before anyone started the collector on it: the bundles for the collection endpoint
/// (not an endpoint of the van's node ID) were stored for forwarding. Registering the endpoint afterwards
/// makes them the collector's, over the WebSocket like any other delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_started_after_the_data_reached_the_van_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut station = NodeConfig::new("dtn://station/".parse().unwrap(), dir.path().join("station"));
    station.tcpcl = Some("127.0.0.1:0".parse().unwrap());
    station.discovery = false;
    station.api = None;
    let station = Node::start(station).await.unwrap();
    let mut van = NodeConfig::new("dtn://van/".parse().unwrap(), dir.path().join("van"));
    van.discovery = false;
    van.api = Some("127.0.0.1:0".parse().unwrap());
    van.tcpcl = Some("127.0.0.1:0".parse().unwrap());
    van.peers = vec![station.tcpcl_addr().unwrap()];
    let van = Node::start(van).await.unwrap();
    let ep = "dtn://collector/~weather";
    let big = vec![5u8; (2 << 20) + 17];
    let sh = station.handle();
    let small = sh.send(ep.parse().unwrap(), b"batch 1".to_vec()).await.unwrap().compact();
    let large = sh.send(ep.parse().unwrap(), big.clone()).await.unwrap().compact();
    let c = Client::new(van.api_addr().unwrap());
    blocking(move || {
        // Everything reached the van (the large one as three fragments), stored for forwarding.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let held = c.list().unwrap();
            if held.iter().filter(|b| b["destination"] == ep).count() == 4 {
                assert!(held.iter().all(|b| b["delivery"] == "Forward"), "{held:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the van did not get the bundles: {held:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        c.set_link("dtn://station/", false).unwrap();

        c.register(ep).unwrap();
        let mut s = c.subscribe(ep, true, usize::MAX).unwrap();
        let mut got: Vec<_> = (0..2).map(|_| s.next(Duration::from_secs(10)).unwrap().expect("a delivery")).collect();
        got.sort_by_key(|d| d.len);
        assert_eq!((got[0].id.as_str(), got[0].payload.as_slice()), (small.as_str(), &b"batch 1"[..]));
        assert_eq!((got[1].id.as_str(), got[1].payload == big), (large.as_str(), true));
        s.ack(&[&got[0].id, &got[1].id]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        s.close();
        assert!(c.list().unwrap().is_empty(), "delivered bundles stay at the van: {:?}", c.list().unwrap());
    })
    .await;
    van.shutdown().await;
    station.shutdown().await;
}

/// A reader that hangs up while it waits (a collector killed mid-run) may be dropped just after the node
/// handed it a bundle: that bundle goes back at once, to the next reader, instead of staying handed out to
/// nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_handed_to_a_reader_that_hung_up_goes_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let h = node.handle();
    let ep: dtn_core::bpv7::Eid = "dtn://solo/~late".parse().unwrap();
    h.register(ep.clone()).unwrap();
    let mut first = Box::pin(h.next_deliveries(ep.clone(), true, 16));
    // Polled once, the first reader is waiting at the node.
    tokio::select! {
        biased;
        _ = &mut first => panic!("a delivery before anything was sent"),
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    let id = h.send(ep.clone(), b"last reading".to_vec()).await.unwrap();
    // The node hands the bundle to the waiting reader as soon as it is stored; give it the moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(first);
    let got = tokio::time::timeout(Duration::from_secs(5), h.next_deliveries(ep, true, 16))
        .await
        .expect("the bundle comes to the next reader at once")
        .unwrap();
    assert_eq!(got.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), [id]);
    node.shutdown().await;
}
