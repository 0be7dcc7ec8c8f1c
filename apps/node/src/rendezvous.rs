//! Rendezvous for the WireGuard link, through the Mainline DHT (dtn-nat):
//!
//! * the STUN client and the optional STUN responder share the tunnel's UDP socket: the client sends with
//!   `send_raw` and gets the STUN datagrams the tunnel sets aside (`other_datagrams`), so the mapping it
//!   learns is the one peers must aim at;
//! * STUN servers are found in the DHT, and this node's endpoint record (public mapping, local address,
//!   NAT class) is published under its identity key, again when it changes and periodically;
//! * each peer configured without an endpoint is resolved by its key; its published addresses are set on
//!   the tunnel and a handshake is sent to each. The peer does the same towards us, and the two outbound
//!   handshakes open both NATs (hole punching);
//! * when punching cannot work (our NAT maps per destination, `decide` says so for a peer, or the operator
//!   set `via_relay`), relays announced in the DHT are asked for their identity key over STUN, added as
//!   WireGuard peers and, once a handshake proved the key, handed to the WireGuard link, which keeps a TCPCL
//!   session with each: bundles then cross them as ordinary DTN hops. Our record lists them;
//! * a relay answers STUN with its identity key and announces itself under the network's relay info-hash.
//!
//! Nothing here runs unless DHT bootstrap nodes are configured, so the public DHT is never contacted by
//! default.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use dtn_nat::mainline::Dht;
use dtn_nat::mainline::async_dht::AsyncDht;
use dtn_nat::{
    Announcer, BadNetworkName, DEFAULT_PUNCH_ATTEMPTS, DatagramPort, Endpoint as RecordEndpoint, EndpointKind,
    EndpointRecord, MappingBehaviour, NatClass, NetworkName, PathDecision, PublishError, Publisher, RelayCandidate,
    Resolver, RetransmitPolicy, SelectionConfig, SigningKey, StunClient, StunDiscovery, acceptable, decide,
    pick_relays, relay_needed,
};
use dtn_wg::{Endpoint, Identity, PeerConfig, PeerKey};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::WgConfig;

