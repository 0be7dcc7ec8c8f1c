//! The neighbour table: which nodes we hear, where their TCPCL is, and when they fall silent.
//!
//! Pure: driven by `(now, beacon)` and `(now)` calls, no clock or socket of its own, so every timing rule is
//! tested without sleeping. The tokio task in `service` is a thin loop around it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dtn_core::bpv7::Eid;

use crate::beacon::{Beacon, BeaconFormat, MAX_PERIOD_MS, MIN_PERIOD_MS};

/// What discovery reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A node we were not hearing is now beaconing.
    NeighbourUp { node_id: Eid, tcpcl: SocketAddr, format: BeaconFormat },
    /// A known neighbour now announces a different TCPCL endpoint (it moved or changed address).
    NeighbourChanged { node_id: Eid, tcpcl: SocketAddr, format: BeaconFormat },
    /// A neighbour has been silent for its timeout.
    NeighbourDown { node_id: Eid },
}

/// Table settings.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Our node ID: beacons carrying it are our own (looped back by the kernel) and are ignored.
    pub own_node_id: Eid,
    /// Period assumed for a neighbour that announces none (dtn7 by default): our own interval.
    pub default_period: Duration,
    /// A neighbour is gone after this many of its periods without a beacon.
    pub timeout_intervals: u32,
    /// Most neighbours tracked; beacons from further nodes are ignored until one leaves, so spoofed node
    /// IDs cannot grow the table without bound.
    pub max_neighbours: usize,
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Where its TCPCL is.
    pub tcpcl: SocketAddr,
    /// Format of its latest beacon.
    pub format: BeaconFormat,
    /// Its period (announced, clamped to our bounds, or the default).
    pub period: Duration,
    /// When its latest beacon arrived.
    pub last_seen: Instant,
    /// When a beacon last announced `tcpcl`.
    pub tcpcl_seen: Instant,
    /// Sequence number of its latest beacon (for logs).
    pub last_seq: u32,
}

impl Neighbour {
    fn deadline(&self, intervals: u32) -> Instant {
        self.last_seen + self.period.saturating_mul(intervals)
    }
}

/// What a beacon did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Something to report.
    Event(DiscoveryEvent),
    /// A known neighbour, nothing new.
    Refreshed,
    /// Not taken into the table.
    Ignored(Ignored),
}

/// Why a beacon was not taken into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// It is our own.
    Own,
    /// It announces no TCPCL endpoint we can use (a dtn7 node without its TCP CLA).
    NoTcpcl,
    /// A new node, but the table is full.
    TableFull,
}

/// The table. See the module documentation.
#[derive(Debug)]
pub struct NeighbourTable {
    cfg: TableConfig,
    neighbours: HashMap<Eid, Neighbour>,
}

impl NeighbourTable {
    /// An empty table.
    pub fn new(cfg: TableConfig) -> Self {
        NeighbourTable { cfg, neighbours: HashMap::new() }
    }

    /// Takes in a beacon that arrived at `now` from `from` (its source address).
    ///
    /// Endpoint choice: the first endpoint of the beacon, resolved against `from`. A known neighbour keeps
    /// its current endpoint while beacons keep announcing it, even if other beacons announce another: a
    /// node heard over both IPv4 and IPv6 (or on two interfaces) sends beacons whose "sender's address"
    /// differs, and switching on every beacon would report a change every second. The endpoint changes only
    /// once the current one has gone unannounced for two of the neighbour's periods.
    pub fn on_beacon(&mut self, now: Instant, beacon: &Beacon, format: BeaconFormat, from: SocketAddr) -> Update {
        if beacon.node_id == self.cfg.own_node_id {
            return Update::Ignored(Ignored::Own);
        }
        let candidates: Vec<SocketAddr> = beacon.endpoints.iter().map(|e| e.resolve(from)).collect();
        let Some(&first) = candidates.first() else {
            return Update::Ignored(Ignored::NoTcpcl);
        };
        let period = self.period_of(beacon);
        let node_id = beacon.node_id.clone();
        match self.neighbours.get_mut(&node_id) {
            Some(n) => {
                n.last_seen = now;
                n.period = period;
                n.format = format;
                n.last_seq = beacon.seq;
                if candidates.contains(&n.tcpcl) {
                    n.tcpcl_seen = now;
                    return Update::Refreshed;
                }
                if now.saturating_duration_since(n.tcpcl_seen) < period.saturating_mul(2) {
                    return Update::Refreshed;
                }
                n.tcpcl = first;
                n.tcpcl_seen = now;
                Update::Event(DiscoveryEvent::NeighbourChanged { node_id, tcpcl: first, format })
            }
            None => {
                if self.neighbours.len() >= self.cfg.max_neighbours {
                    return Update::Ignored(Ignored::TableFull);
                }
                let n =
                    Neighbour { tcpcl: first, format, period, last_seen: now, tcpcl_seen: now, last_seq: beacon.seq };
                self.neighbours.insert(node_id.clone(), n);
                Update::Event(DiscoveryEvent::NeighbourUp { node_id, tcpcl: first, format })
            }
        }
    }

