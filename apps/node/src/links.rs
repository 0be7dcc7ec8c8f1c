//! Convergence layers: TCPCLv4 sessions from the listener, to static peers and to discovered neighbours,
//! each turned into one engine contact.
//!
//! Received bundles are acknowledged only once the engine's commit of them is durable, so an XFER_ACK
//! always means "stored". Intermediate segments of a multi-segment transfer are acknowledged together with
//! the last one, for the same reason.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dtn_core::bpv7::Eid;
use dtn_core::engine::Event;
use dtn_core::routing::{LinkClass, LinkInfo};
use dtn_tcpcl::{Outcome, RefuseReason, SessionConfig, SessionEvents, SessionHandle, TermReason};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::budget::LinkBudget;
use crate::core::{Input, Outgoing};
use crate::{NodeConfig, NodeError, NodeHandle};

pub(crate) struct Links {
    pub listen_addr: Option<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

pub(crate) type Blocked = Arc<Mutex<BTreeSet<Eid>>>;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn session_config(cfg: &NodeConfig) -> SessionConfig {
    let mut s = SessionConfig::new(cfg.node_id.to_string());
    s.transfer_mru = cfg.max_bundle;
    s.keepalive = cfg.keepalive;
    s
}

pub(crate) async fn start(cfg: &NodeConfig, node: NodeHandle, blocked: Blocked) -> Result<Links, NodeError> {
    let scfg = session_config(cfg);
    let mut tasks = Vec::new();
    let mut listen_addr = None;
    if let Some(addr) = cfg.tcpcl {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Io { context: format!("binding TCPCL on {addr}"), source })?;
        listen_addr =
            Some(listener.local_addr().map_err(|source| NodeError::Io { context: "TCPCL address".into(), source })?);
        tasks.push(tokio::spawn(accept_loop(listener, scfg.clone(), node.clone(), blocked.clone(), cfg.max_bundle)));
    }
    for &peer in &cfg.peers {
        tasks.push(tokio::spawn(dial_loop(peer, scfg.clone(), node.clone(), blocked.clone(), cfg.max_bundle)));
    }
    if cfg.discovery {
        match listen_addr {
            Some(addr) => {
                let mut d = dtn_discovery::DiscoveryConfig::new(cfg.node_id.clone(), addr.port());
                d.interval = cfg.beacon_interval;
                d.port = cfg.discovery_addr.port();
                if let std::net::IpAddr::V4(g) = cfg.discovery_addr.ip() {
                    d.group_v4 = g;
                }
                match dtn_discovery::Discovery::start(d) {
                    Ok((handle, events)) => {
                        let dial = Dialer { scfg: scfg.clone(), node: node.clone(), blocked, max: cfg.max_bundle };
                        tasks.push(tokio::spawn(discovered(handle, events, dial)));
                    }
                    // No multicast on this host (no interface up, a container): the node still works
                    // with static peers.
                    Err(e) => tracing::warn!(error = %e, "LAN discovery unavailable"),
                }
            }
            None => tracing::info!("LAN discovery off: no TCPCL listener to announce"),
        }
    }
    Ok(Links { listen_addr, tasks })
}

#[derive(Clone)]
struct Dialer {
    scfg: SessionConfig,
    node: NodeHandle,
    blocked: Blocked,
    max: u64,
}

/// Turns discovered neighbours into sessions. Of two of our nodes that discover each other, the one with
/// the smaller node ID dials at once and the other only if no session came up meanwhile, so that they do
/// not open two sessions. A neighbour that goes silent has its dialler stopped (its session ends with it).
async fn discovered(
    handle: dtn_discovery::DiscoveryHandle,
    mut events: tokio::sync::mpsc::Receiver<dtn_discovery::DiscoveryEvent>,
    dial: Dialer,
) {
    use dtn_discovery::DiscoveryEvent as D;
    let me = dial.node.node_id().clone();
    let mut dialers: std::collections::BTreeMap<Eid, JoinHandle<()>> = std::collections::BTreeMap::new();
    while let Some(ev) = events.recv().await {
        match ev {
            D::NeighbourUp { node_id, tcpcl, .. } | D::NeighbourChanged { node_id, tcpcl, .. } => {
                let peer = node_id.node_id();
                if peer == me {
                    continue;
                }
                tracing::info!(%peer, %tcpcl, "neighbour discovered");
                let d = dial.clone();
                let wait = if me < peer { Duration::ZERO } else { Duration::from_secs(3) };
                let p = peer.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if d.node.peers().await.is_ok_and(|ps| ps.iter().any(|x| x.node == p.to_string())) {
                        return;
                    }
                    dial_loop(tcpcl, d.scfg, d.node, d.blocked, d.max).await;
                });
                if let Some(old) = dialers.insert(peer, task) {
                    old.abort();
                }
            }
            D::NeighbourDown { node_id } => {
                tracing::info!(peer = %node_id, "neighbour gone");
                if let Some(t) = dialers.remove(&node_id.node_id()) {
                    t.abort();
                }
            }
        }
    }
    drop(handle);
}

