//! The driver task: owns the UDP socket's receiving side and one boringtun `Tunn` per peer, demultiplexes
//! datagrams (WireGuard to the tunnels, STUN to the other-datagrams channel, the rest dropped and counted),
//! checks every decrypted packet's source against its peer, runs the stack and the WireGuard timers.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::identity::PeerKey;
use crate::stack::Shared;
use crate::stats::{Counters, add};
use crate::{Error, PeerConfig, PeerStatus};

/// How often the WireGuard timers run (boringtun's own device uses the same period).
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Handshakes per second we answer before asking for cookies (boringtun's default limit).
const HANDSHAKE_RATE: u64 = 100;
/// Datagrams taken off the socket before the stack is run.
const RX_BATCH: usize = 256;
/// Largest datagram we take; WireGuard over a 1500-byte path sends at most 1452-byte payloads.
const MAX_DATAGRAM: usize = 65535;
/// `Tunn` session indices are the peer index shifted by 8 bits in a u32.
const MAX_PEERS: usize = 1 << 24;

pub(crate) enum Cmd {
    AddPeer(PeerConfig, oneshot::Sender<Result<(), Error>>),
    SetEndpoint(PeerKey, SocketAddr),
    Handshake(PeerKey),
    Status(PeerKey, oneshot::Sender<Option<PeerStatus>>),
}

struct Peer {
    /// For a peer still unnamed (see `unnamed`): the first candidate, a placeholder that is never matched.
    key: PeerKey,
    tunn: Tunn,
    endpoint: Option<SocketAddr>,
    addr: Ipv6Addr,
    /// A peer we were not configured with (an open endpoint's stranger): counted against the cap, and its
    /// slot may be reused once it has been quiet long enough.
    dynamic: Option<Instant>,
    /// The two identity keys its WireGuard key could be, until its first packet's source address tells
    /// which one it holds. Until then nothing is sent to it and nothing is delivered from it.
    unnamed: Option<Vec<PeerKey>>,
}

impl Peer {
    fn is(&self, key: &PeerKey) -> bool {
        self.unnamed.is_none() && self.key == *key
    }
}

/// A stranger's slot may be given to another once its last handshake (or its arrival, if it never
/// completed one) is this old: WireGuard drops a session after three minutes without a new handshake.
const STRANGER_IDLE: Duration = Duration::from_secs(180);

pub(crate) struct Driver {
    pub shared: Arc<Shared>,
    pub udp: Arc<UdpSocket>,
    pub secret: StaticSecret,
    pub public: PublicKey,
    pub limiter: Arc<RateLimiter>,
    pub other: mpsc::Sender<(Bytes, SocketAddr)>,
    pub cmds: mpsc::UnboundedReceiver<Cmd>,
    /// How many peers that were not configured may hold a tunnel at once (0: strangers are refused).
    max_strangers: usize,
    peers: Vec<Peer>,
    by_x25519: HashMap<[u8; 32], usize>,
    by_addr: HashMap<Ipv6Addr, usize>,
    out: Vec<u8>,
}

/// What a datagram is, from its first bytes alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// WireGuard message type 1–4 (the type byte then three reserved zero bytes, RFC-less but fixed by the
    /// WireGuard paper §5.4).
    WireGuard(u8),
    /// STUN (RFC 8489 §5): the first two bits zero and the magic cookie 0x2112A442 at bytes 4..8.
    Stun,
    Garbage,
}

pub(crate) fn classify(d: &[u8]) -> Kind {
    // WireGuard first: its header [t, 0, 0, 0] is never a STUN header (no STUN method has a zero low byte
    // with a high byte of 1–4), while a WireGuard receiver index could happen to equal the magic cookie.
    if d.len() >= 4 && (1..=4).contains(&d[0]) && d[1..4] == [0, 0, 0] {
        Kind::WireGuard(d[0])
    } else if d.len() >= 20 && d[0] & 0xc0 == 0 && d[4..8] == [0x21, 0x12, 0xa4, 0x42] {
        Kind::Stun
    } else {
        Kind::Garbage
    }
}

async fn send(udp: &UdpSocket, c: &Counters, d: &[u8], to: SocketAddr) {
    match udp.send_to(d, to).await {
        Ok(n) => {
            add(&c.tx_datagrams, 1);
            add(&c.tx_bytes, n as u64);
        }
        // Unreachable networks and the like: WireGuard's timers retry, TCP retransmits.
        Err(e) => tracing::debug!(%to, error = %e, "udp send failed"),
    }
}