    /// Removes every neighbour silent for `timeout_intervals` of its periods at `now`; returns their
    /// `NeighbourDown` events (in node ID order, for reproducible output).
    pub fn expire(&mut self, now: Instant) -> Vec<DiscoveryEvent> {
        let k = self.cfg.timeout_intervals;
        let mut gone: Vec<Eid> =
            self.neighbours.iter().filter(|(_, n)| n.deadline(k) <= now).map(|(id, _)| id.clone()).collect();
        gone.sort();
        for id in &gone {
            self.neighbours.remove(id);
        }
        gone.into_iter().map(|node_id| DiscoveryEvent::NeighbourDown { node_id }).collect()
    }

    /// The earliest time [`NeighbourTable::expire`] has something to do, if any neighbour is known.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.neighbours.values().map(|n| n.deadline(self.cfg.timeout_intervals)).min()
    }

    /// A neighbour by node ID.
    pub fn get(&self, node_id: &Eid) -> Option<&Neighbour> {
        self.neighbours.get(node_id)
    }

    /// Number of neighbours.
    pub fn len(&self) -> usize {
        self.neighbours.len()
    }

    /// True when no neighbour is known.
    pub fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
    }

    /// The announced period within our bounds (a neighbour announcing one hour must not keep a dead entry
    /// for five hours; one announcing 1 ms must not time out between two beacons), else the default.
    fn period_of(&self, beacon: &Beacon) -> Duration {
        let (lo, hi) = (Duration::from_millis(MIN_PERIOD_MS.into()), Duration::from_millis(MAX_PERIOD_MS.into()));
        beacon.period.map_or(self.cfg.default_period, |p| p.clamp(lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beacon::TcpclEndpoint;

    const S: Duration = Duration::from_secs(1);

    fn eid(s: &str) -> Eid {
        s.parse().expect("test EID")
    }

    fn table() -> NeighbourTable {
        NeighbourTable::new(TableConfig {
            own_node_id: eid("dtn://me/"),
            default_period: 2 * S,
            timeout_intervals: 5,
            max_neighbours: 3,
        })
    }

    fn beacon(node: &str, period: Option<Duration>, ports: &[u16]) -> Beacon {
        Beacon {
            node_id: eid(node),
            seq: 0,
            period,
            endpoints: ports.iter().map(|&port| TcpclEndpoint { addr: None, port }).collect(),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn up(node: &str, tcpcl: &str, format: BeaconFormat) -> Update {
        Update::Event(DiscoveryEvent::NeighbourUp { node_id: eid(node), tcpcl: addr(tcpcl), format })
    }

    #[test]
    fn up_refresh_timeout_down() {
        let mut t = table();
        let t0 = Instant::now();
        let b = beacon("dtn://a/", Some(S), &[4556]);
        let from = addr("192.0.2.5:3003");
        assert_eq!(t.on_beacon(t0, &b, BeaconFormat::Dtn7, from), up("dtn://a/", "192.0.2.5:4556", BeaconFormat::Dtn7));
        assert_eq!(t.next_deadline(), Some(t0 + 5 * S));
        // Refreshed at 4 s: the deadline moves to 9 s.
        assert_eq!(t.on_beacon(t0 + 4 * S, &b, BeaconFormat::Dtn7, from), Update::Refreshed);
        assert_eq!(t.expire(t0 + 8 * S), vec![]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(t0 + 9 * S), vec![DiscoveryEvent::NeighbourDown { node_id: eid("dtn://a/") }]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
        // Back again: Up again.
        assert_eq!(
            t.on_beacon(t0 + 20 * S, &b, BeaconFormat::Ours, from),
            up("dtn://a/", "192.0.2.5:4556", BeaconFormat::Ours)
        );
    }

    #[test]
    fn timeout_follows_the_announced_period_or_the_default() {
        let mut t = table();
        let t0 = Instant::now();
        let from = addr("192.0.2.5:3003");
        t.on_beacon(t0, &beacon("dtn://slow/", Some(10 * S), &[1]), BeaconFormat::Ours, from);
        t.on_beacon(t0, &beacon("dtn://silent/", None, &[1]), BeaconFormat::Dtn7, from);
        t.on_beacon(t0, &beacon("dtn://absurd/", Some(Duration::from_secs(86_400)), &[1]), BeaconFormat::Ours, from);
        assert_eq!(t.expire(t0 + 10 * S), vec![DiscoveryEvent::NeighbourDown { node_id: eid("dtn://silent/") }]);
        assert_eq!(t.expire(t0 + 50 * S), vec![DiscoveryEvent::NeighbourDown { node_id: eid("dtn://slow/") }]);
        // One hour is the longest period honoured: gone after 5 h, not 5 days.
        assert_eq!(t.expire(t0 + 5 * 3600 * S), vec![DiscoveryEvent::NeighbourDown { node_id: eid("dtn://absurd/") }]);
    }

    #[test]
    fn own_beacons_and_beacons_without_tcpcl_are_ignored() {
        let mut t = table();
        let now = Instant::now();
        let from = addr("192.0.2.5:3003");
        assert_eq!(
            t.on_beacon(now, &beacon("dtn://me/", Some(S), &[4556]), BeaconFormat::Ours, from),
            Update::Ignored(Ignored::Own)
        );
        // The same node in ipn spelling is a different node: only exact node ID equality means "us".
        assert!(matches!(t.on_beacon(now, &beacon("ipn:1.0", None, &[1]), BeaconFormat::Ours, from), Update::Event(_)));
        assert_eq!(
            t.on_beacon(now, &beacon("dtn://b/", None, &[]), BeaconFormat::Dtn7, from),
            Update::Ignored(Ignored::NoTcpcl)
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn endpoint_change_is_reported_once_and_dual_stack_does_not_flap() {
        let mut t = table();
        let t0 = Instant::now();
        let b = beacon("dtn://a/", Some(S), &[4556]);
        let v4 = addr("192.0.2.5:3003");
        let v6 = addr("[fe80::5%2]:3003");
        t.on_beacon(t0, &b, BeaconFormat::Dtn7, v4);
        // The same node heard over IPv6 in between IPv4 beacons: no change.
        for i in 1..10u32 {
            let from = if i % 2 == 0 { v4 } else { v6 };
            assert_eq!(t.on_beacon(t0 + i * S / 2, &b, BeaconFormat::Dtn7, from), Update::Refreshed, "beacon {i}");
        }
        assert_eq!(t.get(&eid("dtn://a/")).unwrap().tcpcl, addr("192.0.2.5:4556"));
        // IPv4 goes quiet (last heard at 4 s); IPv6 only from then on: switch after two periods.
        assert_eq!(t.on_beacon(t0 + 5 * S, &b, BeaconFormat::Dtn7, v6), Update::Refreshed);
        let changed = t.on_beacon(t0 + 6 * S, &b, BeaconFormat::Dtn7, v6);
        let new: SocketAddr = "[fe80::5%2]:4556".parse().unwrap();
        assert_eq!(
            changed,
            Update::Event(DiscoveryEvent::NeighbourChanged {
                node_id: eid("dtn://a/"),
                tcpcl: new,
                format: BeaconFormat::Dtn7
            })
        );
        assert_eq!(t.on_beacon(t0 + 7 * S, &b, BeaconFormat::Dtn7, v6), Update::Refreshed);
        // A new port announced from the same address: a change as soon as the old one is unannounced for 2 s.
        let moved = beacon("dtn://a/", Some(S), &[4600]);
        assert_eq!(t.on_beacon(t0 + 8 * S, &moved, BeaconFormat::Ours, v6), Update::Refreshed);
        assert!(matches!(
            t.on_beacon(t0 + 9 * S, &moved, BeaconFormat::Ours, v6),
            Update::Event(DiscoveryEvent::NeighbourChanged { tcpcl, format: BeaconFormat::Ours, .. }) if tcpcl.port() == 4600
        ));
    }

    #[test]
    fn a_beacon_listing_the_current_endpoint_anywhere_keeps_it() {
        let mut t = table();
        let t0 = Instant::now();
        let from = addr("192.0.2.5:3003");
        t.on_beacon(t0, &beacon("dtn://a/", Some(S), &[4556]), BeaconFormat::Ours, from);
        // Much later, the node lists a new preferred endpoint first but still the old one: no change.
        let b = beacon("dtn://a/", Some(S), &[4600, 4556]);
        assert_eq!(t.on_beacon(t0 + 60 * S, &b, BeaconFormat::Ours, from), Update::Refreshed);
    }

    #[test]
    fn table_is_bounded() {
        let mut t = table();
        let now = Instant::now();
        let from = addr("192.0.2.5:3003");
        for n in ["dtn://a/", "dtn://b/", "dtn://c/"] {
            assert!(matches!(t.on_beacon(now, &beacon(n, None, &[1]), BeaconFormat::Ours, from), Update::Event(_)));
        }
        assert_eq!(
            t.on_beacon(now, &beacon("dtn://d/", None, &[1]), BeaconFormat::Ours, from),
            Update::Ignored(Ignored::TableFull)
        );
        // Known neighbours are still refreshed.
        assert_eq!(t.on_beacon(now, &beacon("dtn://a/", None, &[1]), BeaconFormat::Ours, from), Update::Refreshed);
    }
}