async fn accept_loop(listener: TcpListener, scfg: SessionConfig, node: NodeHandle, blocked: Blocked, max: u64) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "TCPCL accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (scfg, node, blocked) = (scfg.clone(), node.clone(), blocked.clone());
        tokio::spawn(async move {
            match dtn_tcpcl::accept(tcp, scfg).await {
                Ok((h, ev)) => run_session(h, ev, node, blocked, max).await,
                Err(e) => tracing::info!(%from, error = %e, "TCPCL session refused"),
            }
        });
    }
}

/// Keeps a session with a static peer, reconnecting with backoff (1 s doubling to 30 s) when it ends.
async fn dial_loop(addr: SocketAddr, scfg: SessionConfig, node: NodeHandle, blocked: Blocked, max: u64) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match dtn_tcpcl::connect(addr, scfg.clone()).await {
            Ok((h, ev)) => {
                backoff = Duration::from_secs(1);
                run_session(h, ev, node.clone(), blocked.clone(), max).await;
            }
            Err(e) => tracing::debug!(%addr, error = %e, "TCPCL connect failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One session as one contact, with the link class taken from the peer's address (loopback: wired, else
/// Wi-Fi). See [`run_session_on`].
async fn run_session(h: SessionHandle, events: SessionEvents, node: NodeHandle, blocked: Blocked, max: u64) {
    run_session_on(h, events, node, blocked, max, None, None).await
}

/// One session as one contact: bundles out from the engine, bundles in to it, until the session ends.
/// `class` is the link class when the convergence layer knows it better than the peer's address does (a
/// WireGuard tunnel: its inner addresses say nothing about the path). Bytes sent count against `budget`, if
/// any, and the contact's volume is what is left of it today.
pub(crate) async fn run_session_on(
    h: SessionHandle,
    mut events: SessionEvents,
    node: NodeHandle,
    blocked: Blocked,
    max: u64,
    class: Option<LinkClass>,
    budget: Option<LinkBudget>,
) {
    let peer = match h.peer_node_id().parse::<Eid>() {
        Ok(e) if !e.is_null() && e.node_id() == e => e,
        _ => {
            tracing::warn!(peer = h.peer_node_id(), addr = %h.params().peer_addr, "peer gave no usable node ID");
            h.terminate(TermReason::ContactFailure);
            return;
        }
    };
    if blocked.lock().unwrap_or_else(|e| e.into_inner()).contains(&peer) {
        h.terminate(TermReason::ResourceExhaustion);
        return;
    }
    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    let p = h.params();
    let class = class.unwrap_or(if p.peer_addr.ip().is_loopback() { LinkClass::Wired } else { LinkClass::Wifi });
    let link = LinkInfo { class, rate: None, mtu: Some(p.peer_transfer_mru), volume: None, durable_acks: true };
    tracing::info!(%peer, addr = %p.peer_addr, ?class, "contact up");
    if node.input(Input::ContactUp { peer: peer.clone(), link, session, tx, budget }).is_err() {
        return;
    }
    let sender = tokio::spawn(send_loop(h.clone(), rx, node.clone()));
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let acker = tokio::spawn(ack_loop(h.clone(), acks_rx));
    let mut current: Option<Incoming> = None;
    while let Some(ev) = events.recv().await {
        match ev {
            dtn_tcpcl::Event::Segment(seg) => {
                let t = match &mut current {
                    Some(t) if t.id == seg.transfer_id => t,
                    _ => current.insert(Incoming::new(seg.transfer_id)),
                };
                if seg.len_so_far() > max {
                    let _ = h.refuse(seg.transfer_id, RefuseReason::NoResources).await;
                    current = None;
                    continue;
                }
                t.bytes.extend_from_slice(&seg.data);
                t.acks.push(seg.len_so_far());
                if seg.end {
                    let Some(t) = current.take() else { continue };
                    let (durable, stored) = oneshot::channel();
                    let input = if t.kept > 0 {
                        Input::ReceivedPartial { peer: peer.clone(), bytes: t.bytes, skip: t.kept, durable }
                    } else {
                        Input::Received { peer: peer.clone(), bytes: t.bytes, durable }
                    };
                    if node.input(input).is_err() {
                        break;
                    }
                    let _ = acks_tx.send(Acks { id: t.id, lens: t.acks, last: true, stored: Some(stored) });
                    continue;
                }
                match t.piece() {
                    Checkpoint::Wait => {}
                    // Cannot be kept in part: acknowledged as it arrives, so that a sender with a window smaller
                    // than the bundle goes on; a cut loses it and the sender sends it again whole.
                    Checkpoint::Unsplittable => {
                        let lens = std::mem::take(&mut t.acks);
                        let _ = acks_tx.send(Acks { id: t.id, lens, last: false, stored: None });
                    }
                    // What arrived of a long transfer is kept as a fragment and acknowledged once durable: a cut
                    // from here on costs the sender only the rest, and only the bytes since are held here.
                    Checkpoint::Keep { bytes, skip } => {
                        let (durable, stored) = oneshot::channel();
                        if node.input(Input::ReceivedPartial { peer: peer.clone(), bytes, skip, durable }).is_err() {
                            break;
                        }
                        let lens = std::mem::take(&mut t.acks);
                        let _ = acks_tx.send(Acks { id: t.id, lens, last: false, stored: Some(stored) });
                    }
                }
            }
            dtn_tcpcl::Event::Ended(end) => {
                tracing::info!(%peer, reason = ?end.reason, by_peer = end.by_peer, error = ?end.error, "contact down");
                break;
            }
            other => tracing::debug!(%peer, ?other, "TCPCL"),
        }
    }
    drop(acks_tx);
    let _ = node.input(Input::ContactDown { peer, session });
    let _ = acker.await;
    sender.abort();
}

/// An incoming transfer being assembled.
struct Incoming {
    id: u64,
    /// The bundle's encoding up to its payload data, then the payload bytes not yet kept as a piece.
    bytes: Vec<u8>,
    /// Cumulative lengths to acknowledge, one per segment received and not yet acknowledged.
    acks: Vec<u64>,
    /// Where the payload data starts and how long it is, once the header has arrived.
    span: Option<(usize, u64, bool)>,
    /// Payload bytes kept as pieces.
    kept: u64,
}

/// Payload bytes of a transfer kept as one piece: a cut costs at most this much again, and it is what the
/// receiver holds in memory of a transfer. Below the sending windows of ours (8 MiB) and dtn7-rs.
const PIECE: u64 = 4 << 20;

enum Checkpoint {
    /// Nothing to do yet.
    Wait,
    /// A bundle that must not be fragmented: it cannot be kept in part.
    Unsplittable,
    /// Keep these payload bytes (see `Event::ReceivedPartial`).
    Keep { bytes: Vec<u8>, skip: u64 },
}

impl Incoming {
    fn new(id: u64) -> Incoming {
        Incoming { id, bytes: Vec::new(), acks: Vec::new(), span: None, kept: 0 }
    }

    /// Whether the bytes since the last piece make a new one; if so, they are handed over and only the
    /// header stays.
    fn piece(&mut self) -> Checkpoint {
        if self.span.is_none() {
            // A header that does not parse is reported when the transfer ends.
            let limits = dtn_core::bpv7::Limits { require_primary_crc: false, ..Default::default() };
            if let Ok(Some((start, len, whole))) = dtn_core::bpv7::payload_span(&self.bytes, &limits) {
                self.span = usize::try_from(start).ok().map(|s| (s, len, whole));
            }
        }
        let Some((start, len, must_not_fragment)) = self.span else { return Checkpoint::Wait };
        if must_not_fragment {
            return Checkpoint::Unsplittable;
        }
        let new = self.bytes.len().saturating_sub(start) as u64;
        // The last bytes of the payload wait for the end of the transfer, which checks the rest of it.
        if new < PIECE || self.kept + new >= len {
            return Checkpoint::Wait;
        }
        let head = self.bytes[..start].to_vec();
        let bytes = std::mem::replace(&mut self.bytes, head);
        let skip = self.kept;
        self.kept += new;
        Checkpoint::Keep { bytes, skip }
    }
}

/// Acknowledgements of part of a transfer, to send once its bytes are durable.
struct Acks {
    id: u64,
    /// Cumulative lengths, one per segment.
    lens: Vec<u64>,
    /// The last of the transfer (the final acknowledgement carries the end flag).
    last: bool,
    /// Answers whether the bytes are durable; `None` to acknowledge at once.
    stored: Option<oneshot::Receiver<bool>>,
}

/// Acknowledges received transfers in arrival order, each once the engine reports it durable.
async fn ack_loop(h: SessionHandle, mut rx: mpsc::UnboundedReceiver<Acks>) {
    while let Some(a) = rx.recv().await {
        let durable = match a.stored {
            Some(stored) => stored.await,
            None => Ok(true),
        };
        match durable {
            Ok(true) => {
                let n = a.lens.len();
                for (i, len) in a.lens.into_iter().enumerate() {
                    if h.ack(a.id, len, a.last && i + 1 == n).await.is_err() {
                        return;
                    }
                }
            }
            // Not stored (store full, store error, node stopping): the sender keeps it.
            _ => {
                if h.refuse(a.id, RefuseReason::NoResources).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends what the engine hands this session, in order, and reports each outcome. Ends (cutting the
/// session) when the engine drops the contact: the operator cut the link or the node is stopping.
async fn send_loop(h: SessionHandle, mut rx: mpsc::UnboundedReceiver<Outgoing>, node: NodeHandle) {
    while let Some(out) = rx.recv().await {
        // `send` queues the transfer at once, so transfers start in the engine's order.
        let done = h.send(Bytes::from(out.bytes));
        let node = node.clone();
        tokio::spawn(async move {
            let transfer = out.transfer;
            let event = match done.await {
                Outcome::Acked | Outcome::Refused(RefuseReason::Completed) => Event::TransferFinished { transfer },
                Outcome::Cut { acked } if acked > 0 => Event::TransferCut { transfer, durable: acked },
                _ => Event::TransferFailed { transfer },
            };
            let _ = node.input(Input::Event(event));
        });
    }
    if h.ended().is_none() {
        h.abort();
    }
}