/// Why rendezvous could not start.
#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    #[error("network name {name:?}: {source}")]
    Network { name: String, source: BadNetworkName },
    #[error("starting the DHT node: {0}")]
    Dht(#[source] std::io::Error),
    #[error("endpoint record: {0}")]
    Publisher(#[from] PublishError),
    /// Only one consumer can take the tunnel's STUN datagrams.
    #[error("the tunnel's STUN datagrams are already taken")]
    DatagramsTaken,
}

/// A handshake completed within this time means the tunnel to a peer works: WireGuard rekeys every two
/// minutes while traffic (or a persistent keepalive) flows and gives a session up after three.
const LIVE: Duration = Duration::from_secs(180);

/// How long one published address of a peer gets to answer: WireGuard retransmits an unanswered
/// initiation after 5 s, and only one initiation is in flight at a time, so a shorter wait could move on
/// before the retransmission to this address went out.
const PUNCH_WAIT: Duration = Duration::from_secs(6);

/// Keepalive towards a relay: holds our NAT's mapping open so that the relay can reach us at any time.
const RELAY_KEEPALIVE: u16 = 25;

/// Relay candidates checked at once, and at most per round (each check is a few 64-byte datagrams).
const RELAY_PROBES: usize = 16;

/// A node that needs a relay and has none tries again this soon, doubling up to the resolve period: it is
/// cut off until it finds one (a relay that just started may not be announced yet).
const RELAY_RETRY: Duration = Duration::from_secs(2);

/// What rendezvous knows about relays, shared by the peer finders and the relay keeper.
#[derive(Default)]
struct RelayNeeds {
    /// Peers for which `decide` said Relay (or that we reach only through relays), with the relays their
    /// records name.
    peers: Mutex<HashMap<PeerKey, Vec<[u8; 32]>>>,
    /// Wakes the relay keeper when a need appears or changes, or our NAT class changes, so that it does
    /// not wait out its period.
    wake: tokio::sync::Notify,
}

impl RelayNeeds {
    fn set(&self, peer: PeerKey, relays: Option<Vec<[u8; 32]>>) {
        let mut p = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let old = match relays {
            Some(r) if p.get(&peer) == Some(&r) => return,
            Some(r) => p.insert(peer, r),
            None => p.remove(&peer),
        };
        if old.is_some() || p.contains_key(&peer) {
            self.wake.notify_one();
        }
    }

    /// Whether any peer needs a relay, and the relays the peers' records name.
    fn snapshot(&self) -> (bool, Vec<[u8; 32]>) {
        let p = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut named: Vec<[u8; 32]> = p.values().flatten().copied().collect();
        named.sort_unstable();
        named.dedup();
        (!p.is_empty(), named)
    }
}

/// The tunnel's socket as the STUN client sees it.
struct TunnelPort(Arc<Endpoint>);

impl DatagramPort for TunnelPort {
    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<()> {
        self.0.send_raw(datagram, to).await.map(|_| ())
    }
}

/// Starts rendezvous for `ep`; the returned tasks hold everything it runs (abort them to stop it).
pub(crate) fn start(
    ep: Arc<Endpoint>,
    identity: &Identity,
    wg: &WgConfig,
    store_dir: &Path,
    has_clock: bool,
    relay_sessions: mpsc::UnboundedSender<PeerKey>,
) -> Result<Vec<JoinHandle<()>>, RendezvousError> {
    let network = NetworkName::new(wg.network.clone())
        .map_err(|source| RendezvousError::Network { name: wg.network.clone(), source })?;
    let timing = &wg.rendezvous;
    let local = ep.local_addr();
    // The DHT socket must be on the tunnel's host address: storing nodes record the address an
    // announcement came from, and a responder is announced as that address with the tunnel's port.
    let bind = match local.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let bootstrap: Vec<String> = wg.dht_bootstrap.iter().map(|a| a.to_string()).collect();
    let mut builder = Dht::builder();
    builder.bootstrap(&bootstrap).bind_address(bind);
    if let Some(t) = timing.dht_request_timeout {
        builder.request_timeout(t);
    }
    let dht: AsyncDht = builder.build().map_err(RendezvousError::Dht)?.as_async();

    let client = Arc::new(StunClient::new(TunnelPort(ep.clone()), RetransmitPolicy::default()));
    let mut datagrams = ep.other_datagrams().ok_or(RendezvousError::DatagramsTaken)?;
    let mut tasks = Vec::new();
    // A relay answers STUN too: its clients check it with a Binding request that asks for its key.
    let responder = wg.stun_responder || wg.relay;
    let relay_key = wg.relay.then(|| *identity.public().as_bytes());
    let (rx_ep, rx_client) = (ep.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        while let Some((d, from)) = datagrams.recv().await {
            // A Binding request is answered (if we are a responder); everything else may be an answer to
            // one of our own requests. `answer` parses defensively and stays silent on garbage.
            if responder && let Some(reply) = dtn_nat::wire::answer_as(&d, from, relay_key.as_ref()) {
                if let Err(e) = rx_ep.send_raw(&reply, from).await {
                    tracing::debug!(%from, error = %e, "STUN answer not sent");
                }
                continue;
            }
            rx_client.handle_datagram(&d, from);
        }
    }));

    let announce = |info_hash| {
        let announcer = Announcer::spawn(dht.clone(), info_hash, local.port(), timing.announce_every);
        // The announcer stops when dropped; this task keeps it until the node aborts it.
        tokio::spawn(async move {
            let _announcer = announcer;
            std::future::pending::<()>().await
        })
    };
    if responder {
        tasks.push(announce(network.stun_info_hash()));
    }
    if wg.relay {
        tasks.push(announce(network.relay_info_hash()));
    }

    let cfg = SelectionConfig { allow_private: timing.allow_private, ..SelectionConfig::default() };
    let discovery = Arc::new(StunDiscovery::new(dht.clone(), &network, client.clone(), cfg));
    let (discovery_task, mut selected) = discovery.clone().spawn(timing.discovery_every);
    let key = SigningKey::from_bytes(&identity.signing_key().to_bytes());
    let publisher = Publisher::new(dht.clone(), key, &network, store_dir.join("rendezvous.seq"))?;
    let lan = lan_addr(local, &wg.dht_bootstrap);
    let ours = Arc::new(Mutex::new(NatClass::Unknown));
    let initial = record(MappingBehaviour::Unknown, lan, has_clock, Vec::new());
    let handle = publisher.spawn(initial, timing.republish_every);
    let nat = ours.clone();
    let needs = Arc::new(RelayNeeds::default());
    let class_changed = needs.clone();
    let (relays_tx, mut relays_rx) = watch::channel(Vec::<[u8; 32]>::new());
    tasks.push(tokio::spawn(async move {
        let _discovery = discovery_task;
        // Each new selection may change the mapping, each relay gained or lost the relay list; the
        // publisher only publishes on a real change.
        loop {
            tokio::select! {
                r = selected.changed() => if r.is_err() { return },
                r = relays_rx.changed() => if r.is_err() { return },
            }
            let mapping = discovery.mapping(Some(local));
            let class = NatClass::from(mapping);
            if std::mem::replace(&mut *nat.lock().unwrap_or_else(|e| e.into_inner()), class) != class {
                class_changed.wake.notify_one();
            }
            let r = record(mapping, lan, has_clock, relays_rx.borrow_and_update().clone());
            tracing::debug!(?mapping, endpoints = ?r.endpoints, relays = r.relays.len(), "endpoint record");
            handle.update(r);
        }
    }));

    let resolver = Resolver::new(dht.clone(), &network);
    for p in wg.peers.iter().filter(|p| p.endpoint.is_none()) {
        let f = Finder { ep: ep.clone(), resolver: resolver.clone(), ours: ours.clone(), needs: needs.clone() };
        tasks.push(tokio::spawn(f.run(p.key, timing.resolve_every, wg.via_relay)));
    }
    if !wg.relay {
        let keeper = RelayKeeper {
            ep: ep.clone(),
            dht,
            info_hash: network.relay_info_hash(),
            client,
            ours: ours.clone(),
            needs,
            via_relay: wg.via_relay,
            allow_private: timing.allow_private,
            configured: wg.peers.iter().map(|p| p.key).collect(),
            published: relays_tx,
            sessions: relay_sessions,
        };
        tasks.push(tokio::spawn(keeper.run(timing.resolve_every)));
    }
    tracing::info!(
        network = network.as_str(),
        responder,
        relay = wg.relay,
        via_relay = wg.via_relay,
        bootstrap = ?wg.dht_bootstrap,
        "rendezvous started"
    );
    Ok(tasks)
}

