//! The userspace TCP/IP stack inside the tunnel: one smoltcp interface per endpoint whose "device" is a pair
//! of packet queues that the driver fills with decrypted packets and empties into the tunnels.
//!
//! The stack sits behind one mutex shared by the driver task and the streams: a stream reads and writes its
//! socket's buffers directly (no copy through a channel) and wakes the driver, which moves packets.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use tokio::sync::Notify;

use crate::identity::PeerKey;
use crate::stats::Counters;

/// Packets one poll may queue for the tunnels before the driver encrypts and sends them.
const TX_BATCH: usize = 128;
/// Listening sockets kept per port, so that connections opened at the same moment are all accepted.
const BACKLOG: usize = 4;
/// How long a dropped stream may take to finish closing before it is reset.
const ORPHAN_TIMEOUT: SmolDuration = SmolDuration::from_secs(60);
const DEAD_PEER: SmolDuration = SmolDuration::from_secs(120);
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// State shared by the driver, the endpoint handle, the streams and the listeners.
pub(crate) struct Shared {
    stack: Mutex<Stack>,
    /// Wakes the driver: a stream queued data or freed receive window, a socket was opened or closed.
    pub wake: Notify,
    pub counters: Counters,
}

impl Shared {
    pub fn new(stack: Stack) -> Shared {
        Shared { stack: Mutex::new(stack), wake: Notify::new(), counters: Counters::default() }
    }

    pub fn lock(&self) -> MutexGuard<'_, Stack> {
        // Nothing in the stack is left half-updated by a panic that matters more than stopping; go on.
        self.stack.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A device made of two queues of IP packets.
pub(crate) struct Queues {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    mtu: usize,
}

pub(crate) struct RxToken(Vec<u8>);
pub(crate) struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = vec![0u8; len];
        let r = f(&mut p);
        self.0.push(p);
        r
    }
}

impl phy::Device for Queues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(RxToken, TxToken<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxToken(p), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<TxToken<'_>> {
        // Refusing once a batch is full makes the stack keep the rest for the next poll.
        (self.tx.len() < TX_BATCH).then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = self.mtu;
        // Kept on although WireGuard authenticates every packet: the inner packets stay valid IPv6 for any
        // other stack (a kernel WireGuard peer) and for packet captures.
        c.checksum = ChecksumCapabilities::default();
        c
    }
}

/// A port being listened on.
pub(crate) struct Listen {
    /// Sockets in LISTEN state (or completing a handshake).
    backlog: Vec<SocketHandle>,
    /// Established connections waiting for `accept`.
    pub ready: VecDeque<SocketHandle>,
    pub waker: Option<Waker>,
}

pub(crate) struct Stack {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub dev: Queues,
    pub listeners: HashMap<u16, Listen>,
    /// Sockets whose stream was dropped: closing gracefully, removed once closed.
    orphans: Vec<SocketHandle>,
    /// Tunnel address → peer, for naming the peer of an accepted connection.
    pub peers_by_addr: HashMap<Ipv6Addr, PeerKey>,
    buffer: usize,
    next_port: u16,
    epoch: std::time::Instant,
    /// Set when the endpoint is dropped: no new sockets, every stream sees its connection reset.
    pub stopped: bool,
}

