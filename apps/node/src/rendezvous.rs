//! Rendezvous for the WireGuard link, through the Mainline DHT (dtn-nat):
//!
//! * the STUN client and the optional STUN responder share the tunnel's UDP socket: the client sends with
//!   `send_raw` and gets the STUN datagrams the tunnel sets aside (`other_datagrams`), so the mapping it
//!   learns is the one peers must aim at;
//! * STUN servers are found in the DHT, and this node's endpoint record (public mapping, local address,
//!   NAT class) is published under its identity key, again when it changes and periodically;
//! * each peer configured without an endpoint is resolved by its key; its published addresses are set on
//!   the tunnel and a handshake is sent to each. The peer does the same towards us, and the two outbound
//!   handshakes open both NATs (hole punching).
//!
//! Nothing here runs unless DHT bootstrap nodes are configured, so the public DHT is never contacted by
//! default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtn_nat::mainline::Dht;
use dtn_nat::mainline::async_dht::AsyncDht;
use dtn_nat::{
    Announcer, BadNetworkName, DEFAULT_PUNCH_ATTEMPTS, DatagramPort, Endpoint as RecordEndpoint, EndpointKind,
    EndpointRecord, MappingBehaviour, NatClass, NetworkName, PathDecision, PublishError, Publisher, Resolver,
    RetransmitPolicy, SelectionConfig, SigningKey, StunClient, StunDiscovery, decide,
};
use dtn_wg::{Endpoint, Identity, PeerKey};
use tokio::task::JoinHandle;

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
    let responder = wg.stun_responder;
    let (rx_ep, rx_client) = (ep.clone(), client.clone());
    tasks.push(tokio::spawn(async move {
        while let Some((d, from)) = datagrams.recv().await {
            // A Binding request is answered (if we are a responder); everything else may be an answer to
            // one of our own requests. `answer` parses defensively and stays silent on garbage.
            if responder && let Some(reply) = dtn_nat::wire::answer(&d, from) {
                if let Err(e) = rx_ep.send_raw(&reply, from).await {
                    tracing::debug!(%from, error = %e, "STUN answer not sent");
                }
                continue;
            }
            rx_client.handle_datagram(&d, from);
        }
    }));

    if responder {
        let announcer = Announcer::spawn(dht.clone(), network.stun_info_hash(), local.port(), timing.announce_every);
        // The announcer stops when dropped; this task keeps it until the node aborts it.
        tasks.push(tokio::spawn(async move {
            let _announcer = announcer;
            std::future::pending::<()>().await
        }));
    }

    let cfg = SelectionConfig { allow_private: timing.allow_private, ..SelectionConfig::default() };
    let discovery = Arc::new(StunDiscovery::new(dht.clone(), &network, client, cfg));
    let (discovery_task, mut selected) = discovery.clone().spawn(timing.discovery_every);
    let key = SigningKey::from_bytes(&identity.signing_key().to_bytes());
    let publisher = Publisher::new(dht.clone(), key, &network, store_dir.join("rendezvous.seq"))?;
    let lan = lan_addr(local, &wg.dht_bootstrap);
    let ours = Arc::new(Mutex::new(NatClass::Unknown));
    let initial = record(MappingBehaviour::Unknown, lan, has_clock);
    let handle = publisher.spawn(initial, timing.republish_every);
    let nat = ours.clone();
    tasks.push(tokio::spawn(async move {
        let _discovery = discovery_task;
        // Each new selection may change the mapping; the publisher only publishes on a real change.
        while selected.changed().await.is_ok() {
            let mapping = discovery.mapping(Some(local));
            *nat.lock().unwrap_or_else(|e| e.into_inner()) = NatClass::from(mapping);
            let r = record(mapping, lan, has_clock);
            tracing::debug!(?mapping, endpoints = ?r.endpoints, "endpoint record");
            handle.update(r);
        }
    }));

    let resolver = Resolver::new(dht, &network);
    for p in wg.peers.iter().filter(|p| p.endpoint.is_none()) {
        tasks.push(tokio::spawn(find_peer(ep.clone(), resolver.clone(), p.key, ours.clone(), timing.resolve_every)));
    }
    tracing::info!(network = network.as_str(), responder, bootstrap = ?wg.dht_bootstrap, "rendezvous started");
    Ok(tasks)
}

/// This node's record: the public mapping STUN reported (unless it is per destination, when it is no use
/// to anyone), then the local address for peers behind the same NAT.
fn record(mapping: MappingBehaviour, lan: Option<SocketAddr>, has_clock: bool) -> EndpointRecord {
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
    EndpointRecord { published_at, nat: NatClass::from(mapping), endpoints, relays: Vec::new() }
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

/// Keeps a peer reachable: while its tunnel is not live, resolves its record and sends a handshake to each
/// address in it, every `every`.
async fn find_peer(ep: Arc<Endpoint>, resolver: Resolver, peer: PeerKey, ours: Arc<Mutex<NatClass>>, every: Duration) {
    let mut unanswered = 0u32;
    let mut last_seq = None;
    loop {
        if !live(&ep, peer, LIVE).await {
            match resolver.resolve(peer.as_bytes()).await {
                Ok(Some(r)) => {
                    if last_seq != Some(r.seq) {
                        tracing::info!(%peer, seq = r.seq, endpoints = ?r.record.endpoints, "peer's endpoint record");
                        last_seq = Some(r.seq);
                    }
                    let our_nat = *ours.lock().unwrap_or_else(|e| e.into_inner());
                    if let PathDecision::Relay(reason) =
                        decide(our_nat, r.record.nat, unanswered, DEFAULT_PUNCH_ATTEMPTS)
                    {
                        // The node has no relay path yet; punching is cheap (a few handshakes per round),
                        // so it goes on trying in case a NAT changed.
                        tracing::info!(%peer, ?reason, "a relay would be needed; trying to punch anyway");
                    }
                    if punch(&ep, peer, &r.record).await {
                        tracing::info!(%peer, "tunnel up through rendezvous");
                        unanswered = 0;
                    } else {
                        unanswered = unanswered.saturating_add(1);
                    }
                }
                Ok(None) => tracing::debug!(%peer, "no endpoint record published yet"),
                Err(e) => tracing::info!(%peer, error = %e, "peer's endpoint record unusable"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Tries the peer's published addresses in turn (public mapping first: it works from anywhere, the LAN
/// address only next to it), until a handshake completes. True if one did.
async fn punch(ep: &Endpoint, peer: PeerKey, record: &EndpointRecord) -> bool {
    let mut addrs: Vec<&RecordEndpoint> = record.endpoints.iter().collect();
    addrs.sort_by_key(|e| e.kind);
    for e in addrs {
        let started = tokio::time::Instant::now();
        ep.set_peer_endpoint(peer, e.addr);
        ep.initiate_handshake(peer);
        while started.elapsed() < PUNCH_WAIT {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Only a handshake completed since this attempt began counts.
            if live(ep, peer, started.elapsed()).await {
                return true;
            }
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
        let r = record(MappingBehaviour::EndpointIndependent(public), Some(lan), false);
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
        let r = record(MappingBehaviour::Public(lan), Some(lan), true);
        assert_eq!(r.endpoints.len(), 1);
        assert!(r.published_at > 0);
        // A per-destination mapping is useless to peers: only the LAN address is published.
        let r = record(MappingBehaviour::EndpointDependent, Some(lan), false);
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