/// This node's record: the public mapping STUN reported (unless it is per destination, when it is no use
/// to anyone), then the local address for peers behind the same NAT.
fn record(
    mapping: MappingBehaviour,
    lan: Option<SocketAddr>,
    has_clock: bool,
    mut relays: Vec<[u8; 32]>,
) -> EndpointRecord {
    let mut endpoints = Vec::new();
    let public = match mapping {
        MappingBehaviour::Public(a) | MappingBehaviour::EndpointIndependent(a) | MappingBehaviour::Unconfirmed(a) => {
            Some(a)
        }
        MappingBehaviour::EndpointDependent | MappingBehaviour::Unknown => None,
    };
    if let Some(a) = public {
        endpoints.push(RecordEndpoint { kind: EndpointKind::Public, addr: a });
    }
    if let Some(a) = lan.filter(|a| Some(*a) != public) {
        endpoints.push(RecordEndpoint { kind: EndpointKind::Lan, addr: a });
    }
    // A node without a clock would publish nonsense; the record format reserves 0 for it.
    let published_at = if has_clock {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    } else {
        0
    };
    relays.truncate(dtn_nat::MAX_RELAYS);
    EndpointRecord { published_at, nat: NatClass::from(mapping), endpoints, relays }
}

/// The tunnel's address on the local network. A socket bound to a wildcard address has none of its own:
/// the address the kernel would send from towards the DHT is the one a neighbour can reach (a UDP
/// `connect` sends nothing).
fn lan_addr(local: SocketAddr, bootstrap: &[SocketAddr]) -> Option<SocketAddr> {
    if !local.ip().is_unspecified() {
        return Some(local);
    }
    let towards = bootstrap.iter().find(|b| b.is_ipv4() == local.is_ipv4())?;
    let probe = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)).ok()?;
    probe.connect(towards).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(SocketAddr::new(ip, local.port()))
}

async fn live(ep: &Endpoint, peer: PeerKey, within: Duration) -> bool {
    ep.peer_status(peer).await.and_then(|s| s.last_handshake).is_some_and(|h| h < within)
}

struct Finder {
    ep: Arc<Endpoint>,
    resolver: Resolver,
    ours: Arc<Mutex<NatClass>>,
    needs: Arc<RelayNeeds>,
}

