//! Contact-plan routing for scheduled links, after Contact Graph Routing (CGR, as in ION and CCSDS SABR).
//!
//! When contacts are known in advance (a satellite pass, a van's timetable, a link that is only powered on
//! a schedule) the best next hop is the first hop of the route that delivers a bundle earliest. This agent
//! computes that route with Dijkstra's algorithm over the contacts: the label of a node is the earliest time
//! the bundle can be there, and a contact from that node is usable if the bundle can be sent in full before
//! the contact ends.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use crate::bpv7::{DtnTime, Eid};
use crate::routing::{Decision, Local, PeerView, RoutingAgent};
use crate::store::BundleMeta;

/// One scheduled contact: `from` can send to `to` between `start` and `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedContact {
    /// Sending node (only its node ID counts).
    pub from: Eid,
    /// Receiving node (only its node ID counts).
    pub to: Eid,
    /// When the contact begins.
    pub start: DtnTime,
    /// When it ends; a transmission must finish by then.
    pub end: DtnTime,
    /// Data rate in bytes per second; a contact with rate 0 carries nothing and is never used.
    pub rate: u64,
    /// One-way light time (propagation delay) in milliseconds.
    pub owlt_ms: u64,
}

/// A contact plan: the scheduled contacts, and which nodes registered which group or collection endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactPlan {
    /// The contacts, in any order.
    pub contacts: Vec<PlannedContact>,
    /// (endpoint, node) pairs: a bundle for `endpoint` is delivered on reaching `node`. Singleton endpoints
    /// need no entry: their node is their node ID.
    pub endpoint_nodes: Vec<(Eid, Eid)>,
}

/// Why a contact-plan file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("contact plan line {line}: {detail}")]
pub struct PlanError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub detail: String,
}

impl ContactPlan {
    /// Reads a contact plan in our text format (docs/routing.md): one item per line, `#` starts a comment.
    ///
    /// ```text
    /// contact START END FROM TO RATE [OWLT_MS]   # FROM can send to TO; RATE in bytes/s
    /// endpoint EID NODE                          # bundles for EID are delivered at NODE
    /// ```
    ///
    /// START and END are Unix times in seconds, or `+SECONDS` relative to `now` (as in ION's plans).
    pub fn parse(text: &str, now: DtnTime) -> Result<ContactPlan, PlanError> {
        let mut plan = ContactPlan { contacts: Vec::new(), endpoint_nodes: Vec::new() };
        for (i, raw) in text.lines().enumerate() {
            let err = |detail: String| PlanError { line: i + 1, detail };
            let line = raw.split('#').next().unwrap_or("").trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            let eid = |w: &str| w.parse::<Eid>().map_err(|e| err(format!("bad EID {w:?}: {e}")));
            let time = |w: &str| -> Result<DtnTime, PlanError> {
                let (rel, digits) = match w.strip_prefix('+') {
                    Some(d) => (true, d),
                    None => (false, w),
                };
                let secs: u64 = digits.parse().map_err(|_| err(format!("bad time {w:?}")))?;
                let ms = secs.checked_mul(1000).ok_or_else(|| err(format!("time {w:?} too large")))?;
                Ok(if rel { DtnTime(now.0.saturating_add(ms)) } else { DtnTime::from_unix_ms(ms) })
            };
            match words.as_slice() {
                [] => {}
                ["contact", start, end, from, to, rate, rest @ ..] if rest.len() <= 1 => {
                    let rate = rate.parse().map_err(|_| err(format!("bad rate {rate:?}")))?;
                    let owlt_ms = match rest.first() {
                        Some(o) => o.parse().map_err(|_| err(format!("bad one-way light time {o:?}")))?,
                        None => 0,
                    };
                    let (start, end) = (time(start)?, time(end)?);
                    if end < start {
                        return Err(err("the contact ends before it starts".into()));
                    }
                    plan.contacts.push(PlannedContact { from: eid(from)?, to: eid(to)?, start, end, rate, owlt_ms });
                }
                ["endpoint", ep, node] => plan.endpoint_nodes.push((eid(ep)?, eid(node)?)),
                _ => {
                    return Err(err(format!(
                        "expected `contact START END FROM TO RATE [OWLT_MS]` or `endpoint EID NODE`, got {line:?}"
                    )));
                }
            }
        }
        Ok(plan)
    }
}

/// The best route found for a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRoute {
    /// Index in [`ContactPlan::contacts`] of the route's first contact (from the local node).
    pub first_contact: usize,
    /// Earliest arrival at a destination node.
    pub arrival: DtnTime,
    /// Number of contacts on the route.
    pub hops: u32,
}

