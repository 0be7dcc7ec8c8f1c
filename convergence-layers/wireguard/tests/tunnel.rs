//! The tunnel on loopback: handshake and data path, refusal of wrong keys, replays and tampering dropped,
//! roaming, and the datagrams that are not WireGuard.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use dtn_wg::{Endpoint, Error, PeerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::timeout;

fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

/// Writes `data` on `w` while reading as much from `r`, and returns what was read.
async fn exchange(w: &mut (impl AsyncWriteExt + Unpin), r: &mut (impl AsyncReadExt + Unpin), data: &[u8]) -> Vec<u8> {
    let mut got = vec![0u8; data.len()];
    let (wr, rd) = tokio::join!(w.write_all(data), r.read_exact(&mut got));
    wr.unwrap();
    rd.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_data_both_ways() {
    let (a, b) = pair().await;
    let listener = b.listen(7000).unwrap();
    let (ca, cb) = tokio::join!(a.connect(b.public_key(), 7000), listener.accept());
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    // The accepting side names the peer by its authenticated key.
    assert_eq!(cb.peer(), a.public_key());
    assert_eq!(ca.peer_addr().ip(), b.tunnel_addr());
    assert_eq!(cb.peer_addr().ip(), a.tunnel_addr());
    // Several MiB each way, more than the socket buffers: flow control has to work.
    let up = pattern(6 << 20, 1);
    assert!(exchange(&mut ca, &mut cb, &up).await == up);
    let down = pattern(3 << 20, 2);
    assert!(exchange(&mut cb, &mut ca, &down).await == down);
    // End of stream crosses too.
    ca.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(T, cb.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.handshakes >= 1 && sb.handshakes >= 1, "{sa:?} {sb:?}");
    assert_eq!(sa.garbage + sa.tampered + sa.replayed + sa.spoofed + sa.refused_handshakes, 0, "{sa:?}");
    assert_eq!(sb.garbage + sb.tampered + sb.replayed + sb.spoofed + sb.refused_handshakes, 0, "{sb:?}");
    // b learnt where a is from a's authenticated packets (it had no endpoint for a).
    let st = b.peer_status(a.public_key()).await.unwrap();
    assert_eq!(st.endpoint, Some(a.local_addr()));
    assert!(st.last_handshake.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_is_refused_and_unknown_peers_are_not_dialled() {
    let (a, b) = pair().await;
    match a.connect(b.public_key(), 9).await {
        Err(Error::Refused(k)) => assert_eq!(k, b.public_key()),
        r => panic!("expected a refusal, got {r:?}"),
    }
    let stranger = id(9).public();
    assert!(matches!(a.connect(stranger, 7000).await, Err(Error::UnknownPeer(_))));
}

/// A peer presenting another key than the one configured gets no session in either direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_key_is_refused() {
    let (ia, real_b, impostor) = (id(1), id(2), id(3));
    // The impostor knows a and listens, but holds key 3 where a expects key 2.
    let mut cx = cfg();
    cx.peers.push(PeerConfig::new(ia.public(), None));
    cx.connect_timeout = Duration::from_secs(2);
    let x = Endpoint::bind(&impostor, cx).await.unwrap();
    let _lx = x.listen(7000).unwrap();
    let mut ca = cfg();
    ca.peers.push(PeerConfig::new(real_b.public(), Some(x.local_addr())));
    ca.connect_timeout = Duration::from_secs(2);
    let a = Endpoint::bind(&ia, ca).await.unwrap();
    let _la = a.listen(7000).unwrap();

    // a → "b": the initiation is encrypted to key 2; the impostor cannot open it.
    assert!(matches!(a.connect(real_b.public(), 7000).await, Err(Error::TimedOut(_))));
    assert!(x.stats().refused_handshakes >= 1, "{:?}", x.stats());
    // impostor → a: a does not know key 3 and refuses the handshake.
    x.set_peer_endpoint(ia.public(), a.local_addr());
    assert!(matches!(x.connect(ia.public(), 7000).await, Err(Error::TimedOut(_))));
    assert!(a.stats().refused_handshakes >= 1, "{:?}", a.stats());
    assert_eq!(a.stats().handshakes + x.stats().handshakes, 0);
    assert_eq!(a.peer_status(real_b.public()).await.unwrap().last_handshake, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_tampered_packets_are_dropped_and_the_session_goes_on() {
    let (a, b) = pair().await;
    let relay = Relay::start(a.local_addr(), b.local_addr()).await;
    a.set_peer_endpoint(b.public_key(), relay.addr);
    let listener = b.listen(7000).unwrap();
    let (ca, cb) = tokio::join!(a.connect(b.public_key(), 7000), listener.accept());
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let first = pattern(100_000, 3);
    assert!(exchange(&mut ca, &mut cb, &first).await == first);

    relay.replay_next.store(true, Ordering::Relaxed);
    relay.tamper_next.store(true, Ordering::Relaxed);
    let second = pattern(200_000, 4);
    assert!(exchange(&mut ca, &mut cb, &second).await == second);
    wait_until("the replay and the tampered copy to be counted", || {
        let s = b.stats();
        s.replayed >= 1 && s.tampered >= 1
    })
    .await;
    // Neither reached the stack: the stream is intact and goes on, both ways.
    let third = pattern(300_000, 5);
    assert!(exchange(&mut cb, &mut ca, &third).await == third);
    assert!(exchange(&mut ca, &mut cb, &third).await == third);
    assert_eq!(b.stats().spoofed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_moves_is_followed() {
    let (a, b) = pair().await;
    let listener = b.listen(7000).unwrap();
    let (ca, cb) = tokio::join!(a.connect(b.public_key(), 7000), listener.accept());
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let data = pattern(50_000, 6);
    assert!(exchange(&mut ca, &mut cb, &data).await == data);
    assert_eq!(b.peer_status(a.public_key()).await.unwrap().endpoint, Some(a.local_addr()));
    // a's packets now come from another address (as after a NAT rebinding); b answers there.
    let relay = Relay::start(a.local_addr(), b.local_addr()).await;
    a.set_peer_endpoint(b.public_key(), relay.addr);
    assert!(exchange(&mut ca, &mut cb, &data).await == data);
    assert!(exchange(&mut cb, &mut ca, &data).await == data);
    assert_eq!(b.peer_status(a.public_key()).await.unwrap().endpoint, Some(relay.addr));
    assert!(b.stats().roamed >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_datagrams_go_to_the_other_channel_and_garbage_is_counted() {
    let (_a, b) = pair().await;
    let mut other = b.other_datagrams().expect("first call hands out the channel");
    assert!(b.other_datagrams().is_none());
    let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A STUN binding request header: type 0x0001, length 0, magic cookie, transaction ID.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(b"transaction!");
    plain.send_to(b"definitely not wireguard", b.local_addr()).await.unwrap();
    plain.send_to(&[1, 0, 0, 0, 9, 9, 9], b.local_addr()).await.unwrap(); // a truncated initiation
    plain.send_to(&stun, b.local_addr()).await.unwrap();
    let (d, from) = timeout(T, other.recv()).await.unwrap().unwrap();
    assert_eq!(&d[..], &stun[..]);
    assert_eq!(from, plain.local_addr().unwrap());
    wait_until("the datagrams to be counted", || {
        let s = b.stats();
        s.garbage == 2 && s.other_datagrams == 1
    })
    .await;
    // And the answer leaves from the tunnel's own socket.
    b.send_raw(b"binding response", from).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, src) = timeout(T, plain.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"binding response");
    assert_eq!(src, b.local_addr());
}

/// A handshake can be started without data (to open NAT mappings), and persistent keepalives then keep
/// packets flowing on an idle tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_on_demand_and_persistent_keepalives() {
    let (ia, ib) = (id(1), id(2));
    let mut cb = cfg();
    cb.peers.push(PeerConfig::new(ia.public(), None));
    let b = Endpoint::bind(&ib, cb).await.unwrap();
    let mut ca = cfg();
    ca.peers.push(PeerConfig { persistent_keepalive: Some(1), ..PeerConfig::new(ib.public(), Some(b.local_addr())) });
    let a = Endpoint::bind(&ia, ca).await.unwrap();
    a.initiate_handshake(ib.public());
    wait_until("the handshake", || b.stats().handshakes == 1 && a.stats().handshakes == 1).await;
    let before = b.stats().rx_datagrams;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Nothing was sent by the application, yet a kept talking about once a second.
    let kept = b.stats().rx_datagrams - before;
    assert!(kept >= 2, "{kept} keepalives in 3.5 s");
    assert_eq!(b.peer_status(ia.public()).await.unwrap().endpoint, Some(a.local_addr()));
}

/// Hostile datagrams of every WireGuard type and size, and random bytes, are dropped and counted while a
/// stream runs; nothing panics and the stream is unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_are_counted_and_harmless() {
    let (a, b) = pair().await;
    let listener = b.listen(7000).unwrap();
    let (ca, cb) = tokio::join!(a.connect(b.public_key(), 7000), listener.accept());
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut sent = 0u64;
    for i in 0..600usize {
        let mut d: Vec<u8> = (0..(i * 7) % 1500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Most look like WireGuard messages (exact sizes included: 148, 92, 64), some are plain noise.
        let sizes = [148usize, 92, 64, 32, 200];
        if i % 5 != 0 {
            d.resize(sizes[i % sizes.len()].max(d.len() % 300), 0);
            d[..4].copy_from_slice(&[(i % 4 + 1) as u8, 0, 0, 0]);
        }
        if d.is_empty() {
            continue;
        }
        attacker.send_to(&d, b.local_addr()).await.unwrap();
        sent += 1;
    }
    let data = pattern(500_000, 7);
    assert!(exchange(&mut ca, &mut cb, &data).await == data);
    wait_until("every hostile datagram to be counted", || {
        let s = b.stats();
        s.garbage + s.rejected + s.refused_handshakes + s.tampered + s.replayed + s.other_datagrams == sent
    })
    .await;
    assert_eq!(b.stats().spoofed, 0);
    assert!(exchange(&mut cb, &mut ca, &data).await == data);
}
