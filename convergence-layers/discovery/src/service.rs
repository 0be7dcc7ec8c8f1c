//! The tokio task: one UDP socket per address family, beacons out on a timer, beacons in to the
//! [`NeighbourTable`], events out on a channel.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dtn_core::bpv7::Eid;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, trace, warn};

use crate::beacon::{Beacon, MAX_DATAGRAM_LEN, MAX_PERIOD_MS, MIN_PERIOD_MS, TcpclEndpoint, check_node_id, decode_any};
use crate::dtn7::Dtn7Beacon;
use crate::table::{DiscoveryEvent, Ignored, NeighbourTable, TableConfig, Update};

/// dtn7-rs's IPv4 discovery group.
pub const DTN7_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 26);
/// dtn7-rs's documented IPv6 discovery group (its `--discovery-destination` help; see the README for what
/// its code actually does).
pub const DTN7_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x300);
/// dtn7-rs's discovery port.
pub const DTN7_PORT: u16 = 3003;

/// Which format(s) we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFormat {
    /// dtn7's format only: dtn7 nodes and ours both understand it (the default).
    Dtn7,
    /// Our format only: for a group/port where no dtn7 node listens (dtn7 logs an error for every datagram
    /// on its port it cannot parse).
    Ours,
    /// Both, one datagram each per interval.
    Both,
}

/// Discovery settings; [`DiscoveryConfig::new`] gives the defaults (see the README for why).
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Our node ID (`dtn://name/` or `ipn:N.0`); beacons carrying it are ignored.
    pub node_id: Eid,
    /// Port of our TCPCL listener.
    pub tcpcl_port: u16,
    /// Address to announce for our TCPCL instead of the beacons' source address (e.g. behind a port
    /// forward). dtn7 cannot use such an endpoint; see the README.
    pub tcpcl_addr: Option<IpAddr>,
    /// Time between our beacons (±10 % jitter). Default 2 s.
    pub interval: Duration,
    /// A neighbour silent for this many of its periods is gone. Default 5.
    pub timeout_intervals: u32,
    /// UDP port for beacons, both families. Default 3003 (dtn7).
    pub port: u16,
    /// IPv4 multicast group. Default 224.0.0.26 (dtn7).
    pub group_v4: Ipv4Addr,
    /// Local IPv4 interface address to join and send on; 0.0.0.0 lets the kernel choose by route.
    pub interface_v4: Ipv4Addr,
    /// Beacon and listen over IPv4. Default on (dtn7 interoperates over IPv4 only; see the README).
    pub ipv4: bool,
    /// Also beacon and listen over IPv6. Default off.
    pub ipv6: bool,
    /// IPv6 multicast group. Default ff02::300.
    pub group_v6: Ipv6Addr,
    /// IPv6 interface index to join and send on; 0 lets the kernel choose.
    pub interface_v6: u32,
    /// Which format(s) to send. Default [`SendFormat::Dtn7`].
    pub send: SendFormat,
    /// Most neighbours tracked at once. Default 1024.
    pub max_neighbours: usize,
    /// Capacity of the event channel. Default 64.
    pub event_capacity: usize,
}

impl DiscoveryConfig {
    /// The defaults, for node `node_id` with its TCPCL listener on `tcpcl_port`.
    pub fn new(node_id: Eid, tcpcl_port: u16) -> Self {
        DiscoveryConfig {
            node_id,
            tcpcl_port,
            tcpcl_addr: None,
            interval: Duration::from_secs(2),
            timeout_intervals: 5,
            port: DTN7_PORT,
            group_v4: DTN7_GROUP_V4,
            interface_v4: Ipv4Addr::UNSPECIFIED,
            ipv4: true,
            ipv6: false,
            group_v6: DTN7_GROUP_V6,
            interface_v6: 0,
            send: SendFormat::Dtn7,
            max_neighbours: 1024,
            event_capacity: 64,
        }
    }

