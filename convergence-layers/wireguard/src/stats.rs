//! Counters of an endpoint: what crossed the UDP socket, and every datagram or packet dropped and why.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Default)]
        pub(crate) struct Counters { $(pub $name: AtomicU64,)* }

        /// A snapshot of an endpoint's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Stats { $($(#[$doc])* pub $name: u64,)* }

        impl Counters {
            pub fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// UDP datagrams sent (WireGuard and raw).
    tx_datagrams,
    /// UDP payload bytes sent: what a metered link bills, less the IP and UDP headers.
    tx_bytes,
    /// UDP datagrams received.
    rx_datagrams,
    /// UDP payload bytes received.
    rx_bytes,
    /// WireGuard handshakes completed (as initiator or responder).
    handshakes,
    /// Handshake initiations from a key that is not a configured peer (or not meant for us): refused.
    refused_handshakes,
    /// Datagrams that are neither WireGuard nor STUN, or WireGuard messages that do not parse.
    garbage,
    /// Data packets whose counter was seen before (replays).
    replayed,
    /// Data packets that failed authentication (tampered, or encrypted under a key we do not share).
    tampered,
    /// Other WireGuard messages that failed (stale indices, bad MACs, old timestamps, no session).
    rejected,
    /// Decrypted packets whose inner source address is not the address of the peer they came from, or that
    /// are not IPv6.
    spoofed,
    /// STUN-shaped datagrams handed to the other-datagrams channel.
    other_datagrams,
    /// STUN-shaped datagrams dropped because the other-datagrams channel was full or closed.
    other_dropped,
    /// Packets for a peer whose UDP endpoint is not known yet.
    no_endpoint,
    /// Times a peer's authenticated packets came from a new address and we followed it there.
    roamed,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}
