//! A station on a metered uplink with a daily byte budget, talking to its collector through a WireGuard
//! tunnel on loopback: sensor batches cross until the day's budget is spent, bulk camera data waits for a
//! free link, a restart does not hand out a fresh budget, and what waited goes once the budget is raised
//! or a Wi-Fi link comes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{identity, wait_for_peer, wg_config};
use dtn_core::bpv7::BundleId;
use dtn_core::engine::Submission;
use dtn_core::store::Priority;
use dtn_node::{LinkClass, Node, NodeConfig, NodeHandle, PeerKey, WgPeer};

/// Bytes a day the station may send to the collector: room for a few sensor batches.
const BUDGET: u64 = 4000;
const BATCHES: usize = 10;
const BATCH_BYTES: usize = 600;
const CAMERA_BYTES: usize = 64 << 10;
/// What the records sent after the budget is spent may add (a few receipts and offers).
const RECORDS: u64 = 512;

/// The station: its only peer is the collector, at `at`, over a link of `class` with `budget` bytes a day.
fn station(
    dir: &std::path::Path,
    collector: PeerKey,
    at: std::net::SocketAddr,
    class: LinkClass,
    budget: Option<u64>,
) -> NodeConfig {
    let mut peer = WgPeer::new(collector, Some(at));
    peer.class = Some(class);
    peer.budget_per_day = budget;
    wg_config(dir, "station", vec![peer])
}

/// Everything an endpoint of the collector receives, as it arrives.
fn collect(h: &NodeHandle, ep: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (h, ep, into) = (h.clone(), ep.parse::<dtn_core::bpv7::Eid>().unwrap(), got.clone());
    h.register(ep.clone()).unwrap();
    tokio::spawn(async move {
        while let Ok(d) = h.recv(ep.clone()).await {
            into.lock().unwrap().push(d.payload);
        }
    });
    got
}

fn count(got: &Arc<Mutex<Vec<Vec<u8>>>>) -> usize {
    got.lock().unwrap().len()
}

/// Waits until `n()` has not changed for `quiet`, and returns it.
async fn settled(quiet: Duration, n: impl Fn() -> usize) -> usize {
    let (mut last, mut since) = (n(), Instant::now());
    while since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if n() != last {
            (last, since) = (n(), Instant::now());
        }
    }
    last
}

/// Stops a node; its store can then be opened again (every handle holds it open).
async fn restart(n: Node, h: NodeHandle) {
    drop(h);
    n.shutdown().await;
}