    fn validate(&self) -> Result<(), DiscoveryError> {
        let bad = |m: &str| Err(DiscoveryError::Config(m.to_owned()));
        if check_node_id(self.node_id.clone(), true).is_err() {
            return bad("node_id must be a node ID: dtn://name/ or ipn:N.0");
        }
        let ms = self.interval.as_millis();
        if ms < MIN_PERIOD_MS.into() || ms > MAX_PERIOD_MS.into() {
            return bad("interval must be within 100 ms ..= 1 h");
        }
        if self.tcpcl_port == 0 || self.port == 0 {
            return bad("ports must not be 0");
        }
        if self.timeout_intervals < 2 {
            return bad("timeout_intervals must be at least 2 (one lost beacon must not drop a neighbour)");
        }
        if !self.ipv4 && !self.ipv6 {
            return bad("at least one of ipv4 and ipv6 must be on");
        }
        if (self.ipv4 && !self.group_v4.is_multicast()) || (self.ipv6 && !self.group_v6.is_multicast()) {
            return bad("groups must be multicast addresses");
        }
        if self.max_neighbours == 0 || self.event_capacity == 0 {
            return bad("max_neighbours and event_capacity must be positive");
        }
        Ok(())
    }
}

/// Why discovery could not start.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// A setting is out of range.
    #[error("invalid discovery configuration: {0}")]
    Config(String),
    /// A socket operation failed (e.g. joining the group on a host without multicast routes).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// `start` was called outside a tokio runtime.
    #[error("Discovery::start must be called within a tokio runtime")]
    NoRuntime,
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Sends that failed (logged; discovery carries on).
    pub send_errors: u64,
    /// Beacons decoded, ours included.
    pub received: u64,
    /// Our own beacons, looped back.
    pub own: u64,
    /// Datagrams that were not beacons.
    pub garbage: u64,
    /// Beacons without a usable TCPCL endpoint, or from new nodes while the table was full.
    pub ignored: u64,
    /// Receive errors.
    pub recv_errors: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    send_errors: AtomicU64,
    received: AtomicU64,
    own: AtomicU64,
    garbage: AtomicU64,
    ignored: AtomicU64,
    recv_errors: AtomicU64,
}

fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

/// Keeps discovery running; dropping it (or [`DiscoveryHandle::shutdown`]) stops the task, and the event
/// channel then closes. No `NeighbourDown` events are sent for neighbours known at that point.
pub struct DiscoveryHandle {
    task: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    local_v4: Option<SocketAddr>,
    local_v6: Option<SocketAddr>,
}

impl DiscoveryHandle {
    /// Current counters.
    pub fn stats(&self) -> DiscoveryStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DiscoveryStats {
            sent: l(&c.sent),
            send_errors: l(&c.send_errors),
            received: l(&c.received),
            own: l(&c.own),
            garbage: l(&c.garbage),
            ignored: l(&c.ignored),
            recv_errors: l(&c.recv_errors),
        }
    }

    /// The local address of the IPv4 socket (`0.0.0.0:port`), when IPv4 is on.
    pub fn local_addr_v4(&self) -> Option<SocketAddr> {
        self.local_v4
    }

    /// The local address of the IPv6 socket, when IPv6 is on.
    pub fn local_addr_v6(&self) -> Option<SocketAddr> {
        self.local_v6
    }

    /// Stops the task and waits until it has stopped (sockets closed).
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for DiscoveryHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Entry point.
pub struct Discovery;

