//! The endpoint: one UDP socket, one WireGuard tunnel per configured peer, one userspace TCP/IP stack.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use smoltcp::wire::IpAddress;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Cmd, Driver};
use crate::error::Error;
use crate::identity::{Identity, PeerKey};
use crate::stack::{Shared, Stack};
use crate::stats::{Stats, add};
use crate::stream::{Listener, TunnelStream};

/// A peer we accept handshakes from and can connect to.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub key: PeerKey,
    /// Where to send until the peer is heard from (then its authenticated packets' source wins: roaming).
    /// `None` for a peer that will contact us first, or whose endpoint is learnt later (rendezvous).
    pub endpoint: Option<SocketAddr>,
    /// Seconds between keepalives when nothing else is sent, to hold NAT mappings open (25 is the usual
    /// value behind NAT); `None` sends none.
    pub persistent_keepalive: Option<u16>,
}

impl PeerConfig {
    pub fn new(key: PeerKey, endpoint: Option<SocketAddr>) -> PeerConfig {
        PeerConfig { key, endpoint, persistent_keepalive: None }
    }
}

/// How an endpoint is set up. The README explains each default.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The UDP address to bind (port 0: any).
    pub bind: SocketAddr,
    pub peers: Vec<PeerConfig>,
    /// MTU of the inner IPv6 packets. 1420 fits a 1500-byte path under IPv6 + UDP + WireGuard (80 bytes),
    /// as wg-quick chooses; TCP's MSS follows from it (1360).
    pub mtu: usize,
    /// SO_RCVBUF and SO_SNDBUF of the UDP socket: bursts at full speed must not overflow the kernel queue.
    pub socket_buffer: usize,
    /// Receive and send buffer of each TCP connection inside the tunnel; the receive buffer is the largest
    /// window we advertise, so it bounds throughput to buffer / round-trip time.
    pub tcp_buffer: usize,
    /// STUN datagrams queued for the other-datagrams channel before further ones are dropped.
    pub other_queue: usize,
    /// How long `connect` waits for the WireGuard handshake and the TCP handshake together.
    pub connect_timeout: Duration,
    /// How many peers that are not configured may hold a tunnel at once: 0 (the default) refuses every
    /// handshake from a key not in `peers`; more makes an open endpoint (a relay), which takes any key up
    /// to this many, reusing the slot of one that has been quiet for three minutes when full. Such a peer
    /// is named by its identity key like a configured one (see docs/wireguard.md).
    pub accept_unknown_peers: usize,
}

impl EndpointConfig {
    pub fn new(bind: SocketAddr) -> EndpointConfig {
        EndpointConfig {
            bind,
            peers: Vec::new(),
            mtu: 1420,
            socket_buffer: 4 << 20,
            tcp_buffer: 4 << 20,
            other_queue: 256,
            connect_timeout: Duration::from_secs(15),
            accept_unknown_peers: 0,
        }
    }
}

/// A peer as the tunnel sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Where its packets are sent: configured, set, or where its last authenticated packet came from.
    pub endpoint: Option<SocketAddr>,
    /// Time since the last completed handshake.
    pub last_handshake: Option<Duration>,
    /// Inner bytes sent to and received from it.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// A WireGuard endpoint with its userspace TCP/IP stack. Dropping it resets every connection and stops the
/// driver task.
pub struct Endpoint {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    cmds: mpsc::UnboundedSender<Cmd>,
    other: Mutex<Option<mpsc::Receiver<(Bytes, SocketAddr)>>>,
    public: PeerKey,
    local: SocketAddr,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("public", &self.public).field("local", &self.local).finish_non_exhaustive()
    }
}

fn udp_socket(cfg: &EndpointConfig) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(cfg.bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps them at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(cfg.socket_buffer);
    let _ = s.set_send_buffer_size(cfg.socket_buffer);
    s.set_nonblocking(true)?;
    s.bind(&cfg.bind.into())?;
    UdpSocket::from_std(s.into())
}

