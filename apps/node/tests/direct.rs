//! Direct delivery between two real nodes (TCPCLv4 on loopback, LMDB stores): a bundle for an endpoint whose
//! application is reading goes straight to it without being stored, and the sender's copy is released only
//! once the application has it. A slow application, one that gives bundles back, and a node stopped before
//! its application took what it was handed must lose nothing and deliver nothing twice.

mod common;

use std::time::Duration;

use dtn_core::bpv7::{BundleId, Eid};
use dtn_node::{Node, NodeHandle};

use common::loopback_config as config;

fn ep() -> Eid {
    "dtn://b/~in".parse().unwrap()
}

/// Node a dialling node b; b's application endpoint registered.
async fn pair(dir: &std::path::Path, wait: Duration) -> (Node, Node) {
    let mut cb = config(dir, "b");
    cb.direct_delivery = Some(wait);
    let b = Node::start(cb).await.unwrap();
    b.handle().register(ep()).unwrap();
    let mut ca = config(dir, "a");
    ca.peers = vec![b.tcpcl_addr().unwrap()];
    let a = Node::start(ca).await.unwrap();
    common::wait_for_peer(&a.handle()).await;
    (a, b)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen in 10 s");
}

/// Takes the next `n` deliveries (waiting), reading their payloads, without acknowledging them.
async fn take(h: &NodeHandle, n: usize) -> Vec<(BundleId, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(10), h.next_deliveries(ep(), true, n - out.len()))
            .await
            .expect("deliveries in time")
            .unwrap();
        for inc in batch {
            let d = tokio::task::spawn_blocking(move || inc.into_delivery()).await.unwrap().unwrap();
            out.push((d.id, d.payload));
        }
    }
    out
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("reading {i:04}").repeat(i % 7 + 1).into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_for_a_reading_application_are_never_stored_at_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), Duration::from_secs(10)).await;
    let (ha, hb) = (a.handle(), b.handle());
    let _reading = hb.reading(ep());
    let sent = payloads(200);
    for p in &sent {
        ha.send(ep(), p.clone()).await.unwrap();
    }
    let got = take(&hb, sent.len()).await;
    for (id, _) in &got {
        hb.taken(id.clone(), true);
    }
    let mut payloads: Vec<Vec<u8>> = got.into_iter().map(|(_, p)| p).collect();
    payloads.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(payloads, want, "every payload once, intact");
    eventually("a's store emptying", async || ha.list(1000).unwrap().is_empty()).await;
    let s = hb.stats().await.unwrap();
    assert_eq!((s.delivered, s.direct, s.stored), (200, 200, 0), "b stored bundles: {s:?}");
    assert!(hb.list(1000).unwrap().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_keeps_its_copy_until_the_application_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), Duration::from_secs(30)).await;
    let (ha, hb) = (a.handle(), b.handle());
    let _reading = hb.reading(ep());
    let id = ha.send(ep(), b"held in memory at b".to_vec()).await.unwrap();
    let got = take(&hb, 1).await;
    assert_eq!(got[0].0, id);
    // The application has it in hand but has not acknowledged: b has not stored it, so a must still hold it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ha.list(10).unwrap().len(), 1, "a let go of a bundle b holds only in memory");
    assert!(hb.list(10).unwrap().is_empty());
    hb.taken(id, true);
    eventually("a's store emptying", async || ha.list(10).unwrap().is_empty()).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_application_gets_it_from_the_store_and_the_sender_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), Duration::from_millis(300)).await;
    let (ha, hb) = (a.handle(), b.handle());
    let _reading = hb.reading(ep());
    let id = ha.send(ep(), b"slow reader".to_vec()).await.unwrap();
    let got = take(&hb, 1).await;
    // Not taken within 300 ms: b stores it and acknowledges it, so a lets go while the application dawdles.
    eventually("b storing it", async || hb.list(10).unwrap().len() == 1).await;
    eventually("a's store emptying", async || ha.list(10).unwrap().is_empty()).await;
    hb.taken(got[0].0.clone(), true);
    eventually("b's store emptying", async || hb.list(10).unwrap().is_empty()).await;
    let s = hb.stats().await.unwrap();
    assert_eq!((s.delivered, s.direct), (1, 0), "{s:?}");
    // Delivered once: nothing more comes.
    let more = tokio::time::timeout(Duration::from_millis(500), hb.next_deliveries(ep(), true, 1)).await;
    assert!(more.is_err(), "delivered again: {:?}", more.map(|r| r.map(|v| v.len())));
    assert_eq!(got[0].0, id);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_given_back_are_stored_and_come_again_first() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), Duration::from_secs(30)).await;
    let (ha, hb) = (a.handle(), b.handle());
    let _reading = hb.reading(ep());
    let first = ha.send(ep(), b"first".to_vec()).await.unwrap();
    let got = take(&hb, 1).await;
    assert_eq!(got[0].0, first);
    let second = ha.send(ep(), b"second".to_vec()).await.unwrap();
    eventually("the second queued", async || hb.stats().await.unwrap().received_bytes > 0).await;
    hb.give_back(vec![first.clone()]);
    eventually("b storing the first", async || hb.list(10).unwrap().iter().any(|m| m.id == first)).await;
    let again = take(&hb, 2).await;
    let ids: Vec<BundleId> = again.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids, vec![first.clone(), second.clone()], "given back, then in order");
    assert_eq!(again[0].1, b"first");
    for id in ids {
        hb.taken(id, true);
    }
    eventually("both stores emptying", async || ha.list(10).unwrap().is_empty() && hb.list(10).unwrap().is_empty())
        .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_stopped_before_its_application_took_them_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path(), Duration::from_secs(30)).await;
    let (ha, hb) = (a.handle(), b.handle());
    let reading = hb.reading(ep());
    let sent = payloads(20);
    for p in &sent {
        ha.send(ep(), p.clone()).await.unwrap();
    }
    let got = take(&hb, sent.len()).await;
    assert_eq!(got.len(), 20);
    // b stops with all twenty in the application's hands and none acknowledged: a holds every one still.
    drop(reading);
    drop(hb);
    b.shutdown().await;
    assert_eq!(ha.list(100).unwrap().len(), 20, "a let go of bundles b never kept");

    let mut cb = config(dir.path(), "b");
    cb.direct_delivery = Some(Duration::from_secs(30));
    cb.tcpcl = None;
    cb.peers = vec![a.tcpcl_addr().unwrap()];
    let b = Node::start(cb).await.unwrap();
    let hb = b.handle();
    let _reading = hb.reading(ep());
    let again = take(&hb, sent.len()).await;
    for (id, _) in &again {
        hb.taken(id.clone(), true);
    }
    let mut payloads: Vec<Vec<u8>> = again.into_iter().map(|(_, p)| p).collect();
    payloads.sort();
    let mut want = sent;
    want.sort();
    assert_eq!(payloads, want);
    eventually("a's store emptying", async || ha.list(100).unwrap().is_empty()).await;
    a.shutdown().await;
    b.shutdown().await;
}