impl Driver {
    pub fn new(
        shared: Arc<Shared>,
        udp: Arc<UdpSocket>,
        secret: StaticSecret,
        other: mpsc::Sender<(Bytes, SocketAddr)>,
        cmds: mpsc::UnboundedReceiver<Cmd>,
        max_strangers: usize,
    ) -> Driver {
        let public = PublicKey::from(&secret);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE));
        Driver {
            shared,
            udp,
            secret,
            public,
            limiter,
            other,
            cmds,
            max_strangers,
            peers: Vec::new(),
            by_x25519: HashMap::new(),
            by_addr: HashMap::new(),
            out: vec![0u8; MAX_DATAGRAM + 64],
        }
    }

    pub fn add_peer(&mut self, p: PeerConfig) -> Result<(), Error> {
        let x = p.key.x25519_public();
        if self.by_x25519.contains_key(x.as_bytes()) {
            return Err(Error::DuplicatePeer(p.key));
        }
        let idx = self.peers.len();
        if idx >= MAX_PEERS {
            return Err(Error::TooManyPeers);
        }
        let tunn =
            Tunn::new(self.secret.clone(), x, None, p.persistent_keepalive, idx as u32, Some(self.limiter.clone()));
        let addr = p.key.tunnel_addr();
        self.by_x25519.insert(*x.as_bytes(), idx);
        self.by_addr.insert(addr, idx);
        self.peers.push(Peer { key: p.key, tunn, endpoint: p.endpoint, addr, dynamic: None, unnamed: None });
        self.shared.lock().peers_by_addr.insert(addr, p.key);
        Ok(())
    }

    /// Takes in a stranger whose handshake initiation authenticated with WireGuard key `x`: a new slot, or
    /// the slot of a stranger gone quiet when the cap is reached. `None` if there is no room.
    fn add_stranger(&mut self, x: [u8; 32]) -> Option<usize> {
        let candidates = PeerKey::candidates(&x);
        let first = *candidates.first()?;
        let strangers: Vec<usize> = (0..self.peers.len()).filter(|&i| self.peers[i].dynamic.is_some()).collect();
        let idx = if strangers.len() < self.max_strangers && self.peers.len() < MAX_PEERS {
            self.peers.len()
        } else {
            let now = Instant::now();
            let quiet = |p: &Peer| match p.tunn.stats().0 {
                Some(since) => since >= STRANGER_IDLE,
                None => p.dynamic.is_some_and(|t| now.duration_since(t) >= STRANGER_IDLE),
            };
            let i = strangers.into_iter().find(|&i| quiet(&self.peers[i]))?;
            let old = &self.peers[i];
            self.by_x25519.remove(old.key.x25519_public().as_bytes());
            if old.unnamed.is_none() {
                self.by_addr.remove(&old.addr);
                self.shared.lock().peers_by_addr.remove(&old.addr);
            }
            i
        };
        let tunn =
            Tunn::new(self.secret.clone(), PublicKey::from(x), None, None, idx as u32, Some(self.limiter.clone()));
        let peer = Peer {
            key: first,
            tunn,
            endpoint: None,
            addr: first.tunnel_addr(),
            dynamic: Some(Instant::now()),
            unnamed: Some(candidates),
        };
        if idx == self.peers.len() {
            self.peers.push(peer);
        } else {
            self.peers[idx] = peer;
        }
        self.by_x25519.insert(x, idx);
        Some(idx)
    }

    pub async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut next_tick = Instant::now() + TIMER_TICK;
        let mut ticks = 0u64;
        loop {
            let mut busy = false;
            for _ in 0..RX_BATCH {
                match self.udp.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        busy = true;
                        self.on_datagram(&buf[..n], from).await;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface here on some systems (port unreachable): nothing to do.
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        break;
                    }
                }
            }
            loop {
                match self.cmds.try_recv() {
                    Ok(c) => self.command(c).await,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            let (tx, delay) = {
                let mut st = self.shared.lock();
                if st.stopped {
                    return;
                }
                st.poll();
                (std::mem::take(&mut st.dev.tx), st.poll_delay())
            };
            busy |= !tx.is_empty();
            self.transmit(tx).await;
            if Instant::now() >= next_tick {
                ticks += 1;
                next_tick = Instant::now() + TIMER_TICK;
                self.timers(ticks.is_multiple_of(4)).await;
            }
            if busy {
                // More may be waiting on the socket or in the stack; let the streams run in between.
                tokio::task::yield_now().await;
                continue;
            }
            // At least a millisecond: the stack was just polled and sent nothing, so a zero delay would spin.
            let wake_at =
                delay.map(|d| Instant::now() + d.max(Duration::from_millis(1))).map_or(next_tick, |t| t.min(next_tick));
            tokio::select! {
                c = self.cmds.recv() => match c {
                    Some(c) => self.command(c).await,
                    None => return,
                },
                _ = self.udp.readable() => {}
                _ = self.shared.wake.notified() => {}
                _ = sleep_until(wake_at) => {}
            }
        }
    }

    async fn command(&mut self, c: Cmd) {
        match c {
            Cmd::AddPeer(p, done) => {
                let _ = done.send(self.add_peer(p));
            }
            Cmd::SetEndpoint(key, ep) => {
                if let Some(p) = self.peers.iter_mut().find(|p| p.is(&key)) {
                    p.endpoint = Some(ep);
                }
            }
            Cmd::Handshake(key) => {
                if let Some(p) = self.peers.iter_mut().find(|p| p.is(&key))
                    && let (TunnResult::WriteToNetwork(d), Some(ep)) =
                        (p.tunn.format_handshake_initiation(&mut self.out, false), p.endpoint)
                {
                    send(&self.udp, &self.shared.counters, d, ep).await;
                }
            }
            Cmd::Status(key, reply) => {
                let s = self.peers.iter().find(|p| p.is(&key)).map(|p| {
                    let (since, tx, rx, _, _) = p.tunn.stats();
                    PeerStatus { endpoint: p.endpoint, last_handshake: since, tx_bytes: tx as u64, rx_bytes: rx as u64 }
                });
                let _ = reply.send(s);
            }
        }
    }

    async fn on_datagram(&mut self, d: &[u8], from: SocketAddr) {
        let c = &self.shared.counters;
        add(&c.rx_datagrams, 1);
        add(&c.rx_bytes, d.len() as u64);
        match classify(d) {
            Kind::WireGuard(t) => self.on_wireguard(t, d, from).await,
            Kind::Stun => match self.other.try_send((Bytes::copy_from_slice(d), from)) {
                Ok(()) => add(&c.other_datagrams, 1),
                Err(_) => add(&c.other_dropped, 1),
            },
            Kind::Garbage => add(&c.garbage, 1),
        }
    }

    /// Which peer a WireGuard message belongs to: by the sender's static key (decrypted from a handshake
    /// initiation) or by our receiver index in the message.
    async fn find_peer(&mut self, t: u8, d: &[u8], from: SocketAddr) -> Option<usize> {
        let c = &self.shared.counters;
        if t != 1 {
            // Our index is the receiver index: right after the type in cookie replies and data, after the
            // sender's own index in a handshake response (WireGuard paper §5.4.3).
            let at = if t == 2 { 8 } else { 4 };
            let r = u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?);
            let idx = (r >> 8) as usize;
            if idx >= self.peers.len() {
                add(&c.rejected, 1);
                return None;
            }
            return Some(idx);
        }
        let init = match self.limiter.verify_packet(Some(from.ip()), d, &mut self.out) {
            Ok(Packet::HandshakeInit(init)) => init,
            Ok(_) => {
                add(&c.garbage, 1);
                return None;
            }
            // Under load: answer with a cookie so that only senders that own their address get through.
            Err(TunnResult::WriteToNetwork(cookie)) => {
                send(&self.udp, c, cookie, from).await;
                return None;
            }
            // mac1 is keyed with the responder's public key: a bad one means the initiation was made for
            // another key than ours (the initiator has a wrong key for us).
            Err(TunnResult::Err(WireGuardError::InvalidMac)) => {
                tracing::debug!(%from, "handshake not made for our key: refused");
                add(&c.refused_handshakes, 1);
                return None;
            }
            Err(TunnResult::Err(e)) => {
                count_error(c, &e);
                return None;
            }
            Err(_) => return None,
        };
        match parse_handshake_anon(&self.secret, &self.public, &init) {
            Ok(h) => match self.by_x25519.get(&h.peer_static_public) {
                Some(&i) => Some(i),
                None if self.max_strangers > 0 => {
                    let i = self.add_stranger(h.peer_static_public);
                    if i.is_none() {
                        tracing::debug!(%from, "handshake from a stranger while full: refused");
                        add(&self.shared.counters.refused_handshakes, 1);
                    }
                    i
                }
                None => {
                    tracing::debug!(%from, "handshake from a key that is not a peer: refused");
                    add(&c.refused_handshakes, 1);
                    None
                }
            },
            // A valid mac1 but a static key that does not decrypt: forged, or made for another key.
            Err(_) => {
                tracing::debug!(%from, "handshake does not decrypt: refused");
                add(&c.refused_handshakes, 1);
                None
            }
        }
    }

    async fn on_wireguard(&mut self, t: u8, d: &[u8], from: SocketAddr) {
        let Some(idx) = self.find_peer(t, d, from).await else { return };
        let (c, udp, peer) = (&self.shared.counters, &self.udp, &mut self.peers[idx]);
        let mut named = None;
        let authenticated;
        let mut packet = None;
        match peer.tunn.decapsulate(Some(from.ip()), d, &mut self.out) {
            TunnResult::Done => authenticated = t == 4, // a keepalive
            TunnResult::Err(e) => {
                count_error(c, &e);
                return;
            }
            TunnResult::WriteToNetwork(reply) => {
                // A handshake answer (or a cookie, which proves nothing about the sender).
                authenticated = t != 3;
                if t == 1 || t == 2 {
                    add(&c.handshakes, 1);
                }
                send(udp, c, reply, from).await;
            }
            TunnResult::WriteToTunnelV6(p, src) => {
                authenticated = true;
                // A stranger's first packet names it: the initiator always sends from its own tunnel
                // address, and only one of its two candidate keys has that address.
                if let Some(k) = peer.unnamed.as_ref().and_then(|c| c.iter().find(|k| k.tunnel_addr() == src)) {
                    named = Some(*k);
                    peer.key = *k;
                    peer.addr = src;
                    peer.unnamed = None;
                }
                if src == peer.addr && peer.unnamed.is_none() {
                    packet = Some(p.to_vec());
                } else {
                    tracing::debug!(peer = %peer.key, %src, "inner source is not the peer's address: dropped");
                    add(&c.spoofed, 1);
                }
            }
            TunnResult::WriteToTunnelV4(..) => {
                authenticated = true;
                add(&c.spoofed, 1);
            }
        }
        if authenticated && peer.endpoint != Some(from) {
            // WireGuard roaming: the peer's key vouches for its new address (a NAT rebinding, a new uplink).
            if peer.endpoint.is_some() {
                tracing::debug!(peer = %peer.key, %from, "peer roamed");
                add(&c.roamed, 1);
            }
            peer.endpoint = Some(from);
        }
        if t == 1 || t == 2 {
            // Packets queued while the handshake was in progress.
            while let TunnResult::WriteToNetwork(q) = peer.tunn.decapsulate(None, &[], &mut self.out) {
                send(udp, c, q, from).await;
            }
        }
        if let Some(k) = named {
            tracing::debug!(peer = %k, %from, "stranger named by its tunnel address");
            self.by_addr.insert(k.tunnel_addr(), idx);
            self.shared.lock().peers_by_addr.insert(k.tunnel_addr(), k);
        }
        if let Some(p) = packet {
            self.shared.lock().dev.rx.push_back(p);
        }
    }

    /// Encrypts the stack's outgoing packets to their peers.
    async fn transmit(&mut self, packets: Vec<Vec<u8>>) {
        let c = &self.shared.counters;
        for p in packets {
            let Some(dst) = p.get(24..40).and_then(|a| <[u8; 16]>::try_from(a).ok()).map(Ipv6Addr::from) else {
                continue;
            };
            let Some(&idx) = self.by_addr.get(&dst) else { continue };
            let peer = &mut self.peers[idx];
            match peer.tunn.encapsulate(&p, &mut self.out) {
                TunnResult::WriteToNetwork(d) => match peer.endpoint {
                    Some(ep) => send(&self.udp, c, d, ep).await,
                    None => add(&c.no_endpoint, 1),
                },
                TunnResult::Err(e) => tracing::debug!(peer = %peer.key, error = ?e, "encapsulate failed"),
                _ => {}
            }
        }
    }

    async fn timers(&mut self, reset_limiter: bool) {
        if reset_limiter {
            self.limiter.reset_count();
        }
        let c = &self.shared.counters;
        for peer in &mut self.peers {
            match peer.tunn.update_timers(&mut self.out) {
                TunnResult::WriteToNetwork(d) => match peer.endpoint {
                    Some(ep) => send(&self.udp, c, d, ep).await,
                    None => add(&c.no_endpoint, 1),
                },
                // The handshake gave up after 90 s; the next packet for the peer starts a new one.
                TunnResult::Err(WireGuardError::ConnectionExpired) => {}
                TunnResult::Err(e) => tracing::debug!(peer = %peer.key, error = ?e, "wireguard timer"),
                _ => {}
            }
        }
    }
}

fn count_error(c: &Counters, e: &WireGuardError) {
    use WireGuardError::*;
    let counter = match e {
        DuplicateCounter | InvalidCounter | WrongTai64nTimestamp => &c.replayed,
        InvalidAeadTag => &c.tampered,
        InvalidPacket | IncorrectPacketLength | WrongPacketType => &c.garbage,
        _ => &c.rejected,
    };
    add(counter, 1);
}
