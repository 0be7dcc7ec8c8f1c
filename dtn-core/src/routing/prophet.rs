//! PRoPHET: probabilistic routing using history of encounters and transitivity (RFC 6693).
//!
//! Each node keeps a *delivery predictability* P(self, d) in [0, 1] for every destination d it has learned
//! about: high for nodes it meets often, decaying while it does not meet them, and inherited at a discount
//! from the nodes it meets. Two nodes in contact exchange their tables (in our hello) and a bundle is
//! copied to the peer when the peer is the likelier carrier (GRTR). Keys are destination EIDs: node IDs,
//! plus group and collection endpoints, which a node that registered them announces with P = 1 so that the
//! others learn a route to "a node that takes this endpoint".
//!
//! The three update rules, from RFC 6693 §2.1.2 ("Delivery Predictability Calculation"):
//!
//! * Encounter (Eq. 1): `P(a,b) = P(a,b)_old + (1 − δ − P(a,b)_old) × P_encounter`, where
//!   `P_encounter = P_encounter_max × intvl / I_typ` if the previous encounter was `intvl < I_typ` ago,
//!   and `P_encounter_max` otherwise (§2.1.1, so that a link that flaps does not count as many
//!   encounters). A node met for the first time, or whose predictability had fallen below
//!   `P_first_threshold`, gets `P(a,b) = P_encounter_first` instead.
//! * Aging (Eq. 2): `P(a,b) = P(a,b)_old × γ^K`, K the number of whole time units since the last aging.
//! * Transitivity (Eq. 3): `P(a,c) = max(P(a,c)_old, P(a,b) × P(b,c) × β)` for every entry c of the table
//!   of the peer b.
//!
//! Predictabilities below `P_first_threshold` are removed (§2.1.3: removal of low predictabilities), which
//! keeps the table, and so the hello, to the destinations that matter; the next encounter of a removed
//! node counts as a first one.

use std::collections::BTreeMap;

use crate::bpv7::{DtnTime, Eid};
use crate::routing::{Decision, Local, PeerView, RoutingAgent, RoutingError};
use crate::store::BundleMeta;

/// Most entries a table may hold, ours or a peer's: bounds memory and the work a peer can cause with one
/// hello. Past it, our own table drops its lowest predictabilities.
pub const MAX_ENTRIES: usize = 65_536;

/// Version byte that starts our hello data.
const HELLO_VERSION: u8 = 1;
/// Version byte that starts saved state.
const STATE_VERSION: u8 = 1;
/// The smallest encoded entry: a 3-byte EID (`dtn:none`) and 8 bytes of value. Used to refuse counts that
/// the data cannot possibly hold before looking at any entry.
const MIN_ENTRY_LEN: usize = 3 + 8;

/// PRoPHET parameters. The probabilities default to the values RFC 6693 §3.3 ("Routing Algorithm")
/// recommends; the two time parameters are deployment choices the RFC leaves open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProphetParams {
    /// `P_encounter_max` (RFC 6693 §2.1.2, default 0.7): the encounter scaling factor for encounters at
    /// least `I_typ` apart.
    pub p_encounter_max: f64,
    /// `P_encounter_first` (RFC 6693 §2.1.2, default 0.5): the predictability given to a node met for the
    /// first time.
    pub p_encounter_first: f64,
    /// `P_first_threshold` (RFC 6693 §2.1.3, default 0.1): predictabilities below it are removed, and a
    /// removed node's next encounter counts as a first one. Transitive values below it are not recorded.
    pub p_first_threshold: f64,
    /// `β` (RFC 6693 §2.1.2, default 0.9): how much of a peer's predictability is inherited by
    /// transitivity.
    pub beta: f64,
    /// `γ` (RFC 6693 §2.1.2, default 0.999): the aging factor per time unit.
    pub gamma: f64,
    /// `δ` (RFC 6693 §2.1.2, default 0.01): keeps encounter-driven predictabilities below 1 − δ, so that 1
    /// stays reserved for a node's own endpoints.
    pub delta: f64,
    /// `I_typ` in milliseconds (RFC 6693 §2.1.1): the typical time between encounters; encounters closer
    /// together raise the predictability proportionally less. The RFC gives no default. Ours, 10 minutes,
    /// damps Wi-Fi links that drop and come back within minutes without discounting real visits (vans,
    /// walkers), which are further apart. 0 disables the damping.
    pub i_typ_ms: u64,
    /// The aging time unit in milliseconds (K in Eq. 2 counts these). The RFC leaves it to the deployment.
    /// Ours, one minute, with γ = 0.999 halves a predictability in about 11.5 hours and takes a first
    /// encounter's 0.5 below 0.1 in about 27 hours: a node not seen for more than a day is forgotten.
    /// 0 disables aging.
    pub time_unit_ms: u64,
}

