//! Routing agents: which bundle goes to which peer.
//!
//! The engine owns the mechanics (summaries, custody, fragmentation, the transmit queue); an agent only
//! answers "should this bundle go to this peer, and how" from what it has learned of contacts. It sees
//! contacts and the summaries' outcome, never sockets, and keeps any state it needs across restarts in
//! [`RoutingAgent::save`]. Agents are deterministic: no clocks (time is passed in), no randomness, no
//! iteration over hash maps.
//!
//! The engine asks an agent only about peers that are *not* the bundle's destination and that do not already
//! hold the bundle: a bundle always goes straight to a peer that is its destination or that registered its
//! (collection) endpoint.

mod contact_plan;
mod epidemic;
mod prophet;
mod spray;
mod static_routes;
#[cfg(test)]
mod test_support;

pub use contact_plan::{ContactPlan, ContactPlanRouter, PlannedContact, PlannedRoute};
pub use epidemic::Epidemic;
pub use prophet::{MAX_ENTRIES as PROPHET_MAX_ENTRIES, Prophet, ProphetParams};
pub use spray::SprayAndWait;
pub use static_routes::{EidPattern, PatternError, StaticRoute, StaticRoutes};

use crate::bpv7::{DtnTime, Eid};
use crate::store::BundleMeta;

/// The kind of link a contact runs over, as the convergence layer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkClass {
    /// Local wireless (station to station, van to station).
    #[default]
    Wifi,
    /// Wired or loopback.
    Wired,
    /// Cellular or satellite, paid per byte: only what is worth paying for (bundles of at least
    /// [`Config::metered_min_priority`](crate::engine::Config::metered_min_priority), within the volume).
    Metered,
    /// Not known.
    Unknown,
}

impl LinkClass {
    /// Every class, in the order configuration messages list them.
    pub const ALL: [LinkClass; 4] = [LinkClass::Metered, LinkClass::Wired, LinkClass::Wifi, LinkClass::Unknown];

    /// The name configuration files and the API use.
    pub fn name(self) -> &'static str {
        match self {
            LinkClass::Wifi => "wifi",
            LinkClass::Wired => "wired",
            LinkClass::Metered => "metered",
            LinkClass::Unknown => "unknown",
        }
    }

    /// The class called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<LinkClass> {
        LinkClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What is known about a contact's link when it comes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkInfo {
    /// Link class.
    pub class: LinkClass,
    /// Data rate in bytes per second, if known.
    pub rate: Option<u64>,
    /// Largest bundle the link carries in one piece, if limited.
    pub mtu: Option<u64>,
    /// Bytes the contact is expected to carry in total (scheduled contacts), if known.
    pub volume: Option<u64>,
    /// A finished transmission means the bundle is durable at the peer, when the peer runs our router: our
    /// TCPCL acknowledges only stored bytes. A bundle handed this way to its destination needs no custody
    /// signal.
    pub durable_acks: bool,
}

/// This node, as an agent sees it.
#[derive(Debug, Clone, Copy)]
pub struct Local<'a> {
    /// Node ID.
    pub node: &'a Eid,
    /// Endpoints registered here (including collection endpoints).
    pub endpoints: &'a [Eid],
}

/// A peer in contact, as an agent sees it.
#[derive(Debug, Clone, Copy)]
pub struct PeerView<'a> {
    /// The peer's node ID.
    pub node: &'a Eid,
    /// Its link.
    pub link: &'a LinkInfo,
    /// Endpoints the peer said it registered (empty for a peer that does not speak our hello).
    pub endpoints: &'a [Eid],
    /// Whether the peer runs our router (it sent a hello with summaries).
    pub ours: bool,
}

/// An agent's answer for one bundle and one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Do not send it.
    Skip,
    /// Send a copy; keep ours (and our custody, if we hold it).
    Replicate,
    /// Spray-and-wait: send a copy and hand the peer `give` of our remaining copies.
    Spray {
        /// Copies the peer may hand out in turn (at least 1).
        give: u32,
    },
    /// Hand the bundle on: the peer becomes the next custodian (if we hold custody) and we drop our copy
    /// once it has it.
    Forward,
}

/// Agent failures (bad hello data from a peer, unreadable saved state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// A peer's routing data could not be decoded.
    #[error("malformed routing data from peer: {0}")]
    Malformed(String),
    /// Saved state could not be restored.
    #[error("saved routing state unreadable: {0}")]
    State(String),
}

