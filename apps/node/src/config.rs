//! What a node is started with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dtn_core::bpv7::Eid;
use dtn_core::routing::{LinkClass, RoutingConfig};
pub use dtn_wg::PeerKey;

/// A node's configuration. `dtnd` fills it from its TOML file and flags; embedders set it directly.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node ID (`dtn://name/` or `ipn:N.0`).
    pub node_id: Eid,
    /// Store directory.
    pub store_dir: PathBuf,
    /// Store quota in bytes.
    pub quota: u64,
    /// Routing agent.
    pub routing: RoutingConfig,
    /// TCPCL listen address; `None` listens nowhere (the node only dials).
    pub tcpcl: Option<SocketAddr>,
    /// Static TCPCL peers to keep a session with.
    pub peers: Vec<SocketAddr>,
    /// LAN discovery (beacons out, neighbours become contacts).
    pub discovery: bool,
    /// Beacon interval.
    pub beacon_interval: Duration,
    /// Multicast group and port for discovery beacons.
    pub discovery_addr: SocketAddr,
    /// Application API address (loopback); `None` runs no API.
    pub api: Option<SocketAddr>,
    /// Take custody of bundles created here.
    pub custody: bool,
    /// Default bundle lifetime.
    pub default_lifetime: Duration,
    /// Payloads larger than this are fragmented at the source.
    pub fragment_payload: Option<u64>,
    /// Largest bundle accepted from a peer in one transfer.
    pub max_bundle: u64,
    /// Seed of the engine's random choices (custody retry jitter).
    pub seed: u64,
    /// Accept bundles from peers whose primary block has no CRC. RFC 9171 §4.3.1 requires one, but dtn7-rs
    /// 0.21 sends bundles without it, so interoperating with it needs this (on by default).
    pub accept_primary_without_crc: bool,
    /// Whether the node has a real-time clock. Without one (a station that boots with its clock at 1970),
    /// bundles are created with time 0 and a bundle-age block, and the node's time base is kept in the store
    /// directory so that it never goes backwards (`dtnd --no-clock`).
    pub has_clock: bool,
    /// TCPCL keepalive interval offered (seconds; 0 disables). A session silent for twice the agreed
    /// interval is taken for lost, so a link that went away is noticed within that time.
    pub keepalive: u16,
    /// The WireGuard convergence layer (TCPCL sessions through WireGuard tunnels over UDP); `None` runs none.
    pub wg: Option<WgConfig>,
    /// Direct delivery: a bundle that arrives whole for an endpoint whose application is reading goes
    /// straight to it, and the peer's acknowledgement waits until the application has it; only a tombstone
    /// is written. The application gets this long to take it, after which the node stores it (and
    /// acknowledges it) as usual. `None` stores every bundle before delivering it.
    pub direct_delivery: Option<Duration>,
}

/// The WireGuard link: one UDP socket, tunnels to peers named by their identity public key.
#[derive(Debug, Clone)]
pub struct WgConfig {
    /// UDP address of the tunnel's socket (port 0: any).
    pub listen: SocketAddr,
    /// The identity key file; `None` uses `<store>/identity` (created on first start).
    pub key_file: Option<PathBuf>,
    /// Peers: only they can reach this node through the tunnel, and the node keeps a session with each.
    pub peers: Vec<WgPeer>,
    /// Seconds between keepalives on an idle tunnel, for peers that set none (25 holds most NAT mappings).
    pub persistent_keepalive: Option<u16>,
    /// Link class of the contacts, for peers that set none. Metered by default: a tunnel usually crosses
    /// a cellular or satellite link that is paid per byte.
    pub class: LinkClass,
    /// Rendezvous: the DTN network's name, which separates its STUN servers and endpoint records from
    /// every other network's in the shared DHT (1 to 57 bytes).
    pub network: String,
    /// Mainline DHT nodes to bootstrap from. Empty: no rendezvous at all, and the DHT is never contacted
    /// (in particular not the public DHT's default bootstrap nodes).
    pub dht_bootstrap: Vec<SocketAddr>,
    /// Answer STUN Binding requests on the tunnel's socket and announce that in the DHT: for nodes with a
    /// public address, so that NATed nodes of the network can learn their mappings.
    pub stun_responder: bool,
    /// Rendezvous timers and rules; the defaults suit the public Internet.
    pub rendezvous: RendezvousTiming,
    /// Be a relay for the network: answer STUN (as `stun_responder`), announce the tunnel in the DHT as a
    /// relay, and take WireGuard sessions from any key (up to `max_relay_peers` at once), so that nodes
    /// that cannot reach each other directly exchange bundles through this one as an ordinary DTN hop.
    /// Needs rendezvous (a network name and DHT bootstrap nodes) and a publicly reachable socket.
    pub relay: bool,
    /// Reach peers through relays only, without punching: for a node known to sit behind a carrier-grade
    /// NAT. Without it the node still falls back to relays by itself when its NAT maps per destination or
    /// punching to a peer goes unanswered. Needs rendezvous.
    pub via_relay: bool,
    /// A relay's cap on peers it was not configured with (the strangers it serves at once).
    pub max_relay_peers: usize,
    /// Bytes a day the node may send to each peer that sets no budget of its own; `None`: no limit. Counts
    /// bundle bytes handed to the TCPCL session; days turn at UTC midnight (without a clock: every 24 h of
    /// the node's time base); the count is kept in the store across restarts.
    pub budget_per_day: Option<u64>,
}