impl Default for ProphetParams {
    fn default() -> Self {
        ProphetParams {
            p_encounter_max: 0.7,
            p_encounter_first: 0.5,
            p_first_threshold: 0.1,
            beta: 0.9,
            gamma: 0.999,
            delta: 0.01,
            i_typ_ms: 10 * 60 * 1000,
            time_unit_ms: 60 * 1000,
        }
    }
}

/// The PRoPHET agent: our delivery predictabilities, and the tables of the peers in contact.
#[derive(Debug, Clone)]
pub struct Prophet {
    params: ProphetParams,
    /// P(self, d) by destination EID. Never holds our own node or endpoints (those are 1 by definition).
    table: BTreeMap<Eid, f64>,
    /// When each node (by node ID) was last encountered, for `P_encounter`'s interval.
    last_encounter: BTreeMap<Eid, DtnTime>,
    /// Up to when aging has been applied; `None` until the first event with a time.
    aged_until: Option<DtnTime>,
    /// The last table each peer in contact sent, by peer node ID; dropped when the contact goes down.
    peers: BTreeMap<Eid, BTreeMap<Eid, f64>>,
}

impl Prophet {
    /// A node that has met no one yet.
    pub fn new(params: ProphetParams) -> Self {
        Prophet {
            params,
            table: BTreeMap::new(),
            last_encounter: BTreeMap::new(),
            aged_until: None,
            peers: BTreeMap::new(),
        }
    }

    /// The parameters in use.
    pub fn params(&self) -> &ProphetParams {
        &self.params
    }

    /// Our delivery predictability for `destination` as last updated (0 if unknown): the entry for the EID
    /// itself, or else for its node ID, since a node delivers every singleton endpoint it hosts.
    pub fn predictability(&self, destination: &Eid) -> f64 {
        lookup(&self.table, destination)
    }

    /// What `peer` (a node ID) told us its predictability for `destination` is, by the same lookup; 0 if
    /// it sent no table or the table has no entry.
    pub fn peer_predictability(&self, peer: &Eid, destination: &Eid) -> f64 {
        self.peers.get(&peer.node_id()).map_or(0.0, |t| lookup(t, destination))
    }

    /// Our table, for inspection.
    pub fn table(&self) -> &BTreeMap<Eid, f64> {
        &self.table
    }

    /// Applies Eq. 2 for the whole time units elapsed since the last aging, and removes what fell below
    /// the threshold. The remainder of a partial unit carries over to the next call, so aging in many small
    /// steps gives the same result as in one.
    pub fn age(&mut self, now: DtnTime) {
        let Some(since) = self.aged_until else {
            self.aged_until = Some(now);
            return;
        };
        let unit = self.params.time_unit_ms;
        if unit == 0 || now <= since {
            return;
        }
        let k = (now.0 - since.0) / unit;
        if k == 0 {
            return;
        }
        let factor = self.params.gamma.powf(k as f64);
        for p in self.table.values_mut() {
            *p *= factor;
        }
        self.aged_until = Some(DtnTime(since.0 + k * unit));
        self.prune();
    }

    /// `P_encounter` for meeting `node` (a node ID) at `now` (RFC 6693 §2.1.2): scaled down linearly if the
    /// previous encounter was less than `I_typ` ago. Without a previous encounter, or without a clock
    /// (time 0), the interval is unknown and the full `P_encounter_max` applies.
    fn p_encounter(&self, node: &Eid, now: DtnTime) -> f64 {
        let max = self.params.p_encounter_max;
        let i_typ = self.params.i_typ_ms;
        match self.last_encounter.get(node) {
            Some(&last) if i_typ > 0 && now.0 != 0 => {
                let intvl = now.0.saturating_sub(last.0);
                if intvl >= i_typ { max } else { max * intvl as f64 / i_typ as f64 }
            }
            _ => max,
        }
    }

    /// Eq. 1 for an encounter with `peer` (any of its EIDs; its node ID is used) at `now`. Call
    /// [`age`](Self::age) first, as RFC 6693 does, so the old value is current.
    pub fn encounter(&mut self, peer: &Eid, now: DtnTime) {
        let node = peer.node_id();
        let p = &self.params;
        let new = match self.table.get(&node) {
            Some(&old) if old >= p.p_first_threshold => old + (1.0 - p.delta - old) * self.p_encounter(&node, now),
            _ => p.p_encounter_first,
        };
        self.table.insert(node.clone(), new);
        self.last_encounter.insert(node, now);
    }

