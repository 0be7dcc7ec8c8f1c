//! Static routes: an operator's table of "bundles for these destinations go via that node".
//!
//! For fixed topologies (a gateway that always reaches the collector through one uplink) a table is simpler
//! and more predictable than any learned route. Routes are tried in order and the first whose pattern
//! matches decides, as in a firewall rule list, so specific routes go before catch-alls.

use std::fmt;
use std::str::FromStr;

use crate::bpv7::{DtnTime, Eid, EidError};
use crate::routing::{Decision, Local, PeerView, RoutingAgent};
use crate::store::BundleMeta;

/// Which destinations a route covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EidPattern {
    /// `*`: every destination.
    Any,
    /// One endpoint, compared by meaning (so `ipn:0.5.1` and `ipn:5.1` are the same).
    Exact(Eid),
    /// Every destination whose text form starts with this prefix: `dtn://collector/*` stores
    /// `dtn://collector/`, `ipn:5.*` stores `ipn:5.`. Matching uses the canonical text form ([`Eid`]'s
    /// `Display`), which is why the prefix must start with a scheme we print (`dtn:` or `ipn:`).
    Prefix(String),
}

/// Why a pattern did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing but whitespace.
    #[error("empty EID pattern (use `*` to match every destination)")]
    Empty,
    /// A `*` somewhere other than at the end.
    #[error("EID pattern {0:?}: `*` is only allowed as the last character")]
    MisplacedWildcard(String),
    /// A prefix pattern that does not start with `dtn:` or `ipn:`.
    #[error("EID pattern {0:?}: a prefix must start with `dtn:` or `ipn:`")]
    BadPrefix(String),
    /// An exact pattern that is not a valid EID.
    #[error("EID pattern {text:?} is not a valid EID: {source}")]
    BadEid {
        /// The pattern as given.
        text: String,
        /// Why the EID was refused.
        source: EidError,
    },
}

impl EidPattern {
    /// Whether `eid` is covered by this pattern.
    pub fn matches(&self, eid: &Eid) -> bool {
        match self {
            EidPattern::Any => true,
            EidPattern::Exact(e) => e == eid,
            EidPattern::Prefix(p) => eid.to_string().starts_with(p.as_str()),
        }
    }
}

impl FromStr for EidPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, PatternError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s == "*" {
            return Ok(EidPattern::Any);
        }
        match s.strip_suffix('*') {
            Some(prefix) => {
                if prefix.contains('*') {
                    return Err(PatternError::MisplacedWildcard(s.to_string()));
                }
                if !(prefix.starts_with("dtn:") || prefix.starts_with("ipn:")) {
                    return Err(PatternError::BadPrefix(s.to_string()));
                }
                Ok(EidPattern::Prefix(prefix.to_string()))
            }
            None if s.contains('*') => Err(PatternError::MisplacedWildcard(s.to_string())),
            None => s
                .parse::<Eid>()
                .map(EidPattern::Exact)
                .map_err(|source| PatternError::BadEid { text: s.to_string(), source }),
        }
    }
}

impl fmt::Display for EidPattern {
    /// The text form [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EidPattern::Any => f.write_str("*"),
            EidPattern::Exact(e) => write!(f, "{e}"),
            EidPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// Destinations this route covers.
    pub pattern: EidPattern,
    /// Next hop; only its node ID counts, so `dtn://gw/` and `dtn://gw/any` are the same hop.
    pub via: Eid,
}

impl StaticRoute {
    /// A route from its parts.
    pub fn new(pattern: EidPattern, via: Eid) -> Self {
        StaticRoute { pattern, via }
    }
}

/// Forwards bundles along the first matching route of a fixed table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticRoutes {
    /// Routes in priority order: the first match wins.
    pub routes: Vec<StaticRoute>,
}

impl StaticRoutes {
    /// The agent over `routes`, tried in order.
    pub fn new(routes: Vec<StaticRoute>) -> Self {
        StaticRoutes { routes }
    }

    /// The route that decides for `destination`, if any.
    pub fn route_for(&self, destination: &Eid) -> Option<&StaticRoute> {
        self.routes.iter().find(|r| r.pattern.matches(destination))
    }
}

