//! Epidemic routing (Vahdat and Becker, 2000): every peer gets a copy of every bundle it lacks.
//!
//! The anti-entropy part of the original protocol (exchanging summary vectors so only missing bundles
//! move) is done by the engine before it asks the agent, so what is left here is the policy: replicate
//! everything, except over links that cost money per byte.

use crate::bpv7::DtnTime;
use crate::routing::{Decision, LinkClass, Local, PeerView, RoutingAgent};
use crate::store::{BundleMeta, Priority};

/// Replicates every bundle to every peer; on metered links only expedited bundles.
///
/// Epidemic routing buys delivery probability with copies, which is a good trade on free local Wi-Fi and a
/// bad one on a cellular or satellite link billed per byte: there a flood of bulk replicas would cost real
/// money for bundles that will very likely reach their destination by a free contact anyway. So over a
/// [`LinkClass::Metered`] link only bundles of priority [`Priority::EXPEDITED`] or higher (alarms, control)
/// go out, because for those the delay of waiting for a free contact is what costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Epidemic;

impl Epidemic {
    /// The agent; it keeps no state.
    pub fn new() -> Self {
        Epidemic
    }
}

impl RoutingAgent for Epidemic {
    fn name(&self) -> &'static str {
        "epidemic"
    }

    fn decide(&mut self, _local: &Local<'_>, bundle: &BundleMeta, peer: &PeerView<'_>, _now: DtnTime) -> Decision {
        if peer.link.class == LinkClass::Metered && bundle.priority < Priority::EXPEDITED {
            return Decision::Skip;
        }
        Decision::Replicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LinkInfo;
    use crate::routing::test_support::{bundle, eid, local, peer};

    #[test]
    fn replicates_everything_on_free_links() {
        let me = eid("dtn://me/");
        let other = eid("dtn://other/");
        let mut agent = Epidemic::new();
        for class in [LinkClass::Wifi, LinkClass::Wired, LinkClass::Unknown] {
            let link = LinkInfo { class, ..LinkInfo::default() };
            for priority in [Priority::BULK, Priority::NORMAL, Priority::EXPEDITED, Priority(255)] {
                let mut b = bundle("dtn://far/app");
                b.priority = priority;
                let d = agent.decide(&local(&me), &b, &peer(&other, &link), DtnTime(5));
                assert_eq!(d, Decision::Replicate, "{class:?} {priority:?}");
            }
        }
    }

    #[test]
    fn metered_links_carry_only_expedited() {
        let me = eid("dtn://me/");
        let other = eid("dtn://other/");
        let link = LinkInfo { class: LinkClass::Metered, ..LinkInfo::default() };
        let mut agent = Epidemic::new();
        let cases = [
            (Priority::BULK, Decision::Skip),
            (Priority::NORMAL, Decision::Skip),
            (Priority(191), Decision::Skip),
            (Priority::EXPEDITED, Decision::Replicate),
            (Priority(255), Decision::Replicate),
        ];
        for (priority, want) in cases {
            let mut b = bundle("dtn://far/app");
            b.priority = priority;
            assert_eq!(agent.decide(&local(&me), &b, &peer(&other, &link), DtnTime(5)), want, "{priority:?}");
        }
    }

    #[test]
    fn keeps_no_state() {
        let agent = Epidemic::new();
        assert_eq!(agent.name(), "epidemic");
        assert_eq!(agent.initial_copies(), 1);
        assert_eq!(agent.save(), None);
    }
}