/// How often rendezvous does what it does.
#[derive(Debug, Clone)]
pub struct RendezvousTiming {
    /// Between lookups of STUN servers in the DHT (checks of known ones fall due by their own clock).
    pub discovery_every: Duration,
    /// Between publications of an unchanged endpoint record (a changed one goes out at once).
    pub republish_every: Duration,
    /// Between resolutions of the records of peers that have no live tunnel.
    pub resolve_every: Duration,
    /// Between announcements of our STUN responder.
    pub announce_every: Duration,
    /// Accept STUN servers on loopback and private addresses (closed networks, tests); remote announcers
    /// should never name those on the Internet.
    pub allow_private: bool,
    /// Time a DHT query waits for a silent node (`None`: the DHT library's default).
    pub dht_request_timeout: Option<Duration>,
}

impl Default for RendezvousTiming {
    fn default() -> Self {
        RendezvousTiming {
            discovery_every: Duration::from_secs(5 * 60),
            republish_every: Duration::from_secs(30 * 60),
            resolve_every: Duration::from_secs(60),
            announce_every: Duration::from_secs(10 * 60),
            allow_private: false,
            dht_request_timeout: None,
        }
    }
}

impl WgConfig {
    /// Defaults: no peers, keepalive 25 s, metered.
    pub fn new(listen: SocketAddr) -> WgConfig {
        WgConfig {
            listen,
            key_file: None,
            peers: Vec::new(),
            persistent_keepalive: Some(25),
            class: LinkClass::Metered,
            network: String::new(),
            dht_bootstrap: Vec::new(),
            stun_responder: false,
            rendezvous: RendezvousTiming::default(),
            budget_per_day: None,
            relay: false,
            via_relay: false,
            max_relay_peers: 256,
        }
    }

    /// Rendezvous runs when DHT bootstrap nodes are configured.
    pub fn rendezvous_enabled(&self) -> bool {
        !self.dht_bootstrap.is_empty()
    }

    /// Where the identity key is kept for a node whose store is `store_dir`.
    pub fn key_path(&self, store_dir: &std::path::Path) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| store_dir.join("identity"))
    }
}

/// A WireGuard peer.
#[derive(Debug, Clone)]
pub struct WgPeer {
    /// Its identity public key (what `dtnd --print-identity` prints on that node).
    pub key: PeerKey,
    /// Where to reach it, if known in advance; `None` for a peer that dials us (or is found by rendezvous).
    pub endpoint: Option<SocketAddr>,
    /// Overrides [`WgConfig::persistent_keepalive`].
    pub persistent_keepalive: Option<u16>,
    /// Overrides [`WgConfig::class`].
    pub class: Option<LinkClass>,
    /// Overrides [`WgConfig::budget_per_day`].
    pub budget_per_day: Option<u64>,
}

impl WgPeer {
    pub fn new(key: PeerKey, endpoint: Option<SocketAddr>) -> WgPeer {
        WgPeer { key, endpoint, persistent_keepalive: None, class: None, budget_per_day: None }
    }
}

impl NodeConfig {
    /// Defaults: epidemic routing, TCPCL on 0.0.0.0:4556, no static peers, discovery on, API on
    /// 127.0.0.1:3000, 64 GiB quota.
    pub fn new(node_id: Eid, store_dir: PathBuf) -> Self {
        NodeConfig {
            node_id: node_id.node_id(),
            store_dir,
            quota: 64 << 30,
            routing: RoutingConfig::Epidemic,
            tcpcl: Some(SocketAddr::from(([0, 0, 0, 0], 4556))),
            peers: Vec::new(),
            discovery: true,
            beacon_interval: Duration::from_secs(2),
            discovery_addr: SocketAddr::from(([224, 0, 0, 26], 3003)),
            api: Some(SocketAddr::from(([127, 0, 0, 1], 3000))),
            custody: true,
            default_lifetime: Duration::from_secs(7 * 24 * 3600),
            fragment_payload: Some(1 << 20),
            max_bundle: 256 << 20,
            seed: seed_from_time(),
            accept_primary_without_crc: true,
            has_clock: true,
            keepalive: 30,
            wg: None,
            direct_delivery: Some(Duration::from_secs(2)),
        }
    }

    pub(crate) fn engine_config(&self) -> dtn_core::engine::Config {
        let mut c = dtn_core::engine::Config::new(self.node_id.clone());
        c.custody = self.custody;
        c.has_clock = self.has_clock;
        c.default_lifetime_ms = self.default_lifetime.as_millis() as u64;
        c.fragment_payload = self.fragment_payload;
        c.limits.require_primary_crc = !self.accept_primary_without_crc;
        c.direct_delivery = self.direct_delivery.is_some();
        c
    }
}

fn seed_from_time() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}