    /// Eq. 3 against the table `peer_table` of `peer`, which we must have encountered (else P(a,b) = 0 and
    /// nothing is inherited). Entries about the peer's own node and singleton endpoints are skipped (the
    /// encounter itself covers them), and so are entries about us.
    fn transitivity(&mut self, local: &Local<'_>, peer: &Eid, peer_table: &BTreeMap<Eid, f64>) {
        let b = peer.node_id();
        let p_ab = self.table.get(&b).copied().unwrap_or(0.0);
        if p_ab <= 0.0 {
            return;
        }
        let me = local.node.node_id();
        for (c, &p_bc) in peer_table {
            let c_node = c.node_id();
            if c_node == b || c_node == me || local.endpoints.contains(c) {
                continue;
            }
            let via_b = p_ab * p_bc * self.params.beta;
            if via_b < self.params.p_first_threshold {
                continue;
            }
            let entry = self.table.entry(c.clone()).or_insert(0.0);
            if via_b > *entry {
                *entry = via_b;
            }
        }
        cap_lowest(&mut self.table, MAX_ENTRIES);
        self.last_encounter.retain(|k, _| self.table.contains_key(k));
    }

    /// Removes predictabilities below `P_first_threshold`, and the encounter times of removed nodes.
    fn prune(&mut self) {
        let threshold = self.params.p_first_threshold;
        self.table.retain(|_, p| *p >= threshold);
        self.last_encounter.retain(|k, _| self.table.contains_key(k));
    }

    /// The table we announce: ours, plus our node and endpoints at 1. If that exceeds [`MAX_ENTRIES`] the
    /// lowest predictabilities are left out, never our own entries.
    fn announced(&self, local: &Local<'_>) -> BTreeMap<Eid, f64> {
        let mut out = self.table.clone();
        cap_lowest(&mut out, MAX_ENTRIES.saturating_sub(local.endpoints.len() + 1));
        out.insert(local.node.node_id(), 1.0);
        for e in local.endpoints {
            out.insert(e.clone(), 1.0);
        }
        out
    }
}

/// Exact entry, else the node ID's entry, else 0.
fn lookup(table: &BTreeMap<Eid, f64>, destination: &Eid) -> f64 {
    if let Some(&p) = table.get(destination) {
        return p;
    }
    table.get(&destination.node_id()).copied().unwrap_or(0.0)
}

/// Drops the lowest values until at most `cap` remain; among equal values the greatest EIDs go first, so
/// the result depends only on the table.
fn cap_lowest(table: &mut BTreeMap<Eid, f64>, cap: usize) {
    if table.len() <= cap {
        return;
    }
    let mut order: Vec<(&Eid, f64)> = table.iter().map(|(k, &v)| (k, v)).collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)));
    let drop: Vec<Eid> = order[..table.len() - cap].iter().map(|(k, _)| (*k).clone()).collect();
    for k in drop {
        table.remove(&k);
    }
}

/// Appends one (EID, f64) entry: the EID's CBOR, then the value's IEEE 754 bits, big-endian.
fn put_entry(out: &mut Vec<u8>, eid: &Eid, p: f64) {
    eid.encode(out);
    out.extend_from_slice(&p.to_bits().to_be_bytes());
}

/// Encodes a table as our hello data: version, entry count (u32, big-endian), then the entries.
fn encode_table(table: &BTreeMap<Eid, f64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + table.len() * 24);
    out.push(HELLO_VERSION);
    out.extend_from_slice(&(table.len() as u32).to_be_bytes());
    for (eid, &p) in table {
        put_entry(&mut out, eid, p);
    }
    out
}

/// A bounds-checked reader over untrusted bytes: every read either succeeds or says what was missing.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(format!("truncated {what} at byte {}", self.pos));
        };
        let mut b = [0u8; N];
        b.copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        self.bytes::<1>(what).map(|b| b[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.bytes::<4>(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.bytes::<8>(what).map(u64::from_be_bytes)
    }

    fn eid(&mut self) -> Result<Eid, String> {
        let (eid, used) =
            Eid::decode_prefix(&self.data[self.pos..]).map_err(|e| format!("bad EID at byte {}: {e}", self.pos))?;
        self.pos += used;
        Ok(eid)
    }

    /// A predictability: finite and within [0, 1], or the data is not ours to trust.
    fn probability(&mut self) -> Result<f64, String> {
        let at = self.pos;
        let p = f64::from_bits(self.u64("predictability")?);
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("predictability {p} at byte {at} is not within [0, 1]"));
        }
        Ok(p)
    }

    /// An entry count, refused if above [`MAX_ENTRIES`] or more than the remaining bytes could hold.
    fn count(&mut self, entry_len: usize) -> Result<usize, String> {
        let n = self.u32("entry count")? as usize;
        if n > MAX_ENTRIES {
            return Err(format!("{n} entries, more than the limit of {MAX_ENTRIES}"));
        }
        if n > self.remaining() / entry_len {
            return Err(format!("{n} entries cannot fit in the {} bytes left", self.remaining()));
        }
        Ok(n)
    }

    fn finish(&self) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(format!("{n} trailing bytes")),
        }
    }
}

