//! An in-process network for engine tests and benchmarks: engines with in-memory stores, a virtual clock,
//! and links that carry encoded bundles between them (and can cut a transfer after a byte budget).
//!
//! The shell here does what a real one does: it commits each event's batches as one group, reports them
//! persisted afterwards, carries transmissions, delivers to an application that acknowledges, and fires
//! timers, all in a deterministic order.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;

use dtn_core::bpv7::{Bundle, BundleId, DtnTime, Eid, Limits, admin::reason};
use dtn_core::engine::{Action, Config, Engine, Event, Notice, PersistFailure, Piece, Submission};
use dtn_core::routing::{LinkInfo, RoutingAgent};
use dtn_core::store::{BundleMeta, BundleStore, MemStore, WriteBatch};

/// Start of virtual time: 2025-01-01 in DTN time, so clocked nodes have realistic timestamps.
pub const T0: u64 = 788_918_400_000;

pub fn at(ms: u64) -> DtnTime {
    DtnTime(T0 + ms)
}

pub type AgentMaker = fn() -> Box<dyn RoutingAgent>;

/// One node: its engine, its "disk" (the store survives restarts) and its application.
pub struct Node {
    pub eid: Eid,
    pub engine: Engine,
    pub store: MemStore,
    pub cfg: Config,
    pub agent: AgentMaker,
    pub seed: u64,
    pub timer: Option<DtnTime>,
    /// Whether the application acknowledges deliveries at once.
    pub auto_ack: bool,
    pub unacked: Vec<(BundleId, Vec<Piece>)>,
    /// Bundles handed over directly (not stored) and not yet acknowledged, with their encoding: in memory
    /// only, so a restart loses them.
    pub direct: Vec<(BundleId, Vec<u8>)>,
    pub restarts: u64,
    /// IDs ever held in custody here (for the custody invariant).
    pub ever_custodial: BTreeSet<BundleId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Contact between two nodes; `budget` bytes may cross (either way) before the link is cut.
    Up(usize, usize, Option<u64>),
    /// Contact over a link described by `LinkInfo` (class, volume); `durable_acks` is the net's.
    UpLink(usize, usize, LinkInfo),
    Down(usize, usize),
    Submit(usize, Submission),
    Register(usize, Eid),
    Restart(usize),
    AutoAck(usize, bool),
    /// Any event, as a shell would feed it (raw bytes from a peer, a registration, …).
    Event(usize, Event),
}

#[derive(Debug, Clone)]
struct Link {
    contact: u64,
    budget: Option<u64>,
}

/// A transmission as the wire saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    pub contact: u64,
    pub from: usize,
    pub to: usize,
    pub id: Option<BundleId>,
    pub len: u64,
    /// Completed (false: cut).
    pub finished: bool,
}

pub struct Net {
    pub nodes: Vec<Node>,
    pub now: DtnTime,
    queue: VecDeque<(usize, Event)>,
    links: BTreeMap<(usize, usize), Link>,
    contact_seq: u64,
    schedule: Vec<(DtnTime, u64, Op)>,
    op_seq: u64,
    /// Every delivery acknowledged by an application: whole bundle ID → (node, payload).
    pub deliveries: BTreeMap<BundleId, Vec<(usize, Vec<u8>)>>,
    pub notices: Vec<(DtnTime, usize, Notice)>,
    pub txs: Vec<Tx>,
    /// Submissions accepted: token → IDs.
    pub accepted: BTreeMap<u64, Vec<BundleId>>,
    pub rejected: BTreeMap<u64, String>,
    /// Every action, rendered, when `record` is set (determinism tests).
    pub record: bool,
    pub trace: Vec<String>,
    /// Check the custody invariant after every event (slower).
    pub check_custody: bool,
    /// Contacts come up as links whose finished transfers mean the bundle is durable at the peer (as over
    /// our TCPCL); here every transfer is stored before it finishes, so that holds.
    pub durable_acks: bool,
    pub events: u64,
    /// Bundles the stores evicted to make room, as their commits reported them: (time, node, metadata).
    pub evicted: Vec<(DtnTime, usize, BundleMeta)>,
}

impl Net {
    pub fn new() -> Self {
        Net {
            nodes: Vec::new(),
            now: at(0),
            queue: VecDeque::new(),
            links: BTreeMap::new(),
            contact_seq: 0,
            schedule: Vec::new(),
            op_seq: 0,
            deliveries: BTreeMap::new(),
            notices: Vec::new(),
            txs: Vec::new(),
            accepted: BTreeMap::new(),
            rejected: BTreeMap::new(),
            record: false,
            trace: Vec::new(),
            check_custody: false,
            durable_acks: false,
            events: 0,
            evicted: Vec::new(),
        }
    }