impl RoutingAgent for StaticRoutes {
    fn name(&self) -> &'static str {
        "static"
    }

    /// Forward when the first matching route's next hop is this peer. A match for another hop means "not
    /// this way" (later routes are not consulted, or a catch-all would override a specific route); no match
    /// means the table has no opinion, and the bundle waits for its destination.
    fn decide(&mut self, _local: &Local<'_>, bundle: &BundleMeta, peer: &PeerView<'_>, _now: DtnTime) -> Decision {
        match self.route_for(&bundle.destination) {
            Some(route) if route.via.node_id() == peer.node.node_id() => Decision::Forward,
            _ => Decision::Skip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LinkInfo;
    use crate::routing::test_support::{bundle, eid, local, peer};

    fn pat(s: &str) -> EidPattern {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn patterns_parse_and_print() {
        for text in ["*", "dtn://collector/*", "ipn:5.*", "dtn://a/b", "ipn:7.3", "dtn:*", "ipn:*"] {
            assert_eq!(pat(text).to_string(), text);
        }
        assert_eq!(pat("  dtn://a/b "), EidPattern::Exact(eid("dtn://a/b")));
        assert_eq!(pat("dtn://collector/*"), EidPattern::Prefix("dtn://collector/".into()));
        // An exact pattern is printed in canonical form.
        assert_eq!(pat("ipn:0.5.1").to_string(), "ipn:5.1");
    }

    #[test]
    fn bad_patterns_say_why() {
        assert_eq!("".parse::<EidPattern>(), Err(PatternError::Empty));
        assert_eq!("  ".parse::<EidPattern>(), Err(PatternError::Empty));
        assert!(matches!("dtn://*/x".parse::<EidPattern>(), Err(PatternError::MisplacedWildcard(_))));
        assert!(matches!("dtn://a*/*".parse::<EidPattern>(), Err(PatternError::MisplacedWildcard(_))));
        assert!(matches!("**".parse::<EidPattern>(), Err(PatternError::MisplacedWildcard(_))));
        assert!(matches!("collector*".parse::<EidPattern>(), Err(PatternError::BadPrefix(_))));
        assert!(matches!("http://x/*".parse::<EidPattern>(), Err(PatternError::BadPrefix(_))));
        let err = "dtn://no de/x".parse::<EidPattern>().unwrap_err();
        assert!(matches!(err, PatternError::BadEid { .. }));
        assert!(err.to_string().contains("dtn://no de/x"), "{err}");
    }

    #[test]
    fn matching() {
        assert!(pat("*").matches(&eid("ipn:1.1")));
        assert!(pat("*").matches(&eid("dtn://x/y")));
        let p = pat("dtn://collector/*");
        assert!(p.matches(&eid("dtn://collector/")));
        assert!(p.matches(&eid("dtn://collector/~data/baro")));
        assert!(!p.matches(&eid("dtn://collector2/x")));
        assert!(!p.matches(&eid("dtn://other/collector/")));
        let p = pat("ipn:5.*");
        assert!(p.matches(&eid("ipn:5.0")));
        assert!(p.matches(&eid("ipn:5.12")));
        assert!(!p.matches(&eid("ipn:50.1")));
        assert!(!p.matches(&eid("ipn:6.5")));
        // Exact compares meaning: the three-element spelling with allocator 0 is the same EID.
        assert!(pat("ipn:5.1").matches(&eid("ipn:0.5.1")));
        assert!(!pat("ipn:5.1").matches(&eid("ipn:5.2")));
    }

    #[test]
    fn first_matching_route_decides() {
        let me = eid("dtn://me/");
        let gw = eid("dtn://gw/");
        let uplink = eid("dtn://uplink/");
        let link = LinkInfo::default();
        let mut agent = StaticRoutes::new(vec![
            StaticRoute::new(pat("dtn://collector/~alarms"), eid("dtn://uplink/")),
            StaticRoute::new(pat("dtn://collector/*"), eid("dtn://gw/routing")),
            StaticRoute::new(pat("ipn:5.*"), eid("ipn:9.0")),
        ]);
        let l = local(&me);
        let ask = |agent: &mut StaticRoutes, dest: &str, via: &Eid| {
            agent.decide(&l, &bundle(dest), &peer(via, &link), DtnTime(1))
        };
        // Via is compared by node ID: `dtn://gw/routing` names node `dtn://gw/`.
        assert_eq!(ask(&mut agent, "dtn://collector/~data", &gw), Decision::Forward);
        assert_eq!(ask(&mut agent, "dtn://collector/~data", &uplink), Decision::Skip);
        // The specific route comes first and wins over the prefix.
        assert_eq!(ask(&mut agent, "dtn://collector/~alarms", &uplink), Decision::Forward);
        assert_eq!(ask(&mut agent, "dtn://collector/~alarms", &gw), Decision::Skip);
        assert_eq!(ask(&mut agent, "ipn:5.3", &eid("ipn:9.0")), Decision::Forward);
        // No route at all.
        assert_eq!(ask(&mut agent, "dtn://elsewhere/x", &gw), Decision::Skip);
        assert_eq!(agent.route_for(&eid("dtn://elsewhere/x")), None);
    }

    #[test]
    fn catch_all_after_specific_routes() {
        let me = eid("dtn://me/");
        let gw = eid("dtn://gw/");
        let link = LinkInfo::default();
        let mut agent = StaticRoutes::new(vec![
            StaticRoute::new(pat("dtn://local-net/*"), eid("dtn://lan/")),
            StaticRoute::new(pat("*"), eid("dtn://gw/")),
        ]);
        let l = local(&me);
        assert_eq!(agent.decide(&l, &bundle("dtn://anything/x"), &peer(&gw, &link), DtnTime(1)), Decision::Forward);
        assert_eq!(agent.decide(&l, &bundle("dtn://local-net/x"), &peer(&gw, &link), DtnTime(1)), Decision::Skip);
        assert_eq!(agent.name(), "static");
    }
}