impl Discovery {
    /// Opens the sockets, joins the group(s) and starts beaconing and listening. Must be called within a
    /// tokio runtime. The first beacon goes out at once.
    pub fn start(cfg: DiscoveryConfig) -> Result<(DiscoveryHandle, mpsc::Receiver<DiscoveryEvent>), DiscoveryError> {
        cfg.validate()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        // UdpSocket::from_std registers with the runtime's reactor, so enter it first.
        let _guard = rt.enter();
        let v4 = if cfg.ipv4 { Some(open_v4(&cfg)?) } else { None };
        let v6 = if cfg.ipv6 { Some(open_v6(&cfg)?) } else { None };
        let local_v4 = v4.as_ref().map(|s| s.local_addr()).transpose().map_err(io_err("local address"))?;
        let local_v6 = v6.as_ref().map(|s| s.local_addr()).transpose().map_err(io_err("local address"))?;
        info!(node = %cfg.node_id, ?local_v4, ?local_v6, group_v4 = %cfg.group_v4, group_v6 = %cfg.group_v6, "discovery started");
        let (tx, rx) = mpsc::channel(cfg.event_capacity);
        let counters = Arc::new(Counters::default());
        let task = rt.spawn(run(cfg, v4, v6, tx, counters.clone()));
        Ok((DiscoveryHandle { task: Some(task), counters, local_v4, local_v6 }, rx))
    }
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> DiscoveryError {
    move |source| DiscoveryError::Io { what, source }
}

/// Shared socket setup: address reuse so that several listeners (dtn7, a second node of ours) can bind the
/// same port; SO_REUSEADDR is what dtn7 sets, and is enough on Linux, SO_REUSEPORT is what BSD and macOS
/// need for the same effect.
fn base_socket(domain: Domain) -> Result<Socket, DiscoveryError> {
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(io_err("create UDP socket"))?;
    s.set_reuse_address(true).map_err(io_err("SO_REUSEADDR"))?;
    #[cfg(unix)]
    s.set_reuse_port(true).map_err(io_err("SO_REUSEPORT"))?;
    s.set_nonblocking(true).map_err(io_err("non-blocking"))?;
    Ok(s)
}

fn open_v4(cfg: &DiscoveryConfig) -> Result<UdpSocket, DiscoveryError> {
    let s = base_socket(Domain::IPV4)?;
    // Bound to the wildcard, not the interface address: on Linux a socket bound to a unicast address does
    // not receive multicast, and dtn7 can also be configured to send beacons by unicast.
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.port));
    s.bind(&bind.into()).map_err(io_err("bind the IPv4 discovery port"))?;
    s.join_multicast_v4(&cfg.group_v4, &cfg.interface_v4).map_err(io_err("join the IPv4 multicast group"))?;
    // Loop on: a second node on this host (tests, a simulator, dtn7 next to us) hears us.
    s.set_multicast_loop_v4(true).map_err(io_err("IP_MULTICAST_LOOP"))?;
    // TTL 1: beacons describe this link; a node two routers away cannot use the endpoint anyway.
    s.set_multicast_ttl_v4(1).map_err(io_err("IP_MULTICAST_TTL"))?;
    if !cfg.interface_v4.is_unspecified() {
        s.set_multicast_if_v4(&cfg.interface_v4).map_err(io_err("IP_MULTICAST_IF"))?;
    }
    // Linux delivers datagrams of every group any socket on the host joined unless told otherwise.
    #[cfg(target_os = "linux")]
    s.set_multicast_all_v4(false).map_err(io_err("IP_MULTICAST_ALL"))?;
    UdpSocket::from_std(s.into()).map_err(io_err("register the IPv4 socket"))
}

fn open_v6(cfg: &DiscoveryConfig) -> Result<UdpSocket, DiscoveryError> {
    let s = base_socket(Domain::IPV6)?;
    s.set_only_v6(true).map_err(io_err("IPV6_V6ONLY"))?;
    let bind = SocketAddr::from((Ipv6Addr::UNSPECIFIED, cfg.port));
    s.bind(&bind.into()).map_err(io_err("bind the IPv6 discovery port"))?;
    s.join_multicast_v6(&cfg.group_v6, cfg.interface_v6).map_err(io_err("join the IPv6 multicast group"))?;
    s.set_multicast_loop_v6(true).map_err(io_err("IPV6_MULTICAST_LOOP"))?;
    s.set_multicast_hops_v6(1).map_err(io_err("IPV6_MULTICAST_HOPS"))?;
    if cfg.interface_v6 != 0 {
        s.set_multicast_if_v6(cfg.interface_v6).map_err(io_err("IPV6_MULTICAST_IF"))?;
    }
    UdpSocket::from_std(s.into()).map_err(io_err("register the IPv6 socket"))
}

/// Jitter source without a dependency: std's per-process random hasher keys.
fn jittered(interval: Duration, salt: u64) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    // 0.9 ..= 1.1 × interval.
    let permille = 900 + h.finish() % 201;
    interval * permille as u32 / 1000
}

/// The datagrams of one interval.
fn build_beacons(cfg: &DiscoveryConfig, seq: u32) -> Vec<Vec<u8>> {
    let beacon = Beacon {
        node_id: cfg.node_id.clone(),
        seq,
        period: Some(cfg.interval),
        endpoints: vec![TcpclEndpoint { addr: cfg.tcpcl_addr, port: cfg.tcpcl_port }],
    };
    let mut out = Vec::with_capacity(2);
    if matches!(cfg.send, SendFormat::Dtn7 | SendFormat::Both) {
        out.push(Dtn7Beacon::from_beacon(&beacon).encode());
    }
    if matches!(cfg.send, SendFormat::Ours | SendFormat::Both) {
        // validate() checked everything encode() checks.
        match beacon.encode() {
            Ok(b) => out.push(b),
            Err(e) => warn!(error = %e, "cannot encode our beacon"),
        }
    }
    out
}

