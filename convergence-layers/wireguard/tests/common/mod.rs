//! Helpers for the loopback tests: pairs of endpoints, and a UDP relay between them that can replay or
//! tamper with WireGuard data packets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dtn_wg::{Endpoint, EndpointConfig, Identity, PeerConfig};
use tokio::net::UdpSocket;

pub const T: Duration = Duration::from_secs(20);

pub fn id(n: u8) -> Identity {
    Identity::from_seed(&[n; 32])
}

pub fn cfg() -> EndpointConfig {
    EndpointConfig::new("127.0.0.1:0".parse().unwrap())
}

/// Two endpoints that know each other's keys; `a` also knows where `b` is (at `b_at`, or `b` itself).
pub async fn pair_via(b_at: Option<SocketAddr>) -> (Endpoint, Endpoint) {
    let (ia, ib) = (id(1), id(2));
    let mut cb = cfg();
    cb.peers.push(PeerConfig::new(ia.public(), None));
    let b = Endpoint::bind(&ib, cb).await.unwrap();
    let mut ca = cfg();
    ca.peers.push(PeerConfig::new(ib.public(), Some(b_at.unwrap_or(b.local_addr()))));
    let a = Endpoint::bind(&ia, ca).await.unwrap();
    (a, b)
}

pub async fn pair() -> (Endpoint, Endpoint) {
    pair_via(None).await
}

/// A UDP relay on loopback: what arrives from `a` goes to `b`, anything else goes back to `a`. On request it
/// sends the next WireGuard data packet from `a` twice (a replay) or sends a tampered copy before it.
pub struct Relay {
    pub addr: SocketAddr,
    pub replay_next: Arc<AtomicBool>,
    pub tamper_next: Arc<AtomicBool>,
    pub data_from_a: Arc<AtomicU64>,
}

impl Relay {
    pub async fn start(a: SocketAddr, b: SocketAddr) -> Relay {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let r = Relay {
            addr,
            replay_next: Arc::new(AtomicBool::new(false)),
            tamper_next: Arc::new(AtomicBool::new(false)),
            data_from_a: Arc::new(AtomicU64::new(0)),
        };
        let (replay, tamper, data) = (r.replay_next.clone(), r.tamper_next.clone(), r.data_from_a.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let d = &buf[..n];
                if from != a {
                    let _ = s.send_to(d, a).await;
                    continue;
                }
                // Only data messages carrying a packet (not keepalives, 32 bytes).
                if d[0] == 4 && n > 32 {
                    data.fetch_add(1, Ordering::Relaxed);
                    if tamper.swap(false, Ordering::Relaxed) {
                        let mut bad = d.to_vec();
                        bad[n - 1] ^= 0x01; // in the authentication tag
                        let _ = s.send_to(&bad, b).await;
                    }
                    let _ = s.send_to(d, b).await;
                    if replay.swap(false, Ordering::Relaxed) {
                        let _ = s.send_to(d, b).await;
                    }
                    continue;
                }
                let _ = s.send_to(d, b).await;
            }
        });
        r
    }
}

pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
