//! Session configuration, its defaults, and the parameters both sides agreed on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::msg::Limits;

/// What we offer and enforce in a session. The README explains each default.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our node ID, sent in SESS_INIT (empty: do not disclose it).
    pub node_id: String,
    /// Keepalive interval in seconds that we offer; the session uses the smaller of both offers, 0 disables.
    pub keepalive: u16,
    /// Largest segment we accept (our Segment MRU); also the largest read buffer a session holds.
    pub segment_mru: u64,
    /// Largest transfer we accept (our Transfer MRU); bigger announced or received transfers are refused.
    pub transfer_mru: u64,
    /// Largest segment we send; the peer's Segment MRU and our send window lower it further.
    pub max_segment_size: u64,
    /// Unacknowledged bytes we allow in flight across all pipelined outgoing transfers.
    pub send_window: u64,
    /// Time allowed for the contact header and SESS_INIT exchange.
    pub negotiation_timeout: Duration,
    /// End the session cleanly after this long without a message other than KEEPALIVE (RFC 9174 §6.2).
    pub idle_timeout: Option<Duration>,
    /// Received segments queued for the owner before we stop reading the socket.
    pub event_queue: usize,
    /// SO_SNDBUF and SO_RCVBUF; `None` leaves the kernel's autotuning alone.
    pub socket_buffer: Option<usize>,
    /// Refuse peers whose Segment MRU is smaller (the "data dribble" of RFC 9174 §8.10).
    pub min_peer_segment_mru: u64,
    /// Longest session or transfer extension list we accept.
    pub max_extensions_len: u32,
}

impl SessionConfig {
    pub fn new(node_id: impl Into<String>) -> Self {
        SessionConfig { node_id: node_id.into(), ..Default::default() }
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits { max_segment_len: self.segment_mru, max_extensions_len: self.max_extensions_len }
    }

    /// Clamps values that would make the session unworkable (e.g. a window smaller than one segment).
    pub(crate) fn sanitized(mut self) -> Self {
        // The read buffer must be addressable, and segments must fit a semaphore permit count (u32).
        self.segment_mru = self.segment_mru.clamp(1, u64::from(u32::MAX));
        self.send_window = self.send_window.clamp(1, u64::from(u32::MAX));
        self.max_segment_size = self.max_segment_size.clamp(1, self.send_window);
        self.event_queue = self.event_queue.max(1);
        self
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            node_id: String::new(),
            keepalive: 30,
            segment_mru: 1 << 20,
            transfer_mru: 16 << 30,
            max_segment_size: 256 << 10,
            send_window: 8 << 20,
            negotiation_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            event_queue: 16,
            socket_buffer: Some(4 << 20),
            min_peer_segment_mru: 512,
            max_extensions_len: 64 << 10,
        }
    }
}

/// Which side opened the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Active,
    Passive,
}

/// What the session runs with after negotiation (RFC 9174 §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub role: Role,
    pub local_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub peer_node_id: String,
    /// Negotiated keepalive interval in seconds (0: disabled).
    pub keepalive: u16,
    pub peer_segment_mru: u64,
    pub peer_transfer_mru: u64,
    /// Size of the segments we send: min(our max segment size, peer Segment MRU, send window).
    pub segment_size: u64,
    pub send_window: u64,
    pub transfer_mru: u64,
}