impl Finder {
    /// Keeps a peer reachable: while its tunnel is not live, resolves its record and sends a handshake to
    /// each address in it, every `every`. When `decide` says a relay is needed (or `via_relay`: punching is
    /// skipped altogether), the peer and the relays its record names are noted for the relay keeper;
    /// punching still goes on otherwise, since it is cheap and a NAT may change.
    async fn run(self, peer: PeerKey, every: Duration, via_relay: bool) {
        let mut unanswered = 0u32;
        let mut last_seq = None;
        loop {
            if live(&self.ep, peer, LIVE).await {
                self.needs.set(peer, None);
            } else {
                match self.resolver.resolve(peer.as_bytes()).await {
                    Ok(Some(r)) => {
                        if last_seq != Some(r.seq) {
                            tracing::info!(
                                %peer, seq = r.seq, endpoints = ?r.record.endpoints, relays = r.record.relays.len(),
                                "peer's endpoint record"
                            );
                            last_seq = Some(r.seq);
                        }
                        let our_nat = *self.ours.lock().unwrap_or_else(|e| e.into_inner());
                        let decision = decide(our_nat, r.record.nat, unanswered, DEFAULT_PUNCH_ATTEMPTS);
                        if via_relay || matches!(decision, PathDecision::Relay(_)) {
                            self.needs.set(peer, Some(r.record.relays.clone()));
                        } else {
                            self.needs.set(peer, None);
                        }
                        if via_relay {
                            tracing::debug!(%peer, "reaching the peer through relays only");
                        } else {
                            if let PathDecision::Relay(reason) = decision {
                                tracing::info!(%peer, ?reason, "through a relay; punching on in case a NAT changed");
                            }
                            if punch(&self.ep, peer, &r.record).await {
                                tracing::info!(%peer, "tunnel up through rendezvous");
                                unanswered = 0;
                            } else {
                                unanswered = unanswered.saturating_add(1);
                            }
                        }
                    }
                    Ok(None) => tracing::debug!(%peer, "no endpoint record published yet"),
                    Err(e) => tracing::info!(%peer, error = %e, "peer's endpoint record unusable"),
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Finds relays in the DHT while this node needs them, checks each one's key (STUN, then a WireGuard
/// handshake), and hands those that answered to the WireGuard link for a TCPCL session.
struct RelayKeeper {
    ep: Arc<Endpoint>,
    dht: AsyncDht,
    info_hash: dtn_nat::mainline::Id,
    client: Arc<StunClient<TunnelPort>>,
    ours: Arc<Mutex<NatClass>>,
    needs: Arc<RelayNeeds>,
    via_relay: bool,
    allow_private: bool,
    /// Configured peers already have a session of their own.
    configured: Vec<PeerKey>,
    /// The relays with a live tunnel, for our endpoint record.
    published: watch::Sender<Vec<[u8; 32]>>,
    sessions: mpsc::UnboundedSender<PeerKey>,
}

impl RelayKeeper {
    async fn run(self, every: Duration) {
        // Relays whose key a handshake proved; their sessions run for as long as the node does.
        let mut chosen: Vec<PeerKey> = Vec::new();
        let own = *self.ep.public_key().as_bytes();
        let mut retry = RELAY_RETRY;
        loop {
            let mut stranded = false;
            let ours = *self.ours.lock().unwrap_or_else(|e| e.into_inner());
            let (peers_need, named) = self.needs.snapshot();
            let mut up = Vec::new();
            for k in &chosen {
                if live(&self.ep, *k, LIVE).await {
                    up.push(*k.as_bytes());
                }
            }
            self.published.send_if_modified(|p| {
                let changed = *p != up;
                *p = up.clone();
                changed
            });
            let missing_named = named.iter().any(|k| !up.contains(k));
            if relay_needed(self.via_relay, ours, peers_need)
                && (up.len() < dtn_nat::DEFAULT_RELAYS_KEPT || missing_named)
            {
                let found = self.candidates().await;
                let mut reached = false;
                for c in pick_relays(&found, &up, &named, &own, dtn_nat::DEFAULT_RELAYS_KEPT) {
                    let Ok(key) = PeerKey::from_bytes(&c.key) else { continue };
                    if self.prove(key, c.addr, chosen.contains(&key)).await {
                        reached = true;
                        if !chosen.contains(&key) {
                            tracing::info!(relay = %key, addr = %c.addr, rtt = ?c.rtt, "relay reached");
                            chosen.push(key);
                            if !self.configured.contains(&key) {
                                let _ = self.sessions.send(key);
                            }
                        }
                    }
                }
                stranded = up.is_empty() && !reached;
            }
            let wait = if stranded {
                let w = retry.min(every);
                retry = (retry * 2).min(every);
                w
            } else {
                retry = RELAY_RETRY;
                every
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.needs.wake.notified() => {}
            }
        }
    }

    /// Relays announced in the DHT that answered a Binding request with an identity key.
    async fn candidates(&self) -> Vec<RelayCandidate> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let mut stream = self.dht.get_peers(self.info_hash);
        while let Some(batch) = stream.next().await {
            addrs.extend(batch.into_iter().map(SocketAddr::V4).filter(|a| acceptable(*a, self.allow_private)));
            // Announcements are cheap to forge: a bound keeps a flood of them cheap to us.
            if addrs.len() >= RELAY_PROBES {
                break;
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        addrs.truncate(RELAY_PROBES);
        let local = self.ep.local_addr();
        let mut checks = JoinSet::new();
        for a in addrs.into_iter().filter(|a| *a != local) {
            let client = self.client.clone();
            checks.spawn(async move { (a, client.binding_identity(a, RetransmitPolicy::probe()).await) });
        }
        let mut out = Vec::new();
        while let Some(done) = checks.join_next().await {
            if let Ok((addr, Ok(b))) = done
                && let Some(key) = b.identity
            {
                out.push(RelayCandidate { key, addr, rtt: b.rtt });
            }
        }
        tracing::debug!(relays = out.len(), "relays found");
        out
    }

    /// Adds the relay as a WireGuard peer (kept alive, so that our NAT keeps its mapping open) and sends a
    /// handshake: true if one completed, which proves the relay holds the key it claimed.
    async fn prove(&self, key: PeerKey, addr: SocketAddr, known: bool) -> bool {
        if !known {
            let p = PeerConfig { key, endpoint: Some(addr), persistent_keepalive: Some(RELAY_KEEPALIVE) };
            match self.ep.add_peer(p).await {
                // A configured peer that is also a relay: its configuration stands.
                Ok(()) | Err(dtn_wg::Error::DuplicatePeer(_)) => {}
                Err(e) => {
                    tracing::info!(relay = %key, error = %e, "relay not added");
                    return false;
                }
            }
        }
        // Any recent handshake proves the key: the peer was new, or not live when this began.
        let proved = handshake_at(&self.ep, key, addr).await;
        if !proved {
            tracing::info!(relay = %key, %addr, "relay did not complete a handshake");
        }
        proved
    }
}

/// Tries the peer's published addresses in turn (public mapping first: it works from anywhere, the LAN
/// address only next to it), until a handshake completes. True if one did. Called only while the tunnel
/// has had no handshake for `LIVE`, so any handshake within `LIVE` is one of this attempt (or of the
/// peer's punching towards us, which counts as much).
async fn punch(ep: &Endpoint, peer: PeerKey, record: &EndpointRecord) -> bool {
    let mut addrs: Vec<&RecordEndpoint> = record.endpoints.iter().collect();
    addrs.sort_by_key(|e| e.kind);
    for e in addrs {
        if handshake_at(ep, peer, e.addr).await {
            return true;
        }
    }
    false
}

/// Aims the tunnel to `peer` at `addr` and sends a handshake: true if the tunnel is live within
/// `PUNCH_WAIT`. Live, not "handshake since this began": the tunnel's handshake age advances on its timer
/// tick and may read a quarter second older than it is, which would miss a handshake that completed at
/// once. Callers use it only for a tunnel that was not live.
async fn handshake_at(ep: &Endpoint, peer: PeerKey, addr: SocketAddr) -> bool {
    let started = tokio::time::Instant::now();
    ep.set_peer_endpoint(peer, addr);
    ep.initiate_handshake(peer);
    while started.elapsed() < PUNCH_WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if live(ep, peer, LIVE).await {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lists_the_mapping_then_a_distinct_lan_address() {
        let public: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:51820".parse().unwrap();
        let r = record(MappingBehaviour::EndpointIndependent(public), Some(lan), false, vec![[1; 32]]);
        assert_eq!(r.relays, vec![[1; 32]]);
        assert_eq!(r.nat, NatClass::Cone);
        assert_eq!(r.published_at, 0);
        assert_eq!(
            r.endpoints,
            vec![
                RecordEndpoint { kind: EndpointKind::Public, addr: public },
                RecordEndpoint { kind: EndpointKind::Lan, addr: lan }
            ]
        );
        // A public socket's mapping is its own address: listed once.
        let r = record(MappingBehaviour::Public(lan), Some(lan), true, Vec::new());
        assert_eq!(r.endpoints.len(), 1);
        assert!(r.published_at > 0);
        // A per-destination mapping is useless to peers: only the LAN address is published.
        let r = record(MappingBehaviour::EndpointDependent, Some(lan), false, Vec::new());
        assert_eq!((r.nat, r.endpoints.len()), (NatClass::Symmetric, 1));
    }

    #[test]
    fn lan_address_of_a_bound_socket_is_itself() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(lan_addr(a, &[]), Some(a));
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert_eq!(lan_addr(any, &[]), None);
        let found = lan_addr(any, &["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(found, Some("127.0.0.1:5000".parse().unwrap()));
    }
}
