//! Binary spray-and-wait (Spyropoulos, Psounis and Raghavendra, WDTN 2005).
//!
//! A new bundle starts with L copies (the bundle's `copies` field counts the copies this node may still
//! hand out, itself included). Spray phase: a node holding n > 1 copies that meets a node without the
//! bundle hands it floor(n/2) and keeps ceil(n/2). Wait phase: a node down to one copy sends the bundle
//! only to its destination, which the engine does by itself. The number of copies in the network therefore
//! never exceeds L, while binary splitting spreads them in about log2(L) rounds.

use crate::bpv7::DtnTime;
use crate::routing::{Decision, Local, PeerView, RoutingAgent};
use crate::store::BundleMeta;

/// Binary spray-and-wait with `copies` (L) copies per new bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SprayAndWait {
    /// L: copies a new bundle starts with. 0 is read as 1 (no spraying: direct delivery only).
    pub copies: u32,
}

impl SprayAndWait {
    /// Spray-and-wait with L = `copies`.
    pub fn new(copies: u32) -> Self {
        SprayAndWait { copies }
    }

    /// Copies handed to a peer by a node holding `held`: floor(held/2), so the sender keeps the larger half
    /// and the sum of both halves is exactly `held`.
    pub fn give(held: u32) -> u32 {
        held / 2
    }
}

impl RoutingAgent for SprayAndWait {
    fn name(&self) -> &'static str {
        "spray-and-wait"
    }

    fn initial_copies(&self) -> u32 {
        self.copies.max(1)
    }

    fn decide(&mut self, _local: &Local<'_>, bundle: &BundleMeta, _peer: &PeerView<'_>, _now: DtnTime) -> Decision {
        if bundle.copies > 1 { Decision::Spray { give: Self::give(bundle.copies) } } else { Decision::Skip }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LinkInfo;
    use crate::routing::test_support::{bundle, eid, local, peer};

    fn decide_with(copies: u32) -> Decision {
        let me = eid("dtn://me/");
        let other = eid("dtn://other/");
        let link = LinkInfo::default();
        let mut b = bundle("dtn://far/app");
        b.copies = copies;
        SprayAndWait::new(8).decide(&local(&me), &b, &peer(&other, &link), DtnTime(1))
    }

    #[test]
    fn copy_counts_follow_the_binary_rule() {
        assert_eq!(SprayAndWait::new(8).initial_copies(), 8);
        assert_eq!(decide_with(8), Decision::Spray { give: 4 });
        assert_eq!(decide_with(4), Decision::Spray { give: 2 });
        assert_eq!(decide_with(2), Decision::Spray { give: 1 });
        assert_eq!(decide_with(1), Decision::Skip);
        assert_eq!(decide_with(0), Decision::Skip);
        // Odd counts: hand over the floor, keep the ceiling.
        assert_eq!(decide_with(5), Decision::Spray { give: 2 });
        assert_eq!(decide_with(3), Decision::Spray { give: 1 });
        assert_eq!(decide_with(u32::MAX), Decision::Spray { give: u32::MAX / 2 });
    }

    #[test]
    fn zero_copies_configured_means_one() {
        assert_eq!(SprayAndWait::new(0).initial_copies(), 1);
    }

    /// Every node that holds copies meets a fresh node each round and follows the agent's answer; the
    /// total never exceeds L and, once spraying is over, exactly L nodes hold one copy each.
    #[test]
    fn spraying_never_creates_more_than_l_copies() {
        let me = eid("dtn://me/");
        let other = eid("dtn://other/");
        let link = LinkInfo::default();
        for l in [1u32, 2, 3, 5, 8, 13, 16, 100] {
            let mut agent = SprayAndWait::new(l);
            let mut nodes: Vec<u32> = vec![agent.initial_copies()];
            for _round in 0..16 {
                let mut newcomers = Vec::new();
                for held in nodes.iter_mut() {
                    let mut b = bundle("dtn://far/app");
                    b.copies = *held;
                    match agent.decide(&local(&me), &b, &peer(&other, &link), DtnTime(1)) {
                        Decision::Spray { give } => {
                            assert!(give >= 1 && give < *held, "L={l}: gave {give} of {held}");
                            *held -= give;
                            newcomers.push(give);
                        }
                        Decision::Skip => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                nodes.extend(newcomers);
                assert_eq!(nodes.iter().map(|&n| u64::from(n)).sum::<u64>(), u64::from(l), "L={l}");
                assert!(nodes.len() as u64 <= u64::from(l), "L={l}: {} holders", nodes.len());
            }
            assert_eq!(nodes.len() as u32, l, "L={l}: spraying should finish within 16 rounds");
            assert!(nodes.iter().all(|&n| n == 1));
        }
    }
}