/// Routes bundles along the earliest-arrival path through a [`ContactPlan`].
#[derive(Debug, Clone)]
pub struct ContactPlanRouter {
    plan: ContactPlan,
    /// Node ID to dense index, so Dijkstra's labels live in vectors.
    node_index: BTreeMap<Eid, usize>,
    /// Node ID of each contact's receiving node, by contact index.
    contact_to: Vec<usize>,
    /// Contacts leaving each node (by node index), as indices into the plan, ordered by start time.
    outgoing: Vec<Vec<usize>>,
}

impl ContactPlanRouter {
    /// Indexes `plan`. Contacts that cannot carry anything (rate 0, empty window, a node to itself) are
    /// left out of the index.
    pub fn new(plan: ContactPlan) -> Self {
        let mut node_index = BTreeMap::new();
        let mut outgoing: Vec<Vec<usize>> = Vec::new();
        let mut contact_to = vec![usize::MAX; plan.contacts.len()];
        let mut index_of = |eid: &Eid, outgoing: &mut Vec<Vec<usize>>| -> usize {
            let next = node_index.len();
            let i = *node_index.entry(eid.node_id()).or_insert(next);
            if i == outgoing.len() {
                outgoing.push(Vec::new());
            }
            i
        };
        for (ci, c) in plan.contacts.iter().enumerate() {
            let from = index_of(&c.from, &mut outgoing);
            let to = index_of(&c.to, &mut outgoing);
            if from == to || c.rate == 0 || c.end <= c.start {
                continue;
            }
            contact_to[ci] = to;
            outgoing[from].push(ci);
        }
        for list in &mut outgoing {
            list.sort_by_key(|&ci| (plan.contacts[ci].start, ci));
        }
        ContactPlanRouter { plan, node_index, contact_to, outgoing }
    }

    /// The plan this router follows.
    pub fn plan(&self) -> &ContactPlan {
        &self.plan
    }

    /// Node IDs a bundle for `destination` is delivered at: its own node, plus every node that registered it.
    fn destination_nodes(&self, destination: &Eid) -> BTreeSet<usize> {
        let mut nodes = BTreeSet::new();
        if let Some(&i) = self.node_index.get(&destination.node_id()) {
            nodes.insert(i);
        }
        for (endpoint, node) in &self.plan.endpoint_nodes {
            if endpoint == destination
                && let Some(&i) = self.node_index.get(&node.node_id())
            {
                nodes.insert(i);
            }
        }
        nodes
    }

    /// The earliest-arrival route for a bundle of `size` bytes for `destination`, leaving `from` at `now`.
    /// `None` if no destination node is reachable through the plan, or if `from` itself is a destination
    /// node (there is nothing to route).
    ///
    /// Ties in arrival time go to the route with fewer hops, then to the lower first-contact index, so the
    /// answer depends only on the plan.
    pub fn route(&self, from: &Eid, destination: &Eid, size: u64, now: DtnTime) -> Option<PlannedRoute> {
        let &source = self.node_index.get(&from.node_id())?;
        let targets = self.destination_nodes(destination);
        if targets.is_empty() || targets.contains(&source) {
            return None;
        }
        let n = self.outgoing.len();
        // Best known (arrival, hops, first contact) per node; Dijkstra pops in that order.
        let mut best: Vec<Option<(u64, u32, usize)>> = vec![None; n];
        let mut done = vec![false; n];
        let mut heap = BinaryHeap::new();
        // The source's label: here now, no hops, no first contact yet (usize::MAX).
        heap.push(Reverse((now.0, 0u32, usize::MAX, source)));
        while let Some(Reverse((t, hops, first, node))) = heap.pop() {
            if done[node] {
                continue;
            }
            done[node] = true;
            if targets.contains(&node) {
                return Some(PlannedRoute { first_contact: first, arrival: DtnTime(t), hops });
            }
            for &ci in &self.outgoing[node] {
                let c = &self.plan.contacts[ci];
                let to = self.contact_to[ci];
                if done[to] {
                    continue;
                }
                let Some(arrival) = arrival_over(c, t, size) else { continue };
                let label = (arrival, hops + 1, if first == usize::MAX { ci } else { first });
                if best[to].is_none_or(|b| label < b) {
                    best[to] = Some(label);
                    heap.push(Reverse((label.0, label.1, label.2, to)));
                }
            }
        }
        None
    }
}

