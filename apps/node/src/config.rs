//! What a node is started with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dtn_core::bpv7::Eid;
use dtn_core::routing::RoutingConfig;

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
        }
    }

    pub(crate) fn engine_config(&self) -> dtn_core::engine::Config {
        let mut c = dtn_core::engine::Config::new(self.node_id.clone());
        c.custody = self.custody;
        c.has_clock = self.has_clock;
        c.default_lifetime_ms = self.default_lifetime.as_millis() as u64;
        c.fragment_payload = self.fragment_payload;
        c.limits.require_primary_crc = !self.accept_primary_without_crc;
        c
    }
}

fn seed_from_time() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}