fn held(h: &NodeHandle) -> Vec<BundleId> {
    let mut ids: Vec<_> = h.list(1000).unwrap().into_iter().map(|m| m.id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_lets_sensor_batches_cross_holds_the_rest_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ks, kc) = (identity(dir.path(), "station"), identity(dir.path(), "collector"));
    // The collector learns the station's address from its handshakes, so the station can come back on
    // another port after a restart.
    let c = Node::start(wg_config(dir.path(), "collector", vec![WgPeer::new(ks, None)])).await.unwrap();
    let at = c.wg_addr().unwrap();
    let hc = c.handle();
    let sensors = collect(&hc, "dtn://collector/~in");
    let camera = collect(&hc, "dtn://collector/~cam");

    let s = Node::start(station(dir.path(), kc, at, LinkClass::Metered, Some(BUDGET))).await.unwrap();
    let hs = s.handle();
    // Everything is stored before the contact comes up, as on a station that waits for its uplink.
    hs.set_link("dtn://collector/".parse().unwrap(), false).unwrap();
    let mut stored = 0;
    for i in 0..BATCHES {
        let mut sub = Submission::new(0, "dtn://collector/~in".parse().unwrap(), vec![i as u8; BATCH_BYTES]);
        sub.priority = Priority::NORMAL;
        // A batch goes whole or not at all: a fragment would spend budget on something unreadable.
        sub.must_not_fragment = true;
        let id = hs.submit(sub).await.unwrap();
        stored += hs.meta(&id[0]).unwrap().unwrap().size;
    }
    let mut still = Submission::new(0, "dtn://collector/~cam".parse().unwrap(), vec![7; CAMERA_BYTES]);
    still.priority = Priority::BULK;
    let still = hs.submit(still).await.unwrap()[0].clone();
    assert!(stored > BUDGET, "the test needs more sensor data than the budget");
    hs.set_link("dtn://collector/".parse().unwrap(), true).unwrap();
    wait_for_peer(&hs).await;

    // As many batches as the budget allows cross, and then nothing more.
    let crossed = settled(Duration::from_secs(3), || count(&sensors)).await;
    let sent = hs.stats().await.unwrap().sent_bytes;
    assert!(crossed > 0 && crossed < BATCHES, "{crossed} of {BATCHES} batches crossed");
    // The hello and the records that keep custody and routing going (receipts, offers: about 120 bytes
    // each) come out of the same budget, but still go once it is spent: without them nothing works.
    eprintln!("{crossed} of {BATCHES} batches crossed; {sent} bytes sent on a budget of {BUDGET}");
    assert!(sent <= BUDGET + RECORDS, "{sent} bytes sent on a budget of {BUDGET}");
    // And the budget was used up: what is left would not carry one more batch.
    let per_batch = sent / crossed as u64;
    assert!(sent + per_batch > BUDGET, "{sent} of {BUDGET} bytes used, batches of about {per_batch} bytes wait");
    // What did not cross is still in the station's store, the camera still among it.
    let waiting = held(&hs);
    assert_eq!(waiting.len(), BATCHES - crossed + 1, "{waiting:?}");
    assert!(waiting.contains(&still));
    assert_eq!(count(&camera), 0, "the camera still crossed a metered link");
    // The peer list shows the operator the metered link and what is left of its day.
    let peers = hs.peers().await.unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].class, "metered");
    let b = peers[0].budget.as_ref().expect("the budget is shown");
    assert_eq!(b.per_day, BUDGET);
    assert!(b.left < per_batch, "{} bytes left, yet a batch of about {per_batch} waits", b.left);

    // A restart on the same store: today's budget is spent, so nothing more goes.
    restart(s, hs).await;
    let s = Node::start(station(dir.path(), kc, at, LinkClass::Metered, Some(BUDGET))).await.unwrap();
    let hs = s.handle();
    wait_for_peer(&hs).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&sensors), crossed, "a restart handed out a fresh budget");
    assert_eq!(held(&hs), waiting);
    let hello = hs.stats().await.unwrap().sent_bytes;
    assert!(hello < per_batch, "{hello} bytes sent after the restart");

    // The operator raises the budget: the rest of the sensor data goes, the camera still waits.
    restart(s, hs).await;
    let s = Node::start(station(dir.path(), kc, at, LinkClass::Metered, Some(1 << 20))).await.unwrap();
    let hs = s.handle();
    wait_for_peer(&hs).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&sensors) < BATCHES {
        assert!(Instant::now() < deadline, "only {} of {BATCHES} batches arrived", count(&sensors));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = sensors.lock().unwrap().clone();
    got.sort();
    let want: Vec<Vec<u8>> = (0..BATCHES).map(|i| vec![i as u8; BATCH_BYTES]).collect();
    assert_eq!(got, want, "every batch once, intact");
    settled(Duration::from_secs(2), || count(&camera)).await;
    assert_eq!(count(&camera), 0, "the camera crossed a metered link");
    assert_eq!(held(&hs), vec![still.clone()]);

    // Wi-Fi: the camera goes too, and the peer list shows no budget on that link.
    restart(s, hs).await;
    let s = Node::start(station(dir.path(), kc, at, LinkClass::Wifi, None)).await.unwrap();
    let hs = s.handle();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&camera) == 0 {
        assert!(Instant::now() < deadline, "the camera did not cross the Wi-Fi link");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(camera.lock().unwrap()[0], vec![7; CAMERA_BYTES]);
    let peers = hs.peers().await.unwrap();
    assert!(peers.iter().all(|p| p.class == "wifi" && p.budget.is_none()), "{peers:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !held(&hs).is_empty() {
        assert!(Instant::now() < deadline, "the station still holds {:?}", held(&hs));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.shutdown().await;
    c.shutdown().await;
}
