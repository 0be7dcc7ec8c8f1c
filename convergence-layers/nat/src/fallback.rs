//! When to stop punching and route through a relay. Pure decision logic; the node runtime drives it.

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
    /// `max_attempts` punch rounds got no answer (a firewall that drops unsolicited inbound traffic, a
    /// carrier-grade NAT with short timeouts, ...).
    NoAnswer,
}

/// Default number of punch rounds before falling back. A round sends a handshake to every endpoint the
/// peer published; with WireGuard's 5 s handshake retry, 4 rounds give up after about 20 s.
pub const DEFAULT_PUNCH_ATTEMPTS: u32 = 4;

/// Decides how to reach a peer from both sides' NAT classes (ours from [`classify`](crate::classify), the
/// peer's from its endpoint record) and the punch rounds that already went unanswered.
pub fn decide(ours: NatClass, peer: NatClass, unanswered_rounds: u32, max_attempts: u32) -> PathDecision {
    if ours == NatClass::Public || peer == NatClass::Public {
        return PathDecision::Direct;
    }
    if ours == NatClass::Symmetric || peer == NatClass::Symmetric {
        return PathDecision::Relay(RelayReason::SymmetricNat);
    }
    // Unknown classes get the benefit of the doubt: trying costs a few small packets and is bounded.
    if unanswered_rounds >= max_attempts {
        return PathDecision::Relay(RelayReason::NoAnswer);
    }
    PathDecision::Punch
}

#[cfg(test)]
mod tests {
    use super::*;
    use NatClass::*;

    #[test]
    fn decisions() {
        let n = DEFAULT_PUNCH_ATTEMPTS;
        assert_eq!(decide(Public, Symmetric, 0, n), PathDecision::Direct);
        assert_eq!(decide(Symmetric, Public, 9, n), PathDecision::Direct);
        assert_eq!(decide(Cone, Cone, 0, n), PathDecision::Punch);
        assert_eq!(decide(Cone, Unknown, n - 1, n), PathDecision::Punch);
        assert_eq!(decide(Cone, Cone, n, n), PathDecision::Relay(RelayReason::NoAnswer));
        assert_eq!(decide(Symmetric, Cone, 0, n), PathDecision::Relay(RelayReason::SymmetricNat));
        assert_eq!(decide(Cone, Symmetric, 0, n), PathDecision::Relay(RelayReason::SymmetricNat));
        assert_eq!(decide(Unknown, Unknown, n, n), PathDecision::Relay(RelayReason::NoAnswer));
    }
}
