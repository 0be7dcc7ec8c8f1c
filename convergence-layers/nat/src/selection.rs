//! Choosing STUN servers among the candidates the DHT announced, without I/O: the caller offers what a
//! lookup returned, asks which candidates are due for a Binding request, reports the results, and reads
//! the selection. Time is passed in; nothing here reads a clock.
//!
//! Rules (docs/nat.md has the reasoning):
//! * an announcement is only a rumour: a candidate is selectable only after it answered a Binding request,
//!   and only while its latest check succeeded;
//! * addresses a remote announcer should never name (loopback, private, link-local, multicast, port 0)
//!   are refused unless the configuration allows them (tests on loopback, closed networks);
//! * among verified candidates, diversity comes first (a different /16, else a different /24, than those
//!   already chosen; /32 and /48 for IPv6), then a clean RTT sample (answer to the first copy), then
//!   lower RTT; candidates slower than `max_rtt` are never chosen; `keep` are kept (default 3);
//! * verified candidates are checked again every `reverify_every`; failed ones are retried after
//!   `retry_failed_after`, and forgotten when the DHT has not named them for `forget_after`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::client::{Binding, BindingError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectionConfig {
    /// How many servers to keep (two are needed to detect a symmetric NAT; a third survives one loss).
    pub keep: usize,
    pub reverify_every: Duration,
    pub retry_failed_after: Duration,
    pub forget_after: Duration,
    pub max_rtt: Duration,
    /// Bound on the candidates tracked, whatever the DHT returns.
    pub max_candidates: usize,
    /// Accept loopback and private addresses (loopback tests, closed networks).
    pub allow_private: bool,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            keep: 3,
            reverify_every: Duration::from_secs(5 * 60),
            retry_failed_after: Duration::from_secs(30 * 60),
            forget_after: Duration::from_secs(2 * 60 * 60),
            max_rtt: Duration::from_secs(2),
            max_candidates: 64,
            allow_private: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Untried,
    Verified { rtt: Duration, clean: bool, mapped: SocketAddr, at: Instant },
    Failed { at: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    last_offered: Instant,
    state: State,
    /// A check is under way; not due again until it is reported.
    in_flight: bool,
}

/// A chosen STUN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub server: SocketAddr,
    pub rtt: Duration,
    /// Our mapping as this server last saw it.
    pub mapped: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Selection {
    cfg: SelectionConfig,
    candidates: HashMap<SocketAddr, Candidate>,
}

/// Would a sane announcer name this address? (Remote DHT nodes can put any address in a `get_peers`
/// answer; without this filter they could make us send requests into our own LAN.)
pub fn acceptable(addr: SocketAddr, allow_private: bool) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let ip = addr.ip().to_canonical();
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if allow_private {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT space: not publicly reachable by definition.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || (s[0] & 0xFE00) == 0xFC00
                || (s[0] & 0xFFC0) == 0xFE80
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// The wide and the narrow network prefix of an address: /16 and /24 for IPv4, /32 and /48 for IPv6.
fn prefixes(ip: IpAddr) -> (u64, u64) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let n = u32::from(v4) as u64;
            (n >> 16, n >> 8)
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            ((n >> 96) as u64 | 1 << 63, (n >> 80) as u64 | 1 << 63)
        }
    }
}

/// 2: a different wide prefix than every chosen server; 1: a different narrow prefix; 0: neither.
fn diversity(ip: IpAddr, chosen: &[Selected]) -> u8 {
    let (w, n) = prefixes(ip);
    if chosen.iter().all(|c| prefixes(c.server.ip()).0 != w) {
        2
    } else if chosen.iter().all(|c| prefixes(c.server.ip()).1 != n) {
        1
    } else {
        0
    }
}

impl Selection {
    pub fn new(cfg: SelectionConfig) -> Self {
        Selection { cfg, candidates: HashMap::new() }
    }

    pub fn config(&self) -> &SelectionConfig {
        &self.cfg
    }