/// Decodes a table as [`encode_table`] writes it. Null EIDs are refused; a duplicated EID keeps its highest
/// value.
fn decode_table(data: &[u8]) -> Result<BTreeMap<Eid, f64>, String> {
    let mut r = Reader::new(data);
    let version = r.u8("version")?;
    if version != HELLO_VERSION {
        return Err(format!("unknown PRoPHET hello version {version}"));
    }
    let n = r.count(MIN_ENTRY_LEN)?;
    let mut table = BTreeMap::new();
    for _ in 0..n {
        let eid = r.eid()?;
        if eid.is_null() {
            return Err("entry for the null endpoint".into());
        }
        let p = r.probability()?;
        let entry = table.entry(eid).or_insert(p);
        *entry = entry.max(p);
    }
    r.finish()?;
    Ok(table)
}

impl RoutingAgent for Prophet {
    fn name(&self) -> &'static str {
        "prophet"
    }

    fn contact_up(&mut self, _local: &Local<'_>, peer: &PeerView<'_>, now: DtnTime) {
        self.age(now);
        self.encounter(peer.node, now);
    }

    fn contact_down(&mut self, peer: &Eid, _now: DtnTime) {
        self.peers.remove(&peer.node_id());
    }

    fn hello(&mut self, local: &Local<'_>, now: DtnTime) -> Vec<u8> {
        self.age(now);
        encode_table(&self.announced(local))
    }

    /// Stores the peer's table and applies transitivity. Empty data is a peer that does not run PRoPHET: it
    /// knows no routes, which is not an error.
    fn peer_hello(&mut self, local: &Local<'_>, peer: &Eid, data: &[u8], now: DtnTime) -> Result<(), RoutingError> {
        let table =
            if data.is_empty() { BTreeMap::new() } else { decode_table(data).map_err(RoutingError::Malformed)? };
        self.age(now);
        self.transitivity(local, peer, &table);
        self.peers.insert(peer.node_id(), table);
        Ok(())
    }

    /// GRTR (RFC 6693 §3.6, "Forwarding Strategies"): replicate to the peer only if
    /// P(peer, destination) > P(self, destination). A node's own node and endpoints count as 1 for it; a
    /// peer that sent no table counts as 0, so it gets nothing (the engine still delivers to a peer that
    /// is the destination).
    fn decide(&mut self, local: &Local<'_>, bundle: &BundleMeta, peer: &PeerView<'_>, _now: DtnTime) -> Decision {
        let dest = &bundle.destination;
        let dest_node = dest.node_id();
        let p_self = if dest_node == local.node.node_id() || local.endpoints.contains(dest) {
            1.0
        } else {
            self.predictability(dest)
        };
        let p_peer = if dest_node == peer.node.node_id() || peer.endpoints.contains(dest) {
            1.0
        } else {
            self.peer_predictability(peer.node, dest)
        };
        if p_peer > p_self { Decision::Replicate } else { Decision::Skip }
    }

    /// Version, aging point, our table, the encounter times. Peers' tables are not kept: contacts do not
    /// survive a restart.
    fn save(&self) -> Option<Vec<u8>> {
        let mut out = vec![STATE_VERSION];
        match self.aged_until {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.0.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.table.len() as u32).to_be_bytes());
        for (eid, &p) in &self.table {
            put_entry(&mut out, eid, p);
        }
        out.extend_from_slice(&(self.last_encounter.len() as u32).to_be_bytes());
        for (eid, t) in &self.last_encounter {
            eid.encode(&mut out);
            out.extend_from_slice(&t.0.to_be_bytes());
        }
        Some(out)
    }

    /// Restores what [`save`](Self::save) wrote. On any error the current state is left as it was.
    fn load(&mut self, bytes: &[u8]) -> Result<(), RoutingError> {
        let mut r = Reader::new(bytes);
        let parse = |r: &mut Reader<'_>| -> Result<_, String> {
            let version = r.u8("version")?;
            if version != STATE_VERSION {
                return Err(format!("unknown PRoPHET state version {version}"));
            }
            let aged_until = match r.u8("aging flag")? {
                0 => None,
                1 => Some(DtnTime(r.u64("aging time")?)),
                f => return Err(format!("bad aging flag {f}")),
            };
            let mut table = BTreeMap::new();
            for _ in 0..r.count(MIN_ENTRY_LEN)? {
                let eid = r.eid()?;
                table.insert(eid, r.probability()?);
            }
            let mut last_encounter = BTreeMap::new();
            for _ in 0..r.count(3 + 8)? {
                let eid = r.eid()?;
                last_encounter.insert(eid, DtnTime(r.u64("encounter time")?));
            }
            r.finish()?;
            Ok((aged_until, table, last_encounter))
        };
        let (aged_until, table, last_encounter) = parse(&mut r).map_err(RoutingError::State)?;
        self.aged_until = aged_until;
        self.table = table;
        self.last_encounter = last_encounter;
        self.prune();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::LinkInfo;
    use crate::routing::test_support::{bundle, eid, local, peer};

    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    /// Meets `who` at `now`, as the engine would: contact up, then the peer's hello.
    fn meet(agent: &mut Prophet, me: &Eid, who: &Eid, their_hello: &[u8], now: u64) {
        let link = LinkInfo::default();
        agent.contact_up(&local(me), &peer(who, &link), DtnTime(now));
        agent.peer_hello(&local(me), who, their_hello, DtnTime(now)).unwrap();
    }

    fn hello_of(entries: &[(&str, f64)]) -> Vec<u8> {
        encode_table(&entries.iter().map(|&(e, p)| (eid(e), p)).collect())
    }

    #[test]
    fn defaults_are_rfc_6693s() {
        let p = ProphetParams::default();
        assert_eq!(
            (p.p_encounter_max, p.p_encounter_first, p.p_first_threshold, p.beta, p.gamma, p.delta),
            (0.7, 0.5, 0.1, 0.9, 0.999, 0.01)
        );
    }

    #[test]
    fn encounter_rule() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams::default());
        // First encounter: P_encounter_first.
        meet(&mut agent, &me, &b, &[], 1_000_000);
        assert_eq!(agent.predictability(&b), 0.5);
        // 600 000 ms later (= I_typ, so the full P_encounter_max): first aged by 10 units (Eq. 2), then
        // Eq. 1: 0.5 × 0.999^10 = 0.49502244010487..., + (1 − 0.01 − that) × 0.7.
        meet(&mut agent, &me, &b, &[], 1_600_000);
        assert!(close(agent.predictability(&b), 0.8415067320314622), "{}", agent.predictability(&b));
        // Any EID of the peer counts as its node.
        assert_eq!(agent.predictability(&eid("dtn://b/some/service")), agent.predictability(&b));
    }

    #[test]
    fn frequent_encounters_count_less() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        // No aging, to isolate Eq. 1.
        let params = ProphetParams { time_unit_ms: 0, ..ProphetParams::default() };
        let mut agent = Prophet::new(params);
        meet(&mut agent, &me, &b, &[], 10_000);
        // Half of I_typ later: P_encounter = 0.7 × 0.5 = 0.35; 0.5 + (0.99 − 0.5) × 0.35 = 0.6715.
        meet(&mut agent, &me, &b, &[], 10_000 + 300_000);
        assert!(close(agent.predictability(&b), 0.6715), "{}", agent.predictability(&b));
        // Immediately again (a flapping link): P_encounter = 0, no change.
        meet(&mut agent, &me, &b, &[], 10_000 + 300_000);
        assert!(close(agent.predictability(&b), 0.6715));
        // Encounters can never push P to 1 − δ or beyond.
        for i in 1..200u64 {
            meet(&mut agent, &me, &b, &[], 310_000 + i * 600_000);
        }
        let p = agent.predictability(&b);
        assert!(p > 0.98 && p <= 1.0 - 0.01, "{p}");
    }

    #[test]
    fn without_a_clock_every_encounter_counts_fully() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams::default());
        meet(&mut agent, &me, &b, &[], 0);
        meet(&mut agent, &me, &b, &[], 0);
        assert!(close(agent.predictability(&b), 0.5 + 0.49 * 0.7));
    }

    #[test]
    fn aging_multiplies_by_gamma_to_the_k() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams::default());
        meet(&mut agent, &me, &b, &[], 1_000_000);
        // 2.5 units: K = 2; the half unit carries over, and another half unit makes K = 1.
        agent.age(DtnTime(1_150_000));
        assert!(close(agent.predictability(&b), 0.5 * 0.999 * 0.999));
        agent.age(DtnTime(1_180_000));
        assert!(close(agent.predictability(&b), 0.4985014995), "{}", agent.predictability(&b));
        // Time going backwards changes nothing.
        agent.age(DtnTime(5));
        assert!(close(agent.predictability(&b), 0.4985014995));
        // Ten more units at once: × 0.999^10.
        agent.age(DtnTime(1_780_000));
        assert!(close(agent.predictability(&b), 0.4985014995 * 0.9900448802097482));
    }

    #[test]
    fn low_predictabilities_are_removed_and_start_over() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams::default());
        meet(&mut agent, &me, &b, &[], 1_000_000);
        // 0.5 × 0.999^K < 0.1 from K = 1609 units on.
        agent.age(DtnTime(1_000_000 + 1_608 * 60_000));
        assert!(agent.predictability(&b) >= 0.1);
        agent.age(DtnTime(1_000_000 + 1_609 * 60_000));
        assert_eq!(agent.predictability(&b), 0.0);
        assert!(agent.table().is_empty());
        assert!(agent.last_encounter.is_empty());
        // Met again: a first encounter.
        meet(&mut agent, &me, &b, &[], 1_000_000 + 1_700 * 60_000);
        assert_eq!(agent.predictability(&b), 0.5);
    }

    #[test]
    fn transitivity_rule() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams { time_unit_ms: 0, ..ProphetParams::default() });
        let hello = hello_of(&[
            ("dtn://b/", 1.0),
            ("dtn://b/svc", 1.0),
            ("dtn://c/", 0.8),
            ("dtn://group/~all", 1.0),
            ("dtn://weak/", 0.2),
            ("dtn://a/", 0.9),
        ]);
        meet(&mut agent, &me, &b, &hello, 1_000);
        // P(a,c) = P(a,b) × P(b,c) × β = 0.5 × 0.8 × 0.9.
        assert!(close(agent.predictability(&eid("dtn://c/")), 0.36000000000000004));
        assert!(close(agent.predictability(&eid("dtn://group/~all")), 0.45));
        // 0.5 × 0.2 × 0.9 = 0.09 is below P_first_threshold: not recorded.
        assert!(!agent.table().contains_key(&eid("dtn://weak/")));
        // Nothing about ourselves, and the peer's own endpoints are covered by its node entry.
        assert!(!agent.table().contains_key(&me));
        assert!(!agent.table().contains_key(&eid("dtn://b/svc")));
        assert_eq!(agent.predictability(&eid("dtn://b/svc")), 0.5);
        // Max: a lower transitive value does not lower an entry, a higher one raises it.
        let d = eid("dtn://d/");
        meet(&mut agent, &me, &d, &hello_of(&[("dtn://c/", 0.1)]), 2_000);
        assert!(close(agent.predictability(&eid("dtn://c/")), 0.36000000000000004));
        meet(&mut agent, &me, &d, &hello_of(&[("dtn://c/", 0.9)]), 3_000);
        // The second encounter with D, 1 s after the first (well within I_typ): P_encounter = 0.7 × 1000/600000.
        // Then C through D: P(a,d) × 0.9 × β beats the 0.36 learned through B.
        let p_ad = 0.5 + 0.49 * (0.7 * 1_000.0 / 600_000.0);
        assert!(close(agent.predictability(&d), p_ad), "{}", agent.predictability(&d));
        assert!(close(agent.predictability(&eid("dtn://c/")), p_ad * 0.9 * 0.9));
    }

    #[test]
    fn no_transitivity_without_an_encounter() {
        let me = eid("dtn://a/");
        let mut agent = Prophet::new(ProphetParams::default());
        agent.peer_hello(&local(&me), &eid("dtn://b/"), &hello_of(&[("dtn://c/", 1.0)]), DtnTime(5)).unwrap();
        assert!(agent.table().is_empty());
        // But the peer's table is there for decisions.
        assert_eq!(agent.peer_predictability(&eid("dtn://b/x"), &eid("dtn://c/")), 1.0);
    }

    #[test]
    fn hello_announces_our_table_and_endpoints() {
        let me = eid("dtn://a/");
        let endpoints = [eid("dtn://a/inbox"), eid("dtn://group/~all")];
        let l = Local { node: &me, endpoints: &endpoints };
        let mut agent = Prophet::new(ProphetParams::default());
        let link = LinkInfo::default();
        let b = eid("dtn://b/");
        agent.contact_up(&l, &peer(&b, &link), DtnTime(1_000));
        let table = decode_table(&agent.hello(&l, DtnTime(1_000))).unwrap();
        let want: BTreeMap<Eid, f64> = [
            (eid("dtn://a/"), 1.0),
            (eid("dtn://a/inbox"), 1.0),
            (eid("dtn://group/~all"), 1.0),
            (eid("dtn://b/"), 0.5),
        ]
        .into_iter()
        .collect();
        assert_eq!(table, want);
    }

    #[test]
    fn grtr_decisions() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let link = LinkInfo::default();
        let mut agent = Prophet::new(ProphetParams { time_unit_ms: 0, ..ProphetParams::default() });
        // We know C through a peer at 0.5 × 0.8 × 0.9 = 0.36.
        meet(&mut agent, &me, &eid("dtn://x/"), &hello_of(&[("dtn://c/", 0.8)]), 1_000);
        meet(
            &mut agent,
            &me,
            &b,
            &hello_of(&[("dtn://b/", 1.0), ("dtn://c/", 0.5), ("dtn://d/", 0.2), ("dtn://g/~grp", 1.0)]),
            2_000,
        );
        let l = local(&me);
        let mut ask = |dest: &str, via: &Eid| agent.decide(&l, &bundle(dest), &peer(via, &link), DtnTime(3_000));
        // 0.5 > 0.36; the singleton endpoint falls back to the node's entry.
        assert_eq!(ask("dtn://c/", &b), Decision::Replicate);
        assert_eq!(ask("dtn://c/app", &b), Decision::Replicate);
        // Our P(a,d) = 0.5 × 0.2 × 0.9 was not recorded (below threshold), so 0.2 > 0.
        assert_eq!(ask("dtn://d/app", &b), Decision::Replicate);
        // Group endpoint claimed by the peer.
        assert_eq!(ask("dtn://g/~grp", &b), Decision::Replicate);
        // Unknown to both: 0 is not greater than 0.
        assert_eq!(ask("dtn://nowhere/x", &b), Decision::Skip);
        // A peer that sent no table knows nothing.
        assert_eq!(ask("dtn://c/", &eid("dtn://stranger/")), Decision::Skip);
        // For the peer X, which told us about C at 0.8, and whose node we met at 0.5: 0.8 > 0.36.
        assert_eq!(ask("dtn://c/", &eid("dtn://x/")), Decision::Replicate);
    }

    #[test]
    fn grtr_does_not_send_what_we_deliver_better() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let link = LinkInfo::default();
        let endpoints = [eid("dtn://group/~all")];
        let l = Local { node: &me, endpoints: &endpoints };
        let mut agent = Prophet::new(ProphetParams { time_unit_ms: 0, ..ProphetParams::default() });
        meet(&mut agent, &me, &eid("dtn://c/"), &[], 1_000);
        meet(&mut agent, &me, &b, &hello_of(&[("dtn://c/", 0.5), ("dtn://group/~all", 1.0), ("dtn://a/", 0.9)]), 2_000);
        let mut ask = |dest: &str| agent.decide(&l, &bundle(dest), &peer(&b, &link), DtnTime(3_000));
        // Equal predictabilities: keep it.
        assert_eq!(ask("dtn://c/x"), Decision::Skip);
        // Our own endpoints are 1 for us.
        assert_eq!(ask("dtn://group/~all"), Decision::Skip);
        assert_eq!(ask("dtn://a/x"), Decision::Skip);
        // Contact down: the peer's table is gone.
        agent.contact_down(&b, DtnTime(4_000));
        assert_eq!(agent.peer_predictability(&b, &eid("dtn://c/")), 0.0);
    }

    #[test]
    fn malformed_hellos_are_refused() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams::default());
        let good = hello_of(&[("dtn://c/", 0.5), ("ipn:5.0", 0.25)]);
        assert!(decode_table(&good).is_ok());
        // Every truncation.
        for len in 1..good.len() {
            let r = agent.peer_hello(&local(&me), &b, &good[..len], DtnTime(1));
            assert!(matches!(r, Err(RoutingError::Malformed(_))), "prefix of {len} accepted");
        }
        // Trailing bytes.
        let mut long = good.clone();
        long.push(0);
        assert!(decode_table(&long).unwrap_err().contains("trailing"));
        // Wrong version.
        let mut v = good.clone();
        v[0] = 9;
        assert!(decode_table(&v).is_err());
        // A count larger than the limit, or than the data could hold.
        let mut huge = vec![HELLO_VERSION];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_table(&huge).unwrap_err().contains("limit"));
        let mut many = vec![HELLO_VERSION];
        many.extend_from_slice(&1000u32.to_be_bytes());
        many.extend_from_slice(&[0; 100]);
        assert!(decode_table(&many).unwrap_err().contains("cannot fit"));
        // Values that are not probabilities.
        for bad in [f64::NAN, f64::INFINITY, -0.5, 1.5] {
            let mut out = vec![HELLO_VERSION];
            out.extend_from_slice(&1u32.to_be_bytes());
            put_entry(&mut out, &eid("dtn://c/"), bad);
            assert!(decode_table(&out).is_err(), "{bad} accepted");
        }
        // A null endpoint, and a malformed EID.
        let mut out = vec![HELLO_VERSION];
        out.extend_from_slice(&1u32.to_be_bytes());
        put_entry(&mut out, &Eid::Null, 0.5);
        assert!(decode_table(&out).is_err());
        let mut out = vec![HELLO_VERSION, 0, 0, 0, 1, 0x82, 0x01, 0x63, b'x', b'y', b'z'];
        out.extend_from_slice(&0.5f64.to_bits().to_be_bytes());
        assert!(decode_table(&out).is_err());
        // Nothing of it reached the agent.
        assert!(agent.table().is_empty());
        assert_eq!(agent.peer_predictability(&b, &eid("dtn://c/")), 0.0);
        // Duplicates keep the highest value.
        let mut dup = vec![HELLO_VERSION];
        dup.extend_from_slice(&2u32.to_be_bytes());
        put_entry(&mut dup, &eid("dtn://c/"), 0.25);
        put_entry(&mut dup, &eid("dtn://c/"), 0.75);
        assert_eq!(decode_table(&dup).unwrap().get(&eid("dtn://c/")), Some(&0.75));
    }

    /// Pseudo-random garbage (a fixed linear congruential sequence) never panics the decoder.
    #[test]
    fn garbage_never_panics() {
        let me = eid("dtn://a/");
        let b = eid("dtn://b/");
        let mut agent = Prophet::new(ProphetParams::default());
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let good = hello_of(&[("dtn://c/", 0.5), ("ipn:5.0", 0.25), ("dtn://group/~x", 1.0)]);
        for round in 0..5_000 {
            let mut data = if round % 2 == 0 { good.clone() } else { vec![HELLO_VERSION, 0, 0, 0, 3] };
            let flips = 1 + round % 6;
            for _ in 0..flips {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let at = (x >> 33) as usize % (data.len() + 8);
                let byte = (x >> 17) as u8;
                if at < data.len() {
                    data[at] = byte;
                } else {
                    data.push(byte);
                }
            }
            let _ = agent.peer_hello(&local(&me), &b, &data, DtnTime(1));
            let _ = agent.load(&data);
        }
    }

    #[test]
    fn save_and_load() {
        let me = eid("dtn://a/");
        let mut agent = Prophet::new(ProphetParams::default());
        meet(&mut agent, &me, &eid("dtn://b/"), &hello_of(&[("dtn://c/", 0.8), ("ipn:7.0", 1.0)]), 1_000_000);
        agent.age(DtnTime(1_090_000));
        let saved = agent.save().unwrap();
        let mut restored = Prophet::new(ProphetParams::default());
        restored.load(&saved).unwrap();
        assert_eq!(restored.table(), agent.table());
        assert_eq!(restored.last_encounter, agent.last_encounter);
        assert_eq!(restored.aged_until, agent.aged_until);
        assert_eq!(restored.save().unwrap(), saved);
        // The aging point survives: 1.5 units after the save point means K = 1 for both.
        agent.age(DtnTime(1_150_000));
        restored.age(DtnTime(1_150_000));
        assert_eq!(restored.table(), agent.table());

        // Unreadable state is refused and changes nothing.
        let before = restored.save().unwrap();
        for bad in [&b""[..], &[9u8][..], &saved[..saved.len() - 1], &[STATE_VERSION, 2][..]] {
            assert!(matches!(restored.load(bad), Err(RoutingError::State(_))));
        }
        assert_eq!(restored.save().unwrap(), before);
        // A fresh agent saves and loads too.
        let fresh = Prophet::new(ProphetParams::default()).save().unwrap();
        restored.load(&fresh).unwrap();
        assert!(restored.table().is_empty());
    }

    #[test]
    fn own_table_is_capped() {
        let mut t: BTreeMap<Eid, f64> = (0..10u64).map(|i| (Eid::ipn(i + 1, 0), (i % 5) as f64 / 10.0)).collect();
        cap_lowest(&mut t, 5);
        let kept: Vec<u64> = t
            .keys()
            .map(|e| match e {
                Eid::Ipn(i) => i.fqnn,
                _ => unreachable!(),
            })
            .collect();
        // Values 0.4, 0.4, 0.3, 0.3 and, of the two 0.2s, the smaller EID.
        assert_eq!(kept, vec![3, 4, 5, 9, 10]);
    }
}