    /// Adds a node; returns its index.
    pub fn add(&mut self, cfg: Config, quota: u64, agent: AgentMaker, seed: u64) -> usize {
        let engine = Engine::new(cfg.clone(), agent(), seed);
        self.nodes.push(Node {
            eid: cfg.node.clone(),
            engine,
            store: MemStore::new(quota),
            cfg,
            agent,
            seed,
            timer: None,
            auto_ack: true,
            unacked: Vec::new(),
            direct: Vec::new(),
            restarts: 0,
            ever_custodial: BTreeSet::new(),
        });
        let i = self.nodes.len() - 1;
        self.queue.push_back((i, Event::Start));
        self.drain();
        i
    }

    pub fn at(&mut self, t: DtnTime, op: Op) {
        self.op_seq += 1;
        self.schedule.push((t, self.op_seq, op));
        self.schedule.sort_by_key(|a| (a.0, a.1));
    }

    /// Runs everything scheduled up to `t`, then sets the clock to `t`.
    pub fn run_until(&mut self, t: DtnTime) {
        loop {
            self.drain();
            let next_timer = self.nodes.iter().filter_map(|n| n.timer).min();
            let next_op = self.schedule.first().map(|s| s.0);
            let next = match (next_timer, next_op) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if next_op == Some(next) {
                let (_, _, op) = self.schedule.remove(0);
                self.apply(op);
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].timer.is_some_and(|x| x <= self.now) {
                        self.nodes[i].timer = None;
                        self.queue.push_back((i, Event::Timer));
                    }
                }
            }
        }
        self.now = self.now.max(t);
    }

    fn apply(&mut self, op: Op) {
        match op {
            // The budget cuts the link mid-transfer; the engines are not told of it.
            Op::Up(a, b, budget) => self.link_up(a, b, budget, LinkInfo::default()),
            // The engines are told the link's class and volume; the link itself carries everything.
            Op::UpLink(a, b, link) => self.link_up(a, b, None, link),
            Op::Down(a, b) => self.link_down(a, b),
            Op::Submit(i, s) => self.queue.push_back((i, Event::Submit(s))),
            Op::Register(i, ep) => self.queue.push_back((i, Event::Register(ep))),
            Op::Restart(i) => {
                let peers: Vec<usize> =
                    self.links.keys().filter(|(a, b)| *a == i || *b == i).map(|(a, b)| a + b - i).collect();
                for p in peers {
                    self.link_down(i, p);
                }
                self.drain();
                let n = &mut self.nodes[i];
                n.restarts += 1;
                n.engine = Engine::new(n.cfg.clone(), (n.agent)(), n.seed + n.restarts);
                n.timer = None;
                n.direct.clear();
                self.queue.push_back((i, Event::Start));
            }
            Op::Event(i, ev) => self.queue.push_back((i, ev)),
            Op::AutoAck(i, on) => {
                self.nodes[i].auto_ack = on;
                if on {
                    for (id, pieces) in std::mem::take(&mut self.nodes[i].unacked) {
                        self.ack(i, id, &pieces);
                    }
                }
            }
        }
    }

    fn link_up(&mut self, a: usize, b: usize, budget: Option<u64>, link: LinkInfo) {
        let key = (a.min(b), a.max(b));
        if self.links.contains_key(&key) {
            return;
        }
        self.contact_seq += 1;
        self.links.insert(key, Link { contact: self.contact_seq, budget });
        let (ea, eb) = (self.nodes[a].eid.clone(), self.nodes[b].eid.clone());
        let link = LinkInfo { durable_acks: self.durable_acks, ..link };
        self.queue.push_back((a, Event::ContactUp { peer: eb, link }));
        self.queue.push_back((b, Event::ContactUp { peer: ea, link }));
    }

    fn link_down(&mut self, a: usize, b: usize) {
        if self.links.remove(&(a.min(b), a.max(b))).is_some() {
            let (ea, eb) = (self.nodes[a].eid.clone(), self.nodes[b].eid.clone());
            self.queue.push_back((a, Event::ContactDown { peer: eb }));
            self.queue.push_back((b, Event::ContactDown { peer: ea }));
        }
    }

    /// Hands `ev` to node `i` now and runs everything it causes (setup shortcuts, benchmarks).
    pub fn inject(&mut self, i: usize, ev: Event) {
        self.queue.push_back((i, ev));
        self.drain();
    }

    /// Applies `op` now, without going through the schedule, and runs everything it causes.
    pub fn apply_now(&mut self, op: Op) {
        self.apply(op);
        self.drain();
    }

    pub fn drain(&mut self) {
        while self.step() {}
    }

    /// Applies `op` now, queueing what it causes without running it (see [`Net::step`]).
    pub fn apply_queued(&mut self, op: Op) {
        self.apply(op);
    }

    /// Handles the next queued event, if any (to interleave events the way a busy shell would).
    pub fn step(&mut self) -> bool {
        let Some((i, ev)) = self.queue.pop_front() else { return false };
        self.dispatch(i, ev);
        true
    }

    /// Queues `ev` for node `i` ahead of everything already queued, without running anything.
    pub fn push_front(&mut self, i: usize, ev: Event) {
        self.queue.push_front((i, ev));
    }

    fn index_of(&self, eid: &Eid) -> Option<usize> {
        self.nodes.iter().position(|n| n.eid == *eid)
    }

    fn dispatch(&mut self, i: usize, ev: Event) {
        self.events += 1;
        let now = self.now;
        let actions = {
            let n = &mut self.nodes[i];
            n.engine.handle(&n.store, now, ev)
        };
        let mut persisted = Vec::new();
        let mut evicted = Vec::new();
        for a in actions {
            if self.record {
                self.trace.push(format!("{} {i} {a:?}", now.0));
            }
            match a {
                Action::Persist { batch, ops } => match self.nodes[i].store.commit(WriteBatch { now, ops }) {
                    Ok(report) => {
                        if !report.evicted.is_empty() {
                            self.evicted.extend(report.evicted.iter().map(|m| (now, i, m.clone())));
                            evicted.extend(report.evicted);
                        }
                        persisted.push(batch);
                    }
                    Err(e) => {
                        let failure = PersistFailure::from(&e);
                        self.queue.push_back((i, Event::PersistFailed { batch, failure }));
                    }
                },
                Action::Transmit { peer, transfer, id, bytes, .. } => self.carry(i, peer, transfer, id, bytes),
                Action::Deliver { id, pieces, .. } => {
                    if self.nodes[i].auto_ack {
                        self.ack(i, id, &pieces);
                    } else if !self.nodes[i].unacked.iter().any(|(u, _)| *u == id) {
                        self.nodes[i].unacked.push((id, pieces));
                    }
                }
                Action::DeliverDirect { id, bytes, .. } => {
                    if self.nodes[i].auto_ack {
                        let limits = Limits { require_primary_crc: false, ..Limits::default() };
                        let payload =
                            Bundle::decode_with(&bytes, &limits).map(|b| b.payload().to_vec()).unwrap_or_default();
                        self.deliveries.entry(id.clone()).or_default().push((i, payload));
                        self.queue.push_back((i, Event::DeliveryAcked { id }));
                    } else {
                        self.nodes[i].direct.push((id, bytes));
                    }
                }
                Action::SetTimer(t) => self.nodes[i].timer = Some(t),
                Action::Accepted { token, ids } => {
                    self.accepted.insert(token, ids);
                }
                Action::Rejected { token, reason } => {
                    self.rejected.insert(token, reason);
                }
                Action::Notice(n) => self.notices.push((now, i, n)),
            }
        }
        if !evicted.is_empty() {
            self.queue.push_back((i, Event::Evicted(evicted)));
        }
        if !persisted.is_empty() {
            self.queue.push_back((i, Event::Persisted(persisted)));
        }
        if self.check_custody {
            let held = custodial(&self.nodes[i].store);
            self.nodes[i].ever_custodial.extend(held);
        }
    }

    /// The application reads the bundle and acknowledges it.
    fn ack(&mut self, i: usize, id: BundleId, pieces: &[Piece]) {
        let payload = if pieces.is_empty() {
            read_payload(&self.nodes[i].store, &id)
        } else {
            let mut all = Vec::new();
            for p in pieces {
                let fragment = read_payload(&self.nodes[i].store, &p.id);
                let (skip, len) = (p.skip as usize, p.len as usize);
                all.extend_from_slice(fragment.get(skip..skip + len).unwrap_or_default());
            }
            all
        };
        self.deliveries.entry(id.clone()).or_default().push((i, payload));
        self.queue.push_back((i, Event::DeliveryAcked { id }));
    }

    fn carry(&mut self, from: usize, peer: Eid, transfer: u64, id: Option<BundleId>, bytes: Vec<u8>) {
        let Some(to) = self.index_of(&peer) else {
            self.queue.push_back((from, Event::TransferFailed { transfer }));
            return;
        };
        let key = (from.min(to), from.max(to));
        let Some(link) = self.links.get_mut(&key) else {
            self.queue.push_back((from, Event::TransferFailed { transfer }));
            return;
        };
        let len = bytes.len() as u64;
        let contact = link.contact;
        match link.budget {
            Some(left) if len > left => {
                self.txs.push(Tx { contact, from, to, id, len: left, finished: false });
                let me = self.nodes[from].eid.clone();
                let prefix = bytes[..left as usize].to_vec();
                self.queue.push_back((to, Event::ReceivedPartial { peer: me, bytes: prefix, skip: 0 }));
                self.queue.push_back((from, Event::TransferCut { transfer, durable: left }));
                self.link_down(from, to);
            }
            _ => {
                if let Some(b) = link.budget.as_mut() {
                    *b -= len;
                }
                self.txs.push(Tx { contact, from, to, id, len, finished: true });
                let me = self.nodes[from].eid.clone();
                self.queue.push_back((to, Event::Received { peer: me, bytes }));
                self.queue.push_back((from, Event::TransferFinished { transfer }));
            }
        }
    }

    /// Bundles a node stores.
    pub fn held(&self, i: usize) -> Vec<BundleMeta> {
        all(&self.nodes[i].store)
    }

    pub fn notices_of(&self, pred: impl Fn(&Notice) -> bool) -> usize {
        self.notices.iter().filter(|(_, _, n)| pred(n)).count()
    }

    /// Checks the invariants every run must keep; returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, d) in &self.deliveries {
            if d.len() > 1 {
                return Err(format!(
                    "{id} delivered {} times: {:?}",
                    d.len(),
                    d.iter().map(|x| x.0).collect::<Vec<_>>()
                ));
            }
        }
        let mut crossed = BTreeSet::new();
        for tx in self.txs.iter().filter(|t| t.finished) {
            if let Some(id) = &tx.id
                && !crossed.insert((tx.contact, id.clone()))
            {
                return Err(format!("{id} crossed contact {} twice", tx.contact));
            }
        }
        if self.check_custody {
            for (i, n) in self.nodes.iter().enumerate() {
                let now_held: BTreeSet<BundleId> = self.held(i).into_iter().map(|m| m.id).collect();
                for id in n.ever_custodial.difference(&now_held) {
                    let whole = BundleId { fragment: None, ..id.clone() };
                    let justified = self.deliveries.contains_key(&whole)
                        || self.notices.iter().any(|(_, j, x)| {
                            *j == i
                                && match x {
                                    Notice::CustodyReleased { id: y }
                                    | Notice::DeliveredElsewhere { id: y }
                                    | Notice::SplitAfterCut { id: y, .. } => y == id,
                                    Notice::Deleted { id: y, reason: r } => y == id && *r == reason::LIFETIME_EXPIRED,
                                    _ => false,
                                }
                        });
                    if !justified {
                        return Err(format!("node {i} dropped {id} while custodian, without delivery or release"));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

pub fn all(store: &MemStore) -> Vec<BundleMeta> {
    store.select(&store.summary(), usize::MAX).unwrap_or_default()
}

fn custodial(store: &MemStore) -> Vec<BundleId> {
    all(store).into_iter().filter(|m| m.custody.is_custodian()).map(|m| m.id).collect()
}

/// The stored bytes of a bundle (empty if it is not stored).
pub fn read_bundle(store: &MemStore, id: &BundleId) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(mut r) = store.read_bundle(id) {
        let _ = r.read_to_end(&mut bytes);
    }
    bytes
}

pub fn read_payload(store: &MemStore, id: &BundleId) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(mut r) = store.read_bundle(id) {
        let _ = r.read_to_end(&mut bytes);
    }
    let limits = Limits { require_primary_crc: false, ..Limits::default() };
    Bundle::decode_with(&bytes, &limits).map(|b| b.payload().to_vec()).unwrap_or_default()
}

/// A config for a named test node (`dtn://name/`).
pub fn config(name: &str) -> Config {
    let mut c = Config::new(format!("dtn://{name}/").parse().expect("node EID"));
    c.custody_retry_ms = 60_000;
    c
}