async fn recv_opt(s: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn run(
    cfg: DiscoveryConfig,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    tx: mpsc::Sender<DiscoveryEvent>,
    counters: Arc<Counters>,
) {
    let mut table = NeighbourTable::new(TableConfig {
        own_node_id: cfg.node_id.clone(),
        default_period: cfg.interval,
        timeout_intervals: cfg.timeout_intervals,
        max_neighbours: cfg.max_neighbours,
    });
    let dest_v4 = SocketAddr::V4(SocketAddrV4::new(cfg.group_v4, cfg.port));
    let dest_v6 = SocketAddr::V6(SocketAddrV6::new(cfg.group_v6, cfg.port, 0, cfg.interface_v6));
    // One byte more than the limit, so that an over-long datagram shows as such instead of being cut.
    let mut buf4 = vec![0u8; MAX_DATAGRAM_LEN + 1];
    let mut buf6 = vec![0u8; MAX_DATAGRAM_LEN + 1];
    let mut seq: u32 = 0;
    let mut next_beacon = tokio::time::Instant::now();
    let mut last_garbage_warning: Option<Instant> = None;
    let mut receiver_gone = false;
    loop {
        let deadline = table.next_deadline().map(tokio::time::Instant::from_std);
        let mut events = Vec::new();
        tokio::select! {
            _ = tokio::time::sleep_until(next_beacon) => {
                for bytes in build_beacons(&cfg, seq) {
                    let dests = v4.as_ref().map(|s| (s, dest_v4)).into_iter().chain(v6.as_ref().map(|s| (s, dest_v6)));
                    for (sock, dest) in dests {
                        match sock.send_to(&bytes, dest).await {
                            Ok(_) => { bump(&counters.sent); }
                            Err(e) => {
                                // A link that is down (no route) is normal on a station; keep trying.
                                let n = bump(&counters.send_errors);
                                if n.is_power_of_two() { warn!(%dest, error = %e, failures = n, "beacon send failed"); }
                            }
                        }
                    }
                }
                trace!(seq, "beacons sent");
                seq = seq.wrapping_add(1);
                next_beacon = tokio::time::Instant::now() + jittered(cfg.interval, u64::from(seq));
            }
            r = recv_opt(v4.as_ref(), &mut buf4) => on_datagram(r, &buf4, &mut table, &counters, &mut last_garbage_warning, &mut events).await,
            r = recv_opt(v6.as_ref(), &mut buf6) => on_datagram(r, &buf6, &mut table, &counters, &mut last_garbage_warning, &mut events).await,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                events = table.expire(Instant::now());
            }
        }
        for ev in events {
            debug!(?ev, "discovery event");
            // Events are rare (changes only), so waiting for a slow consumer is acceptable and loses nothing.
            if !receiver_gone && tx.send(ev).await.is_err() {
                debug!("event receiver dropped; beaconing continues until the handle is dropped");
                receiver_gone = true;
            }
        }
    }
}

async fn on_datagram(
    r: io::Result<(usize, SocketAddr)>,
    buf: &[u8],
    table: &mut NeighbourTable,
    counters: &Counters,
    last_garbage_warning: &mut Option<Instant>,
    events: &mut Vec<DiscoveryEvent>,
) {
    let (len, from) = match r {
        Ok(x) => x,
        Err(e) => {
            // E.g. an ICMP error reported on the socket. Pause briefly so a persistent error cannot spin.
            let n = bump(&counters.recv_errors);
            if n.is_power_of_two() {
                warn!(error = %e, failures = n, "discovery receive failed");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
    };
    let (beacon, format) = match decode_any(&buf[..len]) {
        Ok(x) => x,
        Err(e) => {
            let n = bump(&counters.garbage);
            debug!(%from, len, error = %e, "ignored a datagram that is not a beacon");
            // At most one warning a minute: garbage must not be able to flood the log either.
            let now = Instant::now();
            if last_garbage_warning.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                *last_garbage_warning = Some(now);
                warn!(%from, len, error = %e, total = n, "ignoring datagrams on the discovery port that are not beacons");
            }
            return;
        }
    };
    bump(&counters.received);
    match table.on_beacon(Instant::now(), &beacon, format, from) {
        Update::Event(ev) => events.push(ev),
        Update::Refreshed => trace!(node = %beacon.node_id, seq = beacon.seq, %from, "beacon"),
        Update::Ignored(Ignored::Own) => {
            bump(&counters.own);
        }
        Update::Ignored(why) => {
            bump(&counters.ignored);
            debug!(node = %beacon.node_id, %from, ?why, "beacon ignored");
        }
    }
}