impl Endpoint {
    /// Binds the UDP socket and starts the driver task (on the current tokio runtime).
    pub async fn bind(identity: &Identity, cfg: EndpointConfig) -> Result<Endpoint, Error> {
        let udp = Arc::new(udp_socket(&cfg)?);
        let local = udp.local_addr()?;
        let public = identity.public();
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        let stack = Stack::new(public.tunnel_addr(), cfg.mtu, cfg.tcp_buffer, u64::from_le_bytes(seed));
        let shared = Arc::new(Shared::new(stack));
        let (other_tx, other_rx) = mpsc::channel(cfg.other_queue.max(1));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(
            shared.clone(),
            udp.clone(),
            identity.x25519_secret(),
            other_tx,
            cmd_rx,
            cfg.accept_unknown_peers,
        );
        for p in cfg.peers {
            driver.add_peer(p)?;
        }
        tokio::spawn(driver.run());
        Ok(Endpoint {
            shared,
            udp,
            cmds: cmd_tx,
            other: Mutex::new(Some(other_rx)),
            public,
            local,
            connect_timeout: cfg.connect_timeout,
        })
    }

    /// The UDP address the tunnel uses.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn public_key(&self) -> PeerKey {
        self.public
    }

    /// Our address inside the tunnel.
    pub fn tunnel_addr(&self) -> Ipv6Addr {
        self.public.tunnel_addr()
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Adds a peer while running.
    pub async fn add_peer(&self, p: PeerConfig) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::AddPeer(p, tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Sends to `peer` at `endpoint` from now on (e.g. an address learnt through rendezvous). Its next
    /// authenticated packet from elsewhere still moves it there (roaming).
    pub fn set_peer_endpoint(&self, peer: PeerKey, endpoint: SocketAddr) {
        let _ = self.cmds.send(Cmd::SetEndpoint(peer, endpoint));
    }

    /// Sends a handshake initiation to `peer` now, unless one is in progress: opens NAT mappings for hole
    /// punching without waiting for data.
    pub fn initiate_handshake(&self, peer: PeerKey) {
        let _ = self.cmds.send(Cmd::Handshake(peer));
    }

    /// The tunnel's view of a configured peer.
    pub async fn peer_status(&self, peer: PeerKey) -> Option<PeerStatus> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Status(peer, tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Opens a TCP connection to `port` of `peer` inside the tunnel (starting a WireGuard handshake if no
    /// session is up).
    pub async fn connect(&self, peer: PeerKey, port: u16) -> Result<TunnelStream, Error> {
        let handle = {
            let mut st = self.shared.lock();
            if st.stopped {
                return Err(Error::Stopped);
            }
            if st.peers_by_addr.get(&peer.tunnel_addr()) != Some(&peer) {
                return Err(Error::UnknownPeer(peer));
            }
            let local = st.free_port().ok_or(Error::NoFreePort)?;
            let mut s = st.new_socket();
            s.connect(st.iface.context(), (IpAddress::Ipv6(peer.tunnel_addr()), port), local)
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
            st.sockets.add(s)
        };
        self.shared.wake.notify_one();
        let stream = TunnelStream::new(self.shared.clone(), handle, peer);
        match tokio::time::timeout(self.connect_timeout, stream.established()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(_)) => Err(Error::Refused(peer)),
            Err(_) => Err(Error::TimedOut(peer)),
        }
    }

    /// Accepts connections to `port` inside the tunnel, from any configured peer (and, on an open endpoint,
    /// from strangers).
    pub fn listen(&self, port: u16) -> Result<Listener, Error> {
        let mut st = self.shared.lock();
        if st.stopped {
            return Err(Error::Stopped);
        }
        if !st.listen(port) {
            return Err(Error::PortInUse(port));
        }
        Ok(Listener { shared: self.shared.clone(), port })
    }

    /// The datagrams arriving on the tunnel's UDP socket that are STUN (first two bits zero, magic cookie
    /// 0x2112A442 at bytes 4..8), with their source. Given once: later calls return `None`. While nobody
    /// takes them (or the queue is full) they are dropped and counted (`Stats::other_dropped`).
    ///
    /// With [`Endpoint::send_raw`] this lets a STUN client learn the public mapping of the very socket the
    /// tunnel uses, and a STUN responder share the tunnel's port.
    pub fn other_datagrams(&self) -> Option<mpsc::Receiver<(Bytes, SocketAddr)>> {
        self.other.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Sends one datagram from the tunnel's UDP socket, outside the tunnel (counted in `tx_bytes`).
    pub async fn send_raw(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        let n = self.udp.send_to(datagram, to).await?;
        add(&self.shared.counters.tx_datagrams, 1);
        add(&self.shared.counters.tx_bytes, n as u64);
        Ok(n)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.lock().stop();
        self.shared.wake.notify_one();
    }
}