/// When a bundle of `size` bytes that is at the contact's sending node at `t` arrives over contact `c`, or
/// `None` if the contact is over or too short for it. It leaves at max(t, start), takes size/rate seconds
/// to send (rounded up to whole milliseconds) and owlt to propagate; sending must be finished by `end`.
fn arrival_over(c: &PlannedContact, t: u64, size: u64) -> Option<u64> {
    if c.end.0 <= t || c.rate == 0 {
        return None;
    }
    let depart = t.max(c.start.0);
    let tx_ms = (u128::from(size) * 1000).div_ceil(u128::from(c.rate));
    let sent = u128::from(depart) + tx_ms;
    if sent > u128::from(c.end.0) {
        return None;
    }
    // `sent` <= end fits in u64; only a huge owlt can overflow, and then the arrival is "never".
    Some((sent as u64).saturating_add(c.owlt_ms))
}

impl RoutingAgent for ContactPlanRouter {
    fn name(&self) -> &'static str {
        "contact-plan"
    }

    /// Forward when the peer is the first hop of the bundle's earliest-arrival route, and that route
    /// arrives before the bundle expires.
    ///
    /// The planned first contact need not be active now: if the peer is in contact already (the engine only
    /// asks about peers in contact), sending now gets the bundle to the same next hop no later than the plan
    /// would, and frees the planned contact's capacity for other traffic. So a first hop that matches the
    /// peer is enough.
    fn decide(&mut self, local: &Local<'_>, bundle: &BundleMeta, peer: &PeerView<'_>, now: DtnTime) -> Decision {
        let Some(route) = self.route(local.node, &bundle.destination, bundle.size, now) else {
            return Decision::Skip;
        };
        if route.arrival > bundle.expires_at {
            return Decision::Skip;
        }
        let first = &self.plan.contacts[route.first_contact];
        if first.to.node_id() == peer.node.node_id() { Decision::Forward } else { Decision::Skip }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plan_text_parses_and_bad_lines_say_where() {
        let now = DtnTime(1_000_000);
        let text = "# van timetable\ncontact +0 +600 dtn://a/ dtn://b/ 125000 20\n\nendpoint dtn://c/~data dtn://c/\n";
        let p = ContactPlan::parse(text, now).unwrap();
        assert_eq!(p.contacts.len(), 1);
        let c = &p.contacts[0];
        assert_eq!((c.start, c.end, c.rate, c.owlt_ms), (now, DtnTime(1_600_000), 125_000, 20));
        assert_eq!(p.endpoint_nodes.len(), 1);
        let abs = ContactPlan::parse("contact 1700000000 1700000600 ipn:1.0 ipn:2.0 10", now).unwrap();
        assert_eq!(abs.contacts[0].start, DtnTime::from_unix_ms(1_700_000_000_000));
        for (bad, line) in [
            ("contact +0 +1 dtn://a/ dtn://b/", 1),
            ("\ncontact +5 +1 dtn://a/ dtn://b/ 1", 2),
            ("contact +0 +1 nope dtn://b/ 1", 1),
            ("route x y", 1),
            ("contact +0 +x dtn://a/ dtn://b/ 1", 1),
        ] {
            assert_eq!(ContactPlan::parse(bad, now).unwrap_err().line, line, "{bad}");
        }
    }

    use super::*;
    use crate::routing::LinkInfo;
    use crate::routing::test_support::{bundle, eid, local, peer};

    fn contact(from: &str, to: &str, start: u64, end: u64, rate: u64, owlt_ms: u64) -> PlannedContact {
        PlannedContact { from: eid(from), to: eid(to), start: DtnTime(start), end: DtnTime(end), rate, owlt_ms }
    }

    /// A talks to C directly only late; through B it gets there sooner.
    fn three_nodes() -> ContactPlan {
        ContactPlan {
            contacts: vec![
                contact("dtn://a/", "dtn://c/", 100_000, 200_000, 1_000, 0),
                contact("dtn://a/", "dtn://b/", 10_000, 20_000, 1_000, 5),
                contact("dtn://b/", "dtn://c/", 30_000, 40_000, 1_000, 7),
            ],
            endpoint_nodes: vec![],
        }
    }

    fn ask(router: &mut ContactPlanRouter, b: &BundleMeta, peer_node: &str, now: u64) -> Decision {
        let me = eid("dtn://a/");
        let p = eid(peer_node);
        let link = LinkInfo::default();
        router.decide(&local(&me), b, &peer(&p, &link), DtnTime(now))
    }

    #[test]
    fn two_hops_beat_a_later_direct_contact() {
        let router = ContactPlanRouter::new(three_nodes());
        // 1000 bytes at 1000 B/s take 1000 ms: A->B leaves at 10 000, arrives 11 005; B->C leaves at 30 000,
        // arrives 31 007. The direct contact would arrive at 101 000.
        let r = router.route(&eid("dtn://a/"), &eid("dtn://c/app"), 1_000, DtnTime(0)).unwrap();
        assert_eq!(r, PlannedRoute { first_contact: 1, arrival: DtnTime(31_007), hops: 2 });
        let mut router = router;
        let b = bundle("dtn://c/app");
        assert_eq!(ask(&mut router, &b, "dtn://b/", 0), Decision::Forward);
        assert_eq!(ask(&mut router, &b, "dtn://c/", 0), Decision::Skip);
        // The peer is in contact before the planned A->B window opens: still the right next hop.
        assert_eq!(ask(&mut router, &b, "dtn://b/", 5_000), Decision::Forward);
        // After B->C has closed, only the direct contact is left.
        assert_eq!(ask(&mut router, &b, "dtn://c/", 45_000), Decision::Forward);
        assert_eq!(ask(&mut router, &b, "dtn://b/", 45_000), Decision::Skip);
    }

    #[test]
    fn contacts_too_short_or_over_are_excluded() {
        let router = ContactPlanRouter::new(three_nodes());
        // 20 000 bytes need 20 s: more than the 10 s A->B window, so only the direct contact works.
        let r = router.route(&eid("dtn://a/"), &eid("dtn://c/app"), 20_000, DtnTime(0)).unwrap();
        assert_eq!(r, PlannedRoute { first_contact: 0, arrival: DtnTime(120_000), hops: 1 });
        // 1000 bytes at 19 500: A->B ends at 20 000, and 1 s of sending would end at 20 500.
        let r = router.route(&eid("dtn://a/"), &eid("dtn://c/app"), 1_000, DtnTime(19_500)).unwrap();
        assert_eq!(r.first_contact, 0);
        // Exactly fitting is fine: sending ends at 20 000 = end.
        let r = router.route(&eid("dtn://a/"), &eid("dtn://c/app"), 1_000, DtnTime(19_000)).unwrap();
        assert_eq!((r.first_contact, r.arrival), (1, DtnTime(31_007)));
        // Everything over.
        assert_eq!(router.route(&eid("dtn://a/"), &eid("dtn://c/app"), 1_000, DtnTime(200_000)), None);
        // Too big for every contact, however big.
        assert_eq!(router.route(&eid("dtn://a/"), &eid("dtn://c/app"), 1_000_000, DtnTime(0)), None);
        assert_eq!(router.route(&eid("dtn://a/"), &eid("dtn://c/app"), u64::MAX, DtnTime(0)), None);
    }

    #[test]
    fn expiry_is_respected() {
        let mut router = ContactPlanRouter::new(three_nodes());
        let mut b = bundle("dtn://c/app");
        b.expires_at = DtnTime(31_007);
        assert_eq!(ask(&mut router, &b, "dtn://b/", 0), Decision::Forward);
        b.expires_at = DtnTime(31_006);
        assert_eq!(ask(&mut router, &b, "dtn://b/", 0), Decision::Skip);
        // The slower direct route does not rescue it either.
        assert_eq!(ask(&mut router, &b, "dtn://c/", 0), Decision::Skip);
    }

    #[test]
    fn group_endpoints_route_to_registered_nodes() {
        let mut plan = three_nodes();
        plan.contacts.push(contact("dtn://a/", "dtn://d/", 50_000, 60_000, 1_000, 0));
        plan.endpoint_nodes.push((eid("dtn://all-collectors/~data"), eid("dtn://d/")));
        plan.endpoint_nodes.push((eid("dtn://all-collectors/~data"), eid("dtn://c/")));
        let mut router = ContactPlanRouter::new(plan);
        // C (via B, 31 007) is earlier than D (51 000).
        let b = bundle("dtn://all-collectors/~data");
        assert_eq!(ask(&mut router, &b, "dtn://b/", 0), Decision::Forward);
        assert_eq!(ask(&mut router, &b, "dtn://d/", 0), Decision::Skip);
        // Once B->C is gone, D is the earliest member.
        assert_eq!(ask(&mut router, &b, "dtn://d/", 35_000), Decision::Forward);
    }

    #[test]
    fn unknown_nodes_and_degenerate_contacts() {
        let plan = ContactPlan {
            contacts: vec![
                contact("dtn://a/", "dtn://b/", 0, 1_000, 0, 0),
                contact("dtn://a/", "dtn://b/", 1_000, 1_000, 10, 0),
                contact("dtn://a/", "dtn://a/", 0, 1_000, 10, 0),
                contact("dtn://a/x", "dtn://b/y", 0, 10_000, u64::MAX, u64::MAX),
            ],
            endpoint_nodes: vec![],
        };
        let router = ContactPlanRouter::new(plan);
        // Only the last contact is usable; its owlt saturates the arrival time.
        let r = router.route(&eid("dtn://a/"), &eid("dtn://b/z"), 10, DtnTime(0)).unwrap();
        assert_eq!((r.first_contact, r.arrival), (3, DtnTime(u64::MAX)));
        assert_eq!(router.route(&eid("dtn://zz/"), &eid("dtn://b/z"), 10, DtnTime(0)), None);
        assert_eq!(router.route(&eid("dtn://a/"), &eid("dtn://zz/"), 10, DtnTime(0)), None);
        // A bundle already at its destination node has no route.
        assert_eq!(router.route(&eid("dtn://b/"), &eid("dtn://b/z"), 10, DtnTime(0)), None);
        // A huge bundle does not overflow: at u64::MAX bytes per second it still takes a second.
        let r = router.route(&eid("dtn://a/"), &eid("dtn://b/z"), u64::MAX, DtnTime(0)).unwrap();
        assert_eq!((r.first_contact, r.arrival), (3, DtnTime(u64::MAX)));
    }

    #[test]
    fn ties_prefer_fewer_hops() {
        let plan = ContactPlan {
            contacts: vec![
                contact("dtn://a/", "dtn://b/", 0, 10_000, 1_000_000, 0),
                contact("dtn://b/", "dtn://c/", 0, 10_000, 1_000_000, 0),
                contact("dtn://a/", "dtn://c/", 0, 10_000, 500_000, 0),
            ],
            endpoint_nodes: vec![],
        };
        // 1000 bytes: two fast hops of 1 ms each, or one slower hop of 2 ms; both arrive at 2.
        let router = ContactPlanRouter::new(plan);
        let r = router.route(&eid("dtn://a/"), &eid("dtn://c/"), 1_000, DtnTime(0)).unwrap();
        assert_eq!(r, PlannedRoute { first_contact: 2, arrival: DtnTime(2), hops: 1 });
    }

    /// A few thousand contacts among 50 nodes: Dijkstra's arrival times match a brute-force relaxation over
    /// all contacts until nothing improves.
    #[test]
    fn larger_plans_match_brute_force() {
        let mut contacts = Vec::new();
        for k in 0..4_000u64 {
            let from = k % 50;
            let to = (from + 1 + (k / 50 * 13) % 49) % 50;
            contacts.push(PlannedContact {
                from: Eid::ipn(from + 1, 0),
                to: Eid::ipn(to + 1, 0),
                start: DtnTime(k * 1_000),
                end: DtnTime(k * 1_000 + 3_000 + (k % 7) * 1_000),
                rate: 1_000 + (k % 5) * 1_000,
                owlt_ms: k % 11,
            });
        }
        let plan = ContactPlan { contacts, endpoint_nodes: vec![] };
        let router = ContactPlanRouter::new(plan.clone());
        let size = 2_500;
        let start = DtnTime(7_000);
        // Brute force: earliest arrival at every node.
        let mut best: BTreeMap<Eid, u64> = BTreeMap::new();
        best.insert(Eid::ipn(1, 0), start.0);
        loop {
            let mut changed = false;
            for c in &plan.contacts {
                let Some(&t) = best.get(&c.from) else { continue };
                if let Some(a) = arrival_over(c, t, size)
                    && best.get(&c.to).is_none_or(|&b| a < b)
                {
                    best.insert(c.to.clone(), a);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut found = 0;
        for dest in 2..=50u64 {
            let r = router.route(&Eid::ipn(1, 0), &Eid::ipn(dest, 1), size, start);
            assert_eq!(r.map(|r| r.arrival.0), best.get(&Eid::ipn(dest, 0)).copied(), "ipn:{dest}.0");
            if let Some(r) = r {
                assert_eq!(router.plan().contacts[r.first_contact].from, Eid::ipn(1, 0));
                found += 1;
            }
        }
        assert!(found > 40, "only {found} destinations reachable");
    }
}
