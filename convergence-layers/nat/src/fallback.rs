//! When to stop punching and route through a relay, and which relays to keep. Pure decision logic; the
//! node runtime drives it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::record::NatClass;

/// How to reach a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathDecision {
    /// One side is publicly reachable: the NATed side (or either) just connects.
    Direct,
    /// Both sides are behind NATs that keep one mapping per socket: both send to each other's published
    /// mapping at once, and keepalives hold the holes open.
    Punch,
    /// Punching cannot work or did not: carry bundles through a publicly reachable relay node.
    Relay(RelayReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayReason {
    /// Our NAT, or the peer's, maps each destination to a different port (two STUN servers saw two
    /// mappings): the address a peer would aim at is not where its packets would arrive.
    SymmetricNat,
    /// `max_attempts` rounds of handshakes (punched or direct) got no answer (a firewall that drops unsolicited inbound traffic, a
    /// carrier-grade NAT with short timeouts, ...).
    NoAnswer,
}

/// Default number of punch rounds before falling back. A round sends a handshake to every endpoint the
/// peer published; with WireGuard's 5 s handshake retry, 4 rounds give up after about 20 s.
pub const DEFAULT_PUNCH_ATTEMPTS: u32 = 4;

/// Decides how to reach a peer from both sides' NAT classes (ours from [`classify`](crate::classify), the
/// peer's from its endpoint record) and the rounds of handshakes to its published addresses that already
/// went unanswered.
pub fn decide(ours: NatClass, peer: NatClass, unanswered_rounds: u32, max_attempts: u32) -> PathDecision {
    // Whatever the classes promised, a path that stayed silent this long does not work (a "public" address
    // behind a firewall that drops unsolicited datagrams, a peer that does not know our key).
    if unanswered_rounds >= max_attempts {
        return PathDecision::Relay(RelayReason::NoAnswer);
    }
    if ours == NatClass::Public || peer == NatClass::Public {
        return PathDecision::Direct;
    }
    if ours == NatClass::Symmetric || peer == NatClass::Symmetric {
        return PathDecision::Relay(RelayReason::SymmetricNat);
    }
    // Unknown classes get the benefit of the doubt: trying costs a few small packets and is bounded.
    PathDecision::Punch
}

/// How many relays a node keeps sessions with when it chose them itself: two, so that one going away does
/// not cut the node off, and no more, since each costs a keepalive every 25 s.
pub const DEFAULT_RELAYS_KEPT: usize = 2;

/// Whether a node needs relays at all: the operator said so (a node known to sit behind a carrier-grade
/// NAT), our own NAT maps per destination (no peer can aim at us), or [`decide`] said [`PathDecision::Relay`]
/// for some peer.
pub fn relay_needed(via_relay: bool, ours: NatClass, some_peer_needs_relay: bool) -> bool {
    via_relay || ours == NatClass::Symmetric || some_peer_needs_relay
}

/// A relay found in the DHT that answered a Binding request with its identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayCandidate {
    pub key: [u8; 32],
    pub addr: SocketAddr,
    pub rtt: Duration,
}

/// Which of the verified `candidates` to add as relays, given the `current` ones (tunnel up): every
/// candidate that a peer named in its record (`named_by_peers`: the way to reach that peer), then the
/// lowest round-trip times until `keep` relays are up. Never our own key, never one already current,
/// never a key twice.
pub fn pick_relays(
    candidates: &[RelayCandidate],
    current: &[[u8; 32]],
    named_by_peers: &[[u8; 32]],
    own: &[u8; 32],
    keep: usize,
) -> Vec<RelayCandidate> {
    let mut fresh: Vec<RelayCandidate> = Vec::new();
    for c in candidates {
        if c.key != *own && !current.contains(&c.key) {
            match fresh.iter_mut().find(|f| f.key == c.key) {
                // The same relay seen at two addresses (announced twice): the faster one.
                Some(f) if c.rtt < f.rtt => *f = *c,
                Some(_) => {}
                None => fresh.push(*c),
            }
        }
    }
    fresh.sort_by_key(|c| (!named_by_peers.contains(&c.key), c.rtt));
    let named = fresh.iter().filter(|c| named_by_peers.contains(&c.key)).count();
    let room = keep.saturating_sub(current.len()).max(named);
    fresh.truncate(room);
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use NatClass::*;

    fn cand(k: u8, port: u16, rtt_ms: u64) -> RelayCandidate {
        RelayCandidate {
            key: [k; 32],
            addr: SocketAddr::from(([192, 0, 2, 1], port)),
            rtt: Duration::from_millis(rtt_ms),
        }
    }

    #[test]
    fn relays_are_needed_when_asked_for_or_when_punching_cannot_work() {
        assert!(!relay_needed(false, Cone, false));
        assert!(!relay_needed(false, Public, false));
        assert!(!relay_needed(false, Unknown, false));
        assert!(relay_needed(true, Public, false));
        assert!(relay_needed(false, Symmetric, false));
        assert!(relay_needed(false, Cone, true));
    }

    #[test]
    fn relays_named_by_peers_first_then_fastest() {
        let own = [9u8; 32];
        let c = [cand(1, 1, 80), cand(2, 2, 10), cand(3, 3, 40), cand(9, 9, 1)];
        let keys = |v: Vec<RelayCandidate>| v.into_iter().map(|c| c.key[0]).collect::<Vec<_>>();
        // Nothing yet: the two fastest, never ourselves.
        assert_eq!(keys(pick_relays(&c, &[], &[], &own, 2)), [2, 3]);
        // One up: one more.
        assert_eq!(keys(pick_relays(&c, &[[2; 32]], &[], &own, 2)), [3]);
        // Enough up: none, unless a peer named a relay we do not use yet (its only way to us).
        assert!(pick_relays(&c, &[[2; 32], [3; 32]], &[], &own, 2).is_empty());
        assert_eq!(keys(pick_relays(&c, &[[2; 32], [3; 32]], &[[1; 32]], &own, 2)), [1]);
        // A named relay comes first even if slow.
        assert_eq!(keys(pick_relays(&c, &[], &[[1; 32]], &own, 2)), [1, 2]);
        // A relay announced at two addresses is taken once, at the faster one.
        let twice = [cand(4, 1, 50), cand(4, 2, 20)];
        let got = pick_relays(&twice, &[], &[], &own, 2);
        assert_eq!(got, vec![cand(4, 2, 20)]);
    }

    #[test]
    fn decisions() {
        let n = DEFAULT_PUNCH_ATTEMPTS;
        assert_eq!(decide(Public, Symmetric, 0, n), PathDecision::Direct);
        assert_eq!(decide(Symmetric, Public, n - 1, n), PathDecision::Direct);
        // A direct path that never answered is given up like a punched one.
        assert_eq!(decide(Public, Public, n, n), PathDecision::Relay(RelayReason::NoAnswer));
        assert_eq!(decide(Symmetric, Public, 9, n), PathDecision::Relay(RelayReason::NoAnswer));
        assert_eq!(decide(Cone, Cone, 0, n), PathDecision::Punch);
        assert_eq!(decide(Cone, Unknown, n - 1, n), PathDecision::Punch);
        assert_eq!(decide(Cone, Cone, n, n), PathDecision::Relay(RelayReason::NoAnswer));
        assert_eq!(decide(Symmetric, Cone, 0, n), PathDecision::Relay(RelayReason::SymmetricNat));
        assert_eq!(decide(Cone, Symmetric, 0, n), PathDecision::Relay(RelayReason::SymmetricNat));
        assert_eq!(decide(Unknown, Unknown, n, n), PathDecision::Relay(RelayReason::NoAnswer));
    }
}