    /// Takes the addresses a DHT lookup returned. Returns how many were new.
    pub fn offer(&mut self, addrs: impl IntoIterator<Item = SocketAddr>, now: Instant) -> usize {
        let mut new = 0;
        for a in addrs {
            let a = SocketAddr::new(a.ip().to_canonical(), a.port());
            if !acceptable(a, self.cfg.allow_private) {
                continue;
            }
            if let Some(c) = self.candidates.get_mut(&a) {
                c.last_offered = now;
                continue;
            }
            if self.candidates.len() >= self.cfg.max_candidates && !self.evict_one() {
                continue;
            }
            self.candidates.insert(a, Candidate { last_offered: now, state: State::Untried, in_flight: false });
            new += 1;
        }
        new
    }

    /// Makes room by dropping the failed candidate that failed longest ago, if any.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .candidates
            .iter()
            .filter_map(|(a, c)| match c.state {
                State::Failed { at } if !c.in_flight => Some((at, *a)),
                _ => None,
            })
            .min();
        match victim {
            Some((_, a)) => self.candidates.remove(&a).is_some(),
            None => false,
        }
    }

    /// Candidates to check now, at most `limit`, most useful first: re-checks of verified servers, then
    /// untried ones, then retries of failed ones. They count as in flight until [`Self::record`].
    pub fn due(&mut self, now: Instant, limit: usize) -> Vec<SocketAddr> {
        let cfg = self.cfg;
        let mut due: Vec<(u8, SocketAddr)> = self
            .candidates
            .iter()
            .filter(|(_, c)| !c.in_flight)
            .filter_map(|(a, c)| match c.state {
                State::Verified { at, .. } if now.saturating_duration_since(at) >= cfg.reverify_every => Some((0, *a)),
                State::Untried => Some((1, *a)),
                State::Failed { at } if now.saturating_duration_since(at) >= cfg.retry_failed_after => Some((2, *a)),
                _ => None,
            })
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, a) in &due {
            if let Some(c) = self.candidates.get_mut(a) {
                c.in_flight = true;
            }
        }
        due.into_iter().map(|(_, a)| a).collect()
    }

    /// Reports the outcome of a check of `server`.
    pub fn record(&mut self, server: SocketAddr, result: &Result<Binding, BindingError>, now: Instant) {
        let server = SocketAddr::new(server.ip().to_canonical(), server.port());
        let Some(c) = self.candidates.get_mut(&server) else { return };
        c.in_flight = false;
        c.state = match result {
            Ok(b) => State::Verified { rtt: b.rtt, clean: b.transmissions == 1, mapped: b.mapped, at: now },
            Err(_) => State::Failed { at: now },
        };
    }

    /// Forgets failed candidates the DHT stopped naming.
    pub fn expire(&mut self, now: Instant) {
        let forget = self.cfg.forget_after;
        self.candidates.retain(|_, c| {
            c.in_flight
                || matches!(c.state, State::Verified { .. })
                || now.saturating_duration_since(c.last_offered) < forget
        });
    }

    /// The chosen servers, best first.
    pub fn selected(&self) -> Vec<Selected> {
        let mut pool: Vec<(SocketAddr, Duration, bool, SocketAddr)> = self
            .candidates
            .iter()
            .filter_map(|(a, c)| match c.state {
                State::Verified { rtt, clean, mapped, .. } if rtt <= self.cfg.max_rtt => Some((*a, rtt, clean, mapped)),
                _ => None,
            })
            .collect();
        let mut chosen: Vec<Selected> = Vec::new();
        while chosen.len() < self.cfg.keep && !pool.is_empty() {
            let best = pool
                .iter()
                .enumerate()
                .max_by(|(_, x), (_, y)| {
                    let kx = (diversity(x.0.ip(), &chosen), x.2);
                    let ky = (diversity(y.0.ip(), &chosen), y.2);
                    kx.cmp(&ky).then(y.1.cmp(&x.1)).then(y.0.cmp(&x.0))
                })
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let (server, rtt, _, mapped) = pool.swap_remove(i);
            chosen.push(Selected { server, rtt, mapped });
        }
        chosen
    }

    /// How many candidates are tracked (any state).
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}

/// What two or more STUN servers tell about our NAT's mapping (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingBehaviour {
    /// No answer yet.
    Unknown,
    /// One server (or several on one endpoint) answered: the mapping is known but not yet confirmed
    /// independent of the destination.
    Unconfirmed(SocketAddr),
    /// Every server saw our local address itself: no NAT on the path.
    Public(SocketAddr),
    /// Servers on different endpoints saw the same mapping: hole punching can work.
    EndpointIndependent(SocketAddr),
    /// Servers on different endpoints saw different mappings ("symmetric" NAT): the address we would
    /// publish is not the one a peer's packets would reach, so punching will not work; relay instead.
    EndpointDependent,
}