impl Stack {
    pub fn new(addr: Ipv6Addr, mtu: usize, buffer: usize, seed: u64) -> Stack {
        let mut dev = Queues { rx: VecDeque::new(), tx: Vec::new(), mtu };
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let epoch = std::time::Instant::now();
        let mut iface = Interface::new(cfg, &mut dev, SmolInstant::from_micros(0));
        iface.update_ip_addrs(|a| {
            // /8: every peer's fd00::/8 address is on-link, so no routes are needed.
            let _ = a.push(IpCidr::new(IpAddress::Ipv6(addr), 8));
        });
        let first = EPHEMERAL.start() + (seed % u64::from(EPHEMERAL.end() - EPHEMERAL.start())) as u16;
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            listeners: HashMap::new(),
            orphans: Vec::new(),
            peers_by_addr: HashMap::new(),
            buffer,
            next_port: first,
            epoch,
            stopped: false,
        }
    }

    pub fn now(&self) -> SmolInstant {
        SmolInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// A socket with our buffers and options; its receive buffer fixes the window scale, so it is sized for
    /// the bandwidth-delay product from the start.
    pub fn new_socket(&self) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; self.buffer]),
            tcp::SocketBuffer::new(vec![0u8; self.buffer]),
        );
        // TCPCL batches its own writes; small control messages (acknowledgements) must not wait.
        s.set_nagle_enabled(false);
        // The tunnel may cross a real, lossy, shared link: behave like a kernel TCP.
        s.set_congestion_control(tcp::CongestionControl::Cubic);
        // A peer silent this long while we wait on it (SYN-ACK, unacknowledged data) is gone: free the
        // socket, including a backlog slot stuck half-open. WireGuard re-handshakes well within it.
        s.set_timeout(Some(DEAD_PEER));
        s
    }

    /// A local port that no socket uses.
    pub fn free_port(&mut self) -> Option<u16> {
        let used: std::collections::HashSet<u16> = self
            .sockets
            .iter()
            .filter_map(|(_, s)| {
                let smoltcp::socket::Socket::Tcp(t) = s;
                t.local_endpoint().map(|e| e.port)
            })
            .chain(self.listeners.keys().copied())
            .collect();
        for _ in EPHEMERAL {
            let p = self.next_port;
            self.next_port = if p == *EPHEMERAL.end() { *EPHEMERAL.start() } else { p + 1 };
            if !used.contains(&p) {
                return Some(p);
            }
        }
        None
    }

    pub fn listen(&mut self, port: u16) -> bool {
        if self.listeners.contains_key(&port) {
            return false;
        }
        let mut l = Listen { backlog: Vec::new(), ready: VecDeque::new(), waker: None };
        for _ in 0..BACKLOG {
            let mut s = self.new_socket();
            if s.listen(port).is_ok() {
                l.backlog.push(self.sockets.add(s));
            }
        }
        self.listeners.insert(port, l);
        true
    }

    pub fn unlisten(&mut self, port: u16) {
        if let Some(l) = self.listeners.remove(&port) {
            for h in l.backlog.into_iter().chain(l.ready) {
                self.sockets.get_mut::<tcp::Socket>(h).abort();
                self.orphans.push(h);
            }
        }
    }

    /// Hands a socket whose stream is gone to the reaper, closing it gracefully.
    pub fn orphan(&mut self, h: SocketHandle) {
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        s.close();
        s.set_timeout(Some(ORPHAN_TIMEOUT));
        self.orphans.push(h);
    }

    /// Runs the stack: takes in the received packets, then lets every socket send what it can (one segment
    /// per socket per round) until nothing moves or a batch of packets is queued for the tunnels.
    pub fn poll(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        while self.dev.tx.len() < TX_BATCH
            && self.iface.poll_egress(now, &mut self.dev, &mut self.sockets) == PollResult::SocketStateChanged
        {}
        self.upkeep();
    }

    /// When the stack next needs polling for its own timers (retransmission, delayed ACK, TIME-WAIT).
    pub fn poll_delay(&mut self) -> Option<std::time::Duration> {
        let now = self.now();
        self.iface.poll_delay(now, &self.sockets).map(|d| std::time::Duration::from_micros(d.total_micros()))
    }

    /// Moves connections that completed their handshake to their listener's accept queue (re-arming the
    /// backlog) and removes orphans that have finished closing.
    fn upkeep(&mut self) {
        let mut fresh = Vec::new();
        for (port, l) in self.listeners.iter_mut() {
            let mut i = 0;
            while i < l.backlog.len() {
                let h = l.backlog[i];
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Listen | tcp::State::SynReceived => i += 1,
                    tcp::State::Closed => {
                        // Reset during the handshake: listen again with the same buffers.
                        let _ = s.listen(*port);
                        i += 1;
                    }
                    _ => {
                        l.backlog.swap_remove(i);
                        l.ready.push_back(h);
                        fresh.push(*port);
                        if let Some(w) = l.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
        }
        for port in fresh {
            let mut s = self.new_socket();
            if s.listen(port).is_ok() {
                let h = self.sockets.add(s);
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.backlog.push(h);
                }
            }
        }
        let sockets = &mut self.sockets;
        self.orphans.retain(|h| {
            let done = matches!(sockets.get::<tcp::Socket>(*h).state(), tcp::State::Closed | tcp::State::TimeWait);
            if done {
                sockets.remove(*h);
            }
            !done
        });
    }

    /// Resets every connection (the endpoint is going away) so that no stream waits forever.
    pub fn stop(&mut self) {
        self.stopped = true;
        for (_, s) in self.sockets.iter_mut() {
            // TCP is the only socket type compiled in.
            let smoltcp::socket::Socket::Tcp(t) = s;
            t.abort();
        }
        for l in self.listeners.values_mut() {
            if let Some(w) = l.waker.take() {
                w.wake();
            }
        }
    }
}
