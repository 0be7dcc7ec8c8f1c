//! Epidemic routing (Vahdat and Becker, 2000): every peer gets a copy of every bundle it lacks.
//!
//! The anti-entropy part of the original protocol (exchanging summary vectors so only missing bundles
//! move) is done by the engine before it asks the agent, so what is left here is the policy: replicate
//! everything. Links that cost money per byte are the engine's business
//! ([`Config::metered_min_priority`](crate::engine::Config::metered_min_priority)), the same for every agent.

use crate::bpv7::DtnTime;
use crate::routing::{Decision, Local, PeerView, RoutingAgent};
use crate::store::BundleMeta;

/// Replicates every bundle to every peer.
///
/// Epidemic routing buys delivery probability with copies, which is a good trade on free local Wi-Fi and a
/// bad one on a cellular or satellite link billed per byte. That trade is not decided here: the engine lets
/// only bundles of at least [`Config::metered_min_priority`](crate::engine::Config::metered_min_priority)
/// (normal by default) over a [`LinkClass::Metered`](crate::routing::LinkClass::Metered) link, and only as
/// many bytes as the contact's volume (a daily budget) allows, for every agent alike and for bundles to the
/// peer itself too. An agent-level rule on top (this agent used to send only expedited bundles there) would
/// keep small sensor batches off the one link they have.
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

    fn decide(&mut self, _local: &Local<'_>, _bundle: &BundleMeta, _peer: &PeerView<'_>, _now: DtnTime) -> Decision {
        Decision::Replicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{bundle, eid, local, peer};
    use crate::routing::{LinkClass, LinkInfo};
    use crate::store::Priority;

    #[test]
    fn replicates_everything_on_every_link() {
        let me = eid("dtn://me/");
        let other = eid("dtn://other/");
        let mut agent = Epidemic::new();
        for class in [LinkClass::Wifi, LinkClass::Wired, LinkClass::Metered, LinkClass::Unknown] {
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
    fn keeps_no_state() {
        let agent = Epidemic::new();
        assert_eq!(agent.name(), "epidemic");
        assert_eq!(agent.initial_copies(), 1);
        assert_eq!(agent.save(), None);
    }
}