/// A routing agent.
pub trait RoutingAgent: Send + std::fmt::Debug {
    /// Short name (`epidemic`, `spray-and-wait`, `prophet`, `static`, `contact-plan`).
    fn name(&self) -> &'static str;

    /// Copies a new bundle starts with (spray-and-wait's L; 1 for the others).
    fn initial_copies(&self) -> u32 {
        1
    }

    /// A contact came up.
    fn contact_up(&mut self, _local: &Local<'_>, _peer: &PeerView<'_>, _now: DtnTime) {}

    /// A contact went down.
    fn contact_down(&mut self, _peer: &Eid, _now: DtnTime) {}

    /// Routing data for our hello to a peer (PRoPHET: our delivery predictabilities).
    fn hello(&mut self, _local: &Local<'_>, _now: DtnTime) -> Vec<u8> {
        Vec::new()
    }

    /// A peer's routing data from its hello.
    fn peer_hello(&mut self, _local: &Local<'_>, _peer: &Eid, _data: &[u8], _now: DtnTime) -> Result<(), RoutingError> {
        Ok(())
    }

    /// Whether and how to send `bundle` to `peer`.
    fn decide(&mut self, local: &Local<'_>, bundle: &BundleMeta, peer: &PeerView<'_>, now: DtnTime) -> Decision;

    /// State to keep across restarts, if any.
    fn save(&self) -> Option<Vec<u8>> {
        None
    }

    /// Restores state saved by [`save`](Self::save).
    fn load(&mut self, _bytes: &[u8]) -> Result<(), RoutingError> {
        Ok(())
    }
}

/// Which agent a node runs, with its parameters: what a configuration file selects.
#[derive(Debug, Clone, PartialEq)]
pub enum RoutingConfig {
    /// [`Epidemic`].
    Epidemic,
    /// [`SprayAndWait`] with L = `copies`.
    SprayAndWait {
        /// Copies per new bundle (L).
        copies: u32,
    },
    /// [`Prophet`].
    Prophet(ProphetParams),
    /// [`StaticRoutes`] over these routes, first match first.
    Static(Vec<StaticRoute>),
    /// [`ContactPlanRouter`] over this plan.
    ContactPlan(ContactPlan),
}

impl RoutingConfig {
    /// A fresh agent for this configuration (no learned state: restore it with [`RoutingAgent::load`]).
    pub fn build(&self) -> Box<dyn RoutingAgent> {
        match self {
            RoutingConfig::Epidemic => Box::new(Epidemic::new()),
            RoutingConfig::SprayAndWait { copies } => Box::new(SprayAndWait::new(*copies)),
            RoutingConfig::Prophet(params) => Box::new(Prophet::new(*params)),
            RoutingConfig::Static(routes) => Box::new(StaticRoutes::new(routes.clone())),
            RoutingConfig::ContactPlan(plan) => Box::new(ContactPlanRouter::new(plan.clone())),
        }
    }

    /// The agent's short name, as [`RoutingAgent::name`] gives it.
    pub fn name(&self) -> &'static str {
        match self {
            RoutingConfig::Epidemic => "epidemic",
            RoutingConfig::SprayAndWait { .. } => "spray-and-wait",
            RoutingConfig::Prophet(_) => "prophet",
            RoutingConfig::Static(_) => "static",
            RoutingConfig::ContactPlan(_) => "contact-plan",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_classes_are_found_by_their_names() {
        for c in LinkClass::ALL {
            assert_eq!(LinkClass::from_name(c.name()), Some(c));
        }
        assert_eq!(LinkClass::from_name("cellular"), None);
    }

    #[test]
    fn config_builds_the_named_agent() {
        let configs = [
            RoutingConfig::Epidemic,
            RoutingConfig::SprayAndWait { copies: 6 },
            RoutingConfig::Prophet(ProphetParams::default()),
            RoutingConfig::Static(vec![StaticRoute::new(EidPattern::Any, Eid::ipn(2, 0))]),
            RoutingConfig::ContactPlan(ContactPlan::default()),
        ];
        for config in &configs {
            let agent = config.build();
            assert_eq!(agent.name(), config.name());
        }
        assert_eq!(configs[1].build().initial_copies(), 6);
        assert_eq!(configs[0].build().initial_copies(), 1);
        assert!(configs[2].build().save().is_some());
    }
}