/// Classifies our mapping from the answers of several servers to requests sent from the same socket.
/// `local` is the socket's own address, if known (it tells a public node from a NATed one).
pub fn classify(local: Option<SocketAddr>, answers: &[Binding]) -> MappingBehaviour {
    let Some(first) = answers.first() else { return MappingBehaviour::Unknown };
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let mapped = canon(first.mapped);
    if answers.iter().any(|b| canon(b.mapped) != mapped) {
        return MappingBehaviour::EndpointDependent;
    }
    if local.map(canon) == Some(mapped) {
        return MappingBehaviour::Public(mapped);
    }
    let mut servers: Vec<SocketAddr> = answers.iter().map(|b| canon(b.server)).collect();
    servers.sort();
    servers.dedup();
    if servers.len() >= 2 {
        MappingBehaviour::EndpointIndependent(mapped)
    } else {
        MappingBehaviour::Unconfirmed(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ok(server: &str, rtt_ms: u64, transmissions: u32) -> Result<Binding, BindingError> {
        Ok(Binding {
            server: a(server),
            mapped: a("203.0.113.9:4000"),
            rtt: Duration::from_millis(rtt_ms),
            transmissions,
            identity: None,
        })
    }

    fn verify_all(sel: &mut Selection, now: Instant, rtts: &[(&str, u64)]) {
        let due = sel.due(now, 100);
        for (s, r) in rtts {
            assert!(due.contains(&a(s)), "{s} due");
            sel.record(a(s), &ok(s, *r, 1), now);
        }
    }

    #[test]
    fn unverified_announcements_are_never_selected() {
        let now = Instant::now();
        let mut sel = Selection::new(SelectionConfig::default());
        assert_eq!(sel.offer([a("198.51.1.1:3478"), a("192.0.44.2:3478")], now), 2);
        assert!(sel.selected().is_empty(), "offered is not verified");
        let due = sel.due(now, 10);
        assert_eq!(due.len(), 2);
        assert!(sel.due(now, 10).is_empty(), "checks in flight are not handed out twice");
        sel.record(a("198.51.1.1:3478"), &Err(BindingError::Timeout), now);
        sel.record(a("192.0.44.2:3478"), &ok("192.0.44.2:3478", 40, 1), now);
        let chosen = sel.selected();
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].server, a("192.0.44.2:3478"));
    }

    #[test]
    fn a_failed_recheck_drops_the_server_at_once() {
        let t0 = Instant::now();
        let mut sel = Selection::new(SelectionConfig::default());
        sel.offer([a("192.0.44.2:3478")], t0);
        verify_all(&mut sel, t0, &[("192.0.44.2:3478", 30)]);
        assert_eq!(sel.selected().len(), 1);
        assert!(sel.due(t0 + Duration::from_secs(60), 10).is_empty(), "not due before reverify_every");
        let t1 = t0 + Duration::from_secs(5 * 60);
        assert_eq!(sel.due(t1, 10), vec![a("192.0.44.2:3478")]);
        assert_eq!(sel.selected().len(), 1, "still selected while the re-check runs");
        sel.record(a("192.0.44.2:3478"), &Err(BindingError::Timeout), t1);
        assert!(sel.selected().is_empty());
        assert!(sel.due(t1 + Duration::from_secs(60), 10).is_empty(), "failed ones wait before a retry");
        assert_eq!(sel.due(t1 + Duration::from_secs(30 * 60), 10).len(), 1);
    }

    #[test]
    fn diversity_beats_a_slightly_lower_rtt_and_rtt_orders_the_rest() {
        let now = Instant::now();
        let mut sel = Selection::new(SelectionConfig::default());
        let servers = [
            ("198.51.1.1:3478", 10u64), // best RTT
            ("198.51.1.2:3478", 11),    // same /24 as the best
            ("198.51.7.1:3478", 12),    // same /16, other /24
            ("192.0.44.2:3478", 50),    // other /16, slower
            ("192.0.45.2:3478", 5000),  // other /16 but too slow
        ];
        sel.offer(servers.iter().map(|(s, _)| a(s)), now);
        verify_all(&mut sel, now, &servers);
        let chosen: Vec<SocketAddr> = sel.selected().iter().map(|s| s.server).collect();
        assert_eq!(chosen, vec![a("198.51.1.1:3478"), a("192.0.44.2:3478"), a("198.51.7.1:3478")]);
    }

    #[test]
    fn clean_rtt_samples_are_preferred() {
        let now = Instant::now();
        let mut sel = Selection::new(SelectionConfig { keep: 1, ..SelectionConfig::default() });
        sel.offer([a("198.51.1.1:1"), a("192.0.44.2:1")], now);
        sel.due(now, 10);
        sel.record(a("198.51.1.1:1"), &ok("198.51.1.1:1", 5, 3), now); // answer to a retransmission
        sel.record(a("192.0.44.2:1"), &ok("192.0.44.2:1", 60, 1), now);
        assert_eq!(sel.selected()[0].server, a("192.0.44.2:1"));
    }

    #[test]
    fn hostile_addresses_are_refused_unless_allowed() {
        let now = Instant::now();
        let mut sel = Selection::new(SelectionConfig::default());
        let bad = ["127.0.0.1:53", "10.1.2.3:22", "192.168.1.1:80", "169.254.1.1:1", "224.0.0.1:5", "0.0.0.0:1"];
        let bad2 = ["100.64.0.1:3478", "8.8.8.8:0", "[::1]:1", "[fe80::1]:1", "[fd00::1]:1", "[::ffff:10.0.0.1]:1"];
        assert_eq!(sel.offer(bad.iter().chain(&bad2).map(|s| a(s)), now), 0);
        assert!(sel.is_empty());
        let mut open = Selection::new(SelectionConfig { allow_private: true, ..SelectionConfig::default() });
        assert_eq!(open.offer([a("127.0.0.1:53"), a("0.0.0.0:1"), a("127.0.0.1:0")], now), 1);
    }

    #[test]
    fn candidate_count_is_bounded_and_failed_ones_make_room() {
        let now = Instant::now();
        let cfg = SelectionConfig { max_candidates: 4, ..SelectionConfig::default() };
        let mut sel = Selection::new(cfg);
        let addrs: Vec<SocketAddr> = (1..=10).map(|i| a(&format!("198.51.{i}.1:3478"))).collect();
        assert_eq!(sel.offer(addrs.clone(), now), 4);
        assert_eq!(sel.len(), 4);
        for d in sel.due(now, 10) {
            sel.record(d, &Err(BindingError::Timeout), now);
        }
        assert_eq!(sel.offer(addrs[4..6].to_vec(), now), 2, "failed candidates are evicted for new ones");
        assert_eq!(sel.len(), 4);
        sel.expire(now + Duration::from_secs(3 * 3600));
        assert!(sel.is_empty(), "failed and no longer announced: forgotten");
    }

    #[test]
    fn classify_mappings() {
        let b = |server: &str, mapped: &str| Binding {
            server: a(server),
            mapped: a(mapped),
            rtt: Duration::from_millis(1),
            transmissions: 1,
            identity: None,
        };
        assert_eq!(classify(None, &[]), MappingBehaviour::Unknown);
        let one = [b("198.51.1.1:3478", "203.0.113.9:4000")];
        assert_eq!(classify(None, &one), MappingBehaviour::Unconfirmed(a("203.0.113.9:4000")));
        let two = [b("198.51.1.1:3478", "203.0.113.9:4000"), b("192.0.44.2:3478", "203.0.113.9:4000")];
        assert_eq!(
            classify(Some(a("10.0.0.5:4000")), &two),
            MappingBehaviour::EndpointIndependent(a("203.0.113.9:4000"))
        );
        let sym = [b("198.51.1.1:3478", "203.0.113.9:4000"), b("192.0.44.2:3478", "203.0.113.9:4711")];
        assert_eq!(classify(None, &sym), MappingBehaviour::EndpointDependent);
        let public = [b("198.51.1.1:3478", "203.0.113.9:4000")];
        assert_eq!(classify(Some(a("203.0.113.9:4000")), &public), MappingBehaviour::Public(a("203.0.113.9:4000")));
    }
}
