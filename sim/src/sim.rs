//! The discrete-event core: one real `dtn_core` engine per node, a binary heap of events keyed by (virtual
//! time, sequence), links that carry bundles at a data rate with a propagation delay, and contacts from a
//! trace, a plan or mobility.
//!
//! The shell does for each engine what the node runtime does: it commits each event's batches at once (an
//! in-memory store is durable the moment it commits), reports them persisted, carries transmissions, hands
//! deliveries to an application that acknowledges them, and fires timers. A contact that ends while a
//! bundle is on the wire cuts it: the receiver gets the bytes that arrived (`ReceivedPartial`) and the sender
//! a `TransferCut`, exercising the engine's reactive fragmentation.
//!
//! One contact carries one transmission at a time, in the order the engines queued them (either direction),
//! as a ONE connection does. A finished transmission means the receiver stored the bundle (as over our
//! TCPCL); a receiver that refuses it (no room) fails the transfer instead.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use dtn_core::bpv7::{Bundle, BundleId, DtnTime, Eid, Limits};
use dtn_core::engine::{Action, Config, Engine, Event, Notice, PersistFailure, Submission};
use dtn_core::rng::Rng;
use dtn_core::routing::{ContactPlan, LinkInfo, RoutingConfig};
use dtn_core::store::{BundleStore, WriteBatch, WriteOp};

use crate::fasthash::{FastMap, FastSet};
use crate::mobility::{LinkChange, Mobility};
use crate::report::{MessageRow, MessageStats, NodeStats, Report, Sample, avg_med};
use crate::scenario::{Routing, Scenario};
use crate::store::{Gone, MsgSize, SimStore, SizeTable, ipn_node};
use crate::units::{Micros, SECOND, fmt_duration};

/// Start of virtual time in DTN time (2025-01-01), so bundles carry realistic creation times.
pub const T0_MS: u64 = 788_918_400_000;

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Options {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Print progress to stderr about once a second.
    pub progress: bool,
    /// Virtual bytes each real payload byte stands for (see [`crate::store`]). 1 materialises every byte.
    pub payload_unit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { seed: None, progress: false, payload_unit: 4096 }
    }
}

/// Interface bits above the scenario's interfaces: contacts from a trace and from the plan.
const TRACE_BIT: u32 = 1 << 30;
const PLAN_BIT: u32 = 1 << 31;

#[derive(Debug, Clone, Copy)]
enum Ev {
    Timer { node: u32, at: Micros },
    Trace(usize),
    Plan { idx: usize, up: bool },
    Mobility,
    SendDone { a: u32, b: u32, contact: u64 },
    Arrive { a: u32, b: u32, contact: u64 },
    Generate { generator: usize, node: Option<u32> },
    Message(usize),
    Sample,
    End,
}

struct Item {
    time: Micros,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and the earliest (time, seq) must come out first.
        (o.time, o.seq).cmp(&(self.time, self.seq))
    }
}

struct Node {
    eid: Eid,
    app: Eid,
    engine: Engine,
    store: SimStore,
    timer: Option<Micros>,
}

struct Tx {
    from: u32,
    to: u32,
    transfer: u64,
    id: Option<BundleId>,
    msg: Option<MsgSize>,
    bytes: Vec<u8>,
    vsize: u64,
    start: Micros,
    rate: u64,
    delay: Micros,
    hops: u32,
}

impl Tx {
    /// Virtual bytes that reached the receiver by `now`.
    fn arrived(&self, now: Micros) -> u64 {
        let t = now.saturating_sub(self.start + self.delay);
        ((u128::from(t) * u128::from(self.rate) / u128::from(SECOND)) as u64).min(self.vsize)
    }
}

struct Link {
    contact: u64,
    ifaces: u32,
    trace_ups: u32,
    plan_rate: u64,
    plan_delay: Micros,
    queue: VecDeque<Tx>,
    sending: Option<Tx>,
    flying: VecDeque<Tx>,
}

struct Msg {
    name: String,
    from: u32,
    to: u32,
    size: u64,
    created: Micros,
    counted: bool,
    delivered: Option<Micros>,
    hops: Option<u32>,
    holders: u32,
}

/// One simulation run.
pub struct Sim<'a> {
    s: &'a Scenario,
    opts: Options,
    seed: u64,
    now: Micros,
    seq: u64,
    heap: BinaryHeap<(Item,)>,
    queue: VecDeque<(u32, Event)>,
    nodes: Vec<Node>,
    links: FastMap<(u32, u32), Link>,
    contact_seq: u64,
    sizes: Rc<RefCell<SizeTable>>,
    msgs: Vec<Msg>,
    /// (node, message) → hops the node's copy has travelled.
    hops: FastMap<(u32, u32), u32>,
    holders: FastSet<(u32, u32)>,
    /// The message being submitted, to tie its bundle ID to its sizes.
    submitting: Option<(u32, u32)>,
    /// Set while a receiver handles an arriving bundle: whether it refused it.
    refused: bool,
    mobility: Option<Mobility>,
    moves: bool,
    changes: Vec<LinkChange>,
    traffic_rng: Rng,
    stats: MessageStats,
    buffer_times: Vec<f64>,
    samples: Vec<Sample>,
    contacts: u64,
    events: u64,
    created_total: u64,
    delivered_total: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn key(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// Runs a scenario to its end and returns the report.
pub fn run(s: &Scenario, opts: &Options) -> Report {
    let mut sim = Sim::new(s, opts.clone());
    sim.run();
    sim.report()
}

impl<'a> Sim<'a> {
    /// Sets up nodes and the first events.
    pub fn new(s: &'a Scenario, opts: Options) -> Sim<'a> {
        let seed = opts.seed.unwrap_or(s.seed);
        let sizes = Rc::new(RefCell::new(SizeTable::default()));
        let plan = (s.nodes.iter().any(|n| n.routing == Routing::ContactPlan)).then(|| contact_plan(s));
        let nodes = s
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let eid = Eid::ipn(i as u64 + 1, 0);
                let mut cfg = Config::new(eid.clone());
                cfg.custody = n.custody;
                // Sizes are virtual: proactive fragmentation by the stand-in's size would mean nothing.
                cfg.fragment_payload = None;
                // The link takes a node's next bundle when it can carry it, as TCP's backpressure does: the
                // window covers only what is on the way (rate times delay, virtual bytes; one bundle is always
                // let out), so the engine picks each next bundle when the link frees, with what it knows then,
                // instead of queueing everything it holds at contact start for a contact that ends first.
                cfg.max_in_flight_bytes = bandwidth_delay(s, i);
                let agent = match &n.routing {
                    Routing::Epidemic => RoutingConfig::Epidemic,
                    Routing::SprayAndWait { copies } => RoutingConfig::SprayAndWait { copies: *copies },
                    Routing::Prophet(p) => RoutingConfig::Prophet(*p),
                    Routing::ContactPlan => RoutingConfig::ContactPlan(plan.clone().unwrap_or_default()),
                }
                .build();
                Node {
                    app: Eid::ipn(i as u64 + 1, 1),
                    engine: Engine::new(cfg, agent, splitmix(seed ^ splitmix(i as u64))),
                    store: SimStore::new(n.buffer, sizes.clone()),
                    eid,
                    timer: None,
                }
            })
            .collect();
        let mobility = Mobility::new(s, seed);
        let moves = s.nodes.iter().any(|n| {
            matches!(
                n.movement,
                crate::scenario::Movement::Route { .. } | crate::scenario::Movement::RandomWaypoint { .. }
            )
        });
        let mut sim = Sim {
            s,
            opts,
            seed,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            queue: VecDeque::new(),
            nodes,
            links: FastMap::default(),
            contact_seq: 0,
            sizes,
            msgs: Vec::new(),
            hops: FastMap::default(),
            holders: FastSet::default(),
            submitting: None,
            refused: false,
            mobility,
            moves,
            changes: Vec::new(),
            traffic_rng: Rng::new(splitmix(seed ^ 0x0074_7261_6666_6963)),
            stats: MessageStats::default(),
            buffer_times: Vec::new(),
            samples: Vec::new(),
            contacts: 0,
            events: 0,
            created_total: 0,
            delivered_total: 0,
        };
        for i in 0..sim.nodes.len() as u32 {
            let app = sim.nodes[i as usize].app.clone();
            sim.queue.push_back((i, Event::Start));
            sim.queue.push_back((i, Event::Register(app)));
        }
        sim.drain();
        if !s.trace.is_empty() {
            sim.push(s.trace[0].time, Ev::Trace(0));
        }
        for (idx, c) in s.plan.iter().enumerate() {
            sim.push(c.start, Ev::Plan { idx, up: true });
            sim.push(c.end, Ev::Plan { idx, up: false });
        }
        if sim.mobility.is_some() {
            sim.push(0, Ev::Mobility);
        }
        for (generator, g) in s.traffic.iter().enumerate() {
            if g.per_node {
                for &n in &g.from {
                    let t = g.window.start + sim.traffic_rng.between(g.interval.0, g.interval.1);
                    sim.push(t, Ev::Generate { generator, node: Some(n as u32) });
                }
            } else {
                let t = g.window.start + sim.traffic_rng.between(g.interval.0, g.interval.1);
                sim.push(t, Ev::Generate { generator, node: None });
            }
        }
        if !s.messages.is_empty() {
            sim.push(s.messages[0].time, Ev::Message(0));
        }
        sim.push(0, Ev::Sample);
        sim.push(s.duration, Ev::End);
        sim
    }

    fn push(&mut self, time: Micros, ev: Ev) {
        self.seq += 1;
        self.heap.push((Item { time: time.max(self.now), seq: self.seq, ev },));
    }

    /// Runs to the scenario's end.
    pub fn run(&mut self) {
        let wall = Instant::now();
        let mut last_print = wall;
        let mut n = 0u64;
        while let Some((item,)) = self.heap.pop() {
            if item.time > self.s.duration {
                break;
            }
            self.now = item.time;
            if matches!(item.ev, Ev::End) {
                self.sample();
                break;
            }
            self.handle(item.ev);
            self.drain();
            n += 1;
            if self.opts.progress && n.is_multiple_of(4096) && last_print.elapsed().as_secs_f64() >= 1.0 {
                last_print = Instant::now();
                eprintln!(
                    "dtn-sim: {} of {} ({:.0}%), {} engine events, {} messages, {:.1} s",
                    fmt_duration(self.now),
                    fmt_duration(self.s.duration),
                    self.now as f64 * 100.0 / self.s.duration as f64,
                    self.events,
                    self.created_total,
                    wall.elapsed().as_secs_f64()
                );
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Timer { node, at } => {
                let n = &mut self.nodes[node as usize];
                if n.timer == Some(at) {
                    n.timer = None;
                    self.queue.push_back((node, Event::Timer));
                }
            }
            Ev::Trace(i) => {
                let e = self.s.trace[i];
                if e.up {
                    self.link_up(e.a as u32, e.b as u32, TRACE_BIT, None);
                } else {
                    self.link_down(e.a as u32, e.b as u32, TRACE_BIT);
                }
                if let Some(next) = self.s.trace.get(i + 1) {
                    self.push(next.time, Ev::Trace(i + 1));
                }
            }
            Ev::Plan { idx, up } => {
                let c = &self.s.plan[idx];
                let (a, b) = (c.a as u32, c.b as u32);
                if up {
                    self.link_up(a, b, PLAN_BIT, Some((c.rate, c.delay)));
                } else {
                    self.link_down(a, b, PLAN_BIT);
                }
            }
            Ev::Mobility => {
                let mut changes = std::mem::take(&mut self.changes);
                changes.clear();
                if let Some(m) = self.mobility.as_mut() {
                    m.step(self.now, &mut changes);
                }
                for c in &changes {
                    let bit = 1u32 << c.iface.min(29);
                    if c.up {
                        self.link_up(c.a as u32, c.b as u32, bit, None);
                    } else {
                        self.link_down(c.a as u32, c.b as u32, bit);
                    }
                }
                self.changes = changes;
                if self.moves {
                    self.push(self.now + self.s.step, Ev::Mobility);
                }
            }
            Ev::SendDone { a, b, contact } => self.send_done(a, b, contact),
            Ev::Arrive { a, b, contact } => {
                let Some(link) = self.links.get_mut(&(a, b)) else { return };
                if link.contact != contact {
                    return;
                }
                if let Some(tx) = link.flying.pop_front() {
                    self.arrive(tx);
                }
            }
            Ev::Generate { generator, node } => self.generate(generator, node),
            Ev::Message(i) => {
                let m = &self.s.messages[i];
                self.create(m.id.clone(), m.from as u32, m.to as u32, m.size, m.ttl);
                if let Some(next) = self.s.messages.get(i + 1) {
                    self.push(next.time, Ev::Message(i + 1));
                }
            }
            Ev::Sample => {
                self.sample();
                self.push(self.now + self.s.sample, Ev::Sample);
            }
            Ev::End => {}
        }
    }

    fn generate(&mut self, generator: usize, node: Option<u32>) {
        let g = &self.s.traffic[generator];
        if self.now >= g.window.end {
            return;
        }
        let from = match node {
            Some(n) => n,
            None => g.from[self.traffic_rng.below(g.from.len() as u64) as usize] as u32,
        };
        let choices = g.to.iter().filter(|&&t| t as u32 != from).count() as u64;
        if choices > 0 {
            let k = self.traffic_rng.below(choices) as usize;
            let to = *g.to.iter().filter(|&&t| t as u32 != from).nth(k).unwrap_or(&0) as u32;
            let size = self.traffic_rng.between(g.size.0, g.size.1);
            let name = format!("M{}", self.msgs.len() + 1);
            self.create(name, from, to, size, g.lifetime);
        }
        let next = self.now + self.traffic_rng.between(g.interval.0, g.interval.1).max(1);
        self.push(next, Ev::Generate { generator, node });
    }

    /// A new message: a submission whose payload is the stand-in for `size` bytes.
    fn create(&mut self, name: String, from: u32, to: u32, size: u64, ttl: Micros) {
        let msg = self.msgs.len() as u32;
        let counted = self.now >= self.s.warmup;
        self.msgs.push(Msg {
            name,
            from,
            to,
            size,
            created: self.now,
            counted,
            delivered: None,
            hops: None,
            holders: 1,
        });
        self.created_total += 1;
        if counted {
            self.stats.created += 1;
        }
        self.hops.insert((from, msg), 0);
        self.holders.insert((from, msg));
        let real = size.div_ceil(self.opts.payload_unit.max(1)).max(1);
        let mut sub = Submission::new(u64::from(msg), self.nodes[to as usize].app.clone(), vec![0u8; real as usize]);
        sub.lifetime_ms = Some((ttl / 1000).max(1));
        self.submitting = Some((from, msg));
        self.dispatch(from, Event::Submit(sub));
        self.submitting = None;
    }

    fn drain(&mut self) {
        while let Some((i, ev)) = self.queue.pop_front() {
            self.dispatch(i, ev);
        }
    }

    fn dtn_now(&self) -> DtnTime {
        DtnTime(T0_MS + self.now / 1000)
    }

    fn dispatch(&mut self, i: u32, ev: Event) {
        self.events += 1;
        let now = self.dtn_now();
        let actions = {
            let n = &mut self.nodes[i as usize];
            n.engine.handle(&n.store, now, ev)
        };
        let mut persisted = Vec::new();
        let mut evicted = Vec::new();
        for a in actions {
            match a {
                Action::Persist { batch, ops } => {
                    if let Some((node, msg)) = self.submitting
                        && node == i
                    {
                        self.note_submission(i, msg, &ops);
                    }
                    let store = &self.nodes[i as usize].store;
                    match store.commit(WriteBatch { now, ops }) {
                        Ok(report) => {
                            evicted.extend(report.evicted);
                            persisted.push(batch);
                        }
                        Err(e) => {
                            let failure = PersistFailure::from(&e);
                            self.queue.push_back((i, Event::PersistFailed { batch, failure }));
                        }
                    }
                    self.departures(i);
                }
                Action::Transmit { peer, transfer, id, bytes, .. } => self.transmit(i, peer, transfer, id, bytes),
                Action::Deliver { id, .. } | Action::DeliverDirect { id, .. } => {
                    self.queue.push_back((i, Event::DeliveryAcked { id }))
                }
                Action::SetTimer(t) => {
                    let at = t.0.saturating_sub(T0_MS).saturating_mul(1000).max(self.now);
                    self.nodes[i as usize].timer = Some(at);
                    self.push(at, Ev::Timer { node: i, at });
                }
                Action::Accepted { .. } => {}
                Action::Rejected { token, .. } => {
                    if self.msgs.get(token as usize).is_some_and(|m| m.counted) {
                        self.stats.rejected += 1;
                    }
                }
                Action::Notice(n) => self.notice(i, n),
            }
        }
        if !evicted.is_empty() {
            self.queue.push_back((i, Event::Evicted(evicted)));
        }
        if !persisted.is_empty() {
            self.queue.push_back((i, Event::Persisted(persisted)));
        }
    }

    /// Ties the bundle a submission became to its message's sizes, before the insert is committed.
    fn note_submission(&mut self, i: u32, msg: u32, ops: &[WriteOp]) {
        let m = &self.msgs[msg as usize];
        let dest = &self.nodes[m.to as usize].app;
        for op in ops {
            if let WriteOp::Insert { meta, payload } = op
                && meta.destination == *dest
                && ipn_node(&meta.id.source) == Some(u64::from(i) + 1)
            {
                let real = match payload {
                    dtn_core::store::Payload::Bytes(_) => m.size.div_ceil(self.opts.payload_unit.max(1)).max(1),
                    _ => continue,
                };
                self.sizes.borrow_mut().insert(&meta.id, MsgSize { msg, virt: m.size, real });
                self.submitting = None;
                return;
            }
        }
    }

    fn departures(&mut self, i: u32) {
        let gone = self.nodes[i as usize].store.take_departures();
        if gone.is_empty() {
            return;
        }
        let sizes = self.sizes.borrow();
        for (id, received, why) in gone {
            let Some(ms) = sizes.get(&id) else { continue };
            let m = &self.msgs[ms.msg as usize];
            if !m.counted || m.to == i {
                continue;
            }
            match why {
                Gone::Dropped => self.stats.dropped += 1,
                Gone::Removed => self.stats.removed += 1,
            }
            let at = DtnTime(T0_MS + self.now / 1000);
            self.buffer_times.push(at.0.saturating_sub(received.0) as f64 / 1000.0);
        }
    }

    fn notice(&mut self, i: u32, n: Notice) {
        match n {
            Notice::Delivered { id } => {
                let Some(ms) = self.sizes.borrow().get(&id) else { return };
                let m = &mut self.msgs[ms.msg as usize];
                if m.to == i && m.delivered.is_none() {
                    m.delivered = Some(self.now);
                    m.hops = self.hops.get(&(i, ms.msg)).copied();
                    self.delivered_total += 1;
                    if m.counted {
                        self.stats.delivered += 1;
                    }
                }
            }
            // Counted for the first payload byte: after a cut, pieces of one message carry their own copy
            // counts (the kept head the copies handed over, the rest all of them), so "copies never exceed L"
            // holds byte by byte, not for every node holding some piece.
            Notice::Stored { id, .. } if id.fragment.is_none_or(|(offset, _)| offset == 0) => {
                let Some(ms) = self.sizes.borrow().get(&id) else { return };
                let m = &mut self.msgs[ms.msg as usize];
                if m.to != i && self.holders.insert((i, ms.msg)) {
                    m.holders += 1;
                }
            }
            Notice::Refused { .. } => self.refused = true,
            _ => {}
        }
    }

    fn link_up(&mut self, a: u32, b: u32, bit: u32, plan: Option<(u64, Micros)>) {
        let k = key(a, b);
        if let Some(l) = self.links.get_mut(&k) {
            l.ifaces |= bit;
            if bit == TRACE_BIT {
                l.trace_ups += 1;
            }
            if let Some((rate, delay)) = plan {
                l.plan_rate = rate;
                l.plan_delay = delay;
            }
            return;
        }
        self.contact_seq += 1;
        self.contacts += 1;
        let (plan_rate, plan_delay) = plan.unwrap_or((0, 0));
        let link = Link {
            contact: self.contact_seq,
            ifaces: bit,
            trace_ups: u32::from(bit == TRACE_BIT),
            plan_rate,
            plan_delay,
            queue: VecDeque::new(),
            sending: None,
            flying: VecDeque::new(),
        };
        let (rate, _) = self.rate_of(k, &link);
        self.links.insert(k, link);
        let info = LinkInfo { rate: Some(rate), durable_acks: true, ..LinkInfo::default() };
        let (ea, eb) = (self.nodes[a as usize].eid.clone(), self.nodes[b as usize].eid.clone());
        self.queue.push_back((a, Event::ContactUp { peer: eb, link: info }));
        self.queue.push_back((b, Event::ContactUp { peer: ea, link: info }));
    }

    /// Rate and delay of a contact now: its fastest interface that is up.
    fn rate_of(&self, (a, b): (u32, u32), l: &Link) -> (u64, Micros) {
        let mut best: Option<(u64, Micros)> = None;
        let mut consider = |r: (u64, Micros)| {
            if best.is_none_or(|b| r.0 > b.0) {
                best = Some(r);
            }
        };
        for (k, iface) in self.s.interfaces.iter().enumerate().take(30) {
            if l.ifaces & (1 << k) != 0 {
                consider((iface.rate, iface.delay));
            }
        }
        if l.ifaces & PLAN_BIT != 0 {
            consider((l.plan_rate, l.plan_delay));
        }
        if l.ifaces & TRACE_BIT != 0 {
            consider(self.trace_rate(a as usize, b as usize));
        }
        best.unwrap_or((1, 0))
    }

    /// A traced contact runs over the fastest interface both hosts have (or the slower host's best).
    fn trace_rate(&self, a: usize, b: usize) -> (u64, Micros) {
        let ifs = &self.s.interfaces;
        let (na, nb) = (&self.s.nodes[a].interfaces, &self.s.nodes[b].interfaces);
        let common = na.iter().filter(|k| nb.contains(k)).map(|&k| (ifs[k].rate, ifs[k].delay)).max_by_key(|r| r.0);
        common.unwrap_or_else(|| {
            let best = |n: &Vec<usize>| n.iter().map(|&k| (ifs[k].rate, ifs[k].delay)).max_by_key(|r| r.0);
            match (best(na), best(nb)) {
                (Some(x), Some(y)) => {
                    if x.0 <= y.0 {
                        x
                    } else {
                        y
                    }
                }
                (x, y) => x.or(y).unwrap_or((1, 0)),
            }
        })
    }

    fn link_down(&mut self, a: u32, b: u32, bit: u32) {
        let k = key(a, b);
        let Some(l) = self.links.get_mut(&k) else { return };
        if bit == TRACE_BIT {
            l.trace_ups = l.trace_ups.saturating_sub(1);
            if l.trace_ups > 0 {
                return;
            }
        }
        l.ifaces &= !bit;
        if l.ifaces != 0 {
            return;
        }
        let Some(l) = self.links.remove(&k) else { return };
        let now = self.now;
        for tx in l.sending.into_iter().chain(l.flying) {
            self.cut(tx, now);
        }
        for tx in l.queue {
            self.queue.push_back((tx.from, Event::TransferFailed { transfer: tx.transfer }));
        }
        let (ea, eb) = (self.nodes[a as usize].eid.clone(), self.nodes[b as usize].eid.clone());
        self.queue.push_back((a, Event::ContactDown { peer: eb }));
        self.queue.push_back((b, Event::ContactDown { peer: ea }));
    }

    /// A transmission cut by the end of its contact: the receiver keeps what arrived.
    fn cut(&mut self, tx: Tx, now: Micros) {
        let arrived = tx.arrived(now);
        let real = match &tx.msg {
            None => arrived.min(tx.bytes.len() as u64),
            Some(m) => {
                let limits = Limits { require_primary_crc: false, ..Limits::default() };
                let at = Bundle::decode_with(&tx.bytes, &limits)
                    .map(|b| b.payload().as_ptr() as u64 - tx.bytes.as_ptr() as u64)
                    .unwrap_or(tx.bytes.len() as u64);
                if arrived <= at {
                    arrived
                } else {
                    let (o, l) = tx.id.as_ref().and_then(|id| id.fragment).unwrap_or((0, m.real));
                    at + m.real_within(o, l, arrived - at)
                }
            }
        };
        let counted = tx.msg.is_some_and(|m| self.msgs[m.msg as usize].counted);
        if counted {
            self.stats.aborted += 1;
        }
        let real = real.min(tx.bytes.len() as u64);
        if real == 0 {
            self.queue.push_back((tx.from, Event::TransferFailed { transfer: tx.transfer }));
            return;
        }
        let from = self.nodes[tx.from as usize].eid.clone();
        let mut bytes = tx.bytes;
        bytes.truncate(real as usize);
        self.nodes[tx.to as usize].store.incoming_extra.set(arrived.saturating_sub(real));
        self.dispatch(tx.to, Event::ReceivedPartial { peer: from, bytes, skip: 0 });
        self.nodes[tx.to as usize].store.incoming_extra.set(0);
        self.queue.push_back((tx.from, Event::TransferCut { transfer: tx.transfer, durable: real }));
    }

    fn transmit(&mut self, i: u32, peer: Eid, transfer: u64, id: Option<BundleId>, bytes: Vec<u8>) {
        let to = ipn_node(&peer).map(|n| n.saturating_sub(1) as u32);
        let Some(to) = to.filter(|&t| (t as usize) < self.nodes.len()) else {
            self.queue.push_back((i, Event::TransferFailed { transfer }));
            return;
        };
        let k = key(i, to);
        if !self.links.contains_key(&k) {
            self.queue.push_back((i, Event::TransferFailed { transfer }));
            return;
        }
        let sizes = self.sizes.borrow();
        let msg = id.as_ref().and_then(|id| sizes.get(id));
        let vsize = match &id {
            Some(id) => sizes.virtual_size(id, bytes.len() as u64),
            None => bytes.len() as u64,
        };
        drop(sizes);
        if msg.is_none() {
            self.stats.control_bundles += 1;
            self.stats.control_bytes += vsize;
        }
        let hops = msg.and_then(|m| self.hops.get(&(i, m.msg)).copied()).unwrap_or(0);
        let tx = Tx { from: i, to, transfer, id, msg, bytes, vsize, start: 0, rate: 1, delay: 0, hops };
        if let Some(l) = self.links.get_mut(&k) {
            l.queue.push_back(tx);
            if l.sending.is_none() {
                self.start_next(k);
            }
        }
    }

    fn start_next(&mut self, k: (u32, u32)) {
        let Some(l) = self.links.get(&k) else { return };
        if l.sending.is_some() || l.queue.is_empty() {
            return;
        }
        let (rate, delay) = self.rate_of(k, l);
        let now = self.now;
        let Some(l) = self.links.get_mut(&k) else { return };
        let Some(mut tx) = l.queue.pop_front() else { return };
        tx.start = now;
        tx.rate = rate.max(1);
        tx.delay = delay;
        let dur = (u128::from(tx.vsize) * u128::from(SECOND)).div_ceil(u128::from(tx.rate)) as u64;
        let counted = tx.msg.is_some_and(|m| self.msgs[m.msg as usize].counted);
        l.sending = Some(tx);
        let contact = l.contact;
        if counted {
            self.stats.started += 1;
        }
        self.push(now + dur, Ev::SendDone { a: k.0, b: k.1, contact });
    }

    fn send_done(&mut self, a: u32, b: u32, contact: u64) {
        let k = (a, b);
        let Some(l) = self.links.get_mut(&k) else { return };
        if l.contact != contact {
            return;
        }
        let Some(tx) = l.sending.take() else { return };
        if tx.delay == 0 {
            self.arrive(tx);
        } else {
            let at = self.now + tx.delay;
            l.flying.push_back(tx);
            self.push(at, Ev::Arrive { a, b, contact });
        }
        self.start_next(k);
    }

    /// A whole bundle reached the receiver: it stores it (or refuses it), then the sender hears.
    fn arrive(&mut self, tx: Tx) {
        let from = self.nodes[tx.from as usize].eid.clone();
        let extra = tx.vsize.saturating_sub(tx.bytes.len() as u64);
        self.nodes[tx.to as usize].store.incoming_extra.set(extra);
        self.refused = false;
        self.dispatch(tx.to, Event::Received { peer: from, bytes: tx.bytes });
        self.nodes[tx.to as usize].store.incoming_extra.set(0);
        if self.refused {
            if tx.msg.is_some_and(|m| self.msgs[m.msg as usize].counted) {
                self.stats.refused += 1;
            }
            self.queue.push_back((tx.from, Event::TransferFailed { transfer: tx.transfer }));
            return;
        }
        if let Some(m) = tx.msg {
            self.hops.entry((tx.to, m.msg)).or_insert(tx.hops + 1);
            if self.msgs[m.msg as usize].counted {
                self.stats.relayed += 1;
                self.stats.relayed_bytes += tx.vsize;
            }
        }
        self.queue.push_back((tx.from, Event::TransferFinished { transfer: tx.transfer }));
    }

    fn sample(&mut self) {
        let n = self.nodes.len().max(1) as f64;
        let (mut sum, mut max, mut bytes) = (0.0f64, 0.0f64, 0u64);
        for node in &self.nodes {
            let u = node.store.usage();
            let pct = if u.quota > 0 { u.bytes as f64 * 100.0 / u.quota as f64 } else { 0.0 };
            sum += pct;
            max = max.max(pct);
            bytes += u.bytes;
        }
        let sample = Sample {
            time: self.now as f64 / 1e6,
            avg_pct: sum / n,
            max_pct: max,
            bytes,
            delivered: self.stats.delivered,
            created: self.stats.created,
        };
        if self.samples.last().is_some_and(|s| s.time == sample.time) {
            self.samples.pop();
        }
        self.samples.push(sample);
    }

    /// When the message called `name` was delivered, if it was.
    pub fn delivered_at(&self, name: &str) -> Option<Micros> {
        self.msgs.iter().find(|m| m.name == name).and_then(|m| m.delivered)
    }

    /// Node `i`'s store.
    pub fn store(&self, i: usize) -> &SimStore {
        &self.nodes[i].store
    }

    /// Builds the report.
    pub fn report(&self) -> Report {
        let mut stats = self.stats.clone();
        let mut lat: Vec<f64> = Vec::new();
        let mut hops: Vec<f64> = Vec::new();
        for m in self.msgs.iter().filter(|m| m.counted) {
            if let Some(d) = m.delivered {
                lat.push((d - m.created) as f64 / 1e6);
                hops.push(f64::from(m.hops.unwrap_or(1)));
            }
        }
        stats.copies_max = self.msgs.iter().filter(|m| m.counted).map(|m| u64::from(m.holders)).max().unwrap_or(0);
        stats.delivery_prob = if stats.created > 0 { stats.delivered as f64 / stats.created as f64 } else { 0.0 };
        stats.overhead_ratio = if stats.delivered > 0 {
            (stats.relayed as f64 - stats.delivered as f64) / stats.delivered as f64
        } else {
            0.0
        };
        (stats.latency_avg, stats.latency_med) = avg_med(&mut lat);
        (stats.hopcount_avg, stats.hopcount_med) = avg_med(&mut hops);
        let mut bt = self.buffer_times.clone();
        (stats.buffertime_avg, stats.buffertime_med) = avg_med(&mut bt);
        let name = |i: u32| self.s.nodes[i as usize].name.clone();
        Report {
            scenario: self.s.name.clone(),
            seed: self.seed,
            sim_time: self.now as f64 / 1e6,
            nodes: self.nodes.len(),
            contacts: self.contacts,
            events: self.events,
            stats,
            latencies: lat,
            occupancy: self.samples.clone(),
            node_stats: self
                .nodes
                .iter()
                .zip(&self.s.nodes)
                .map(|(n, spec)| {
                    let u = n.store.usage();
                    NodeStats {
                        name: spec.name.clone(),
                        routing: spec.routing.name(),
                        buffer: spec.buffer,
                        peak: n.store.peak(),
                        end: u.bytes,
                        bundles_end: u.bundles,
                    }
                })
                .collect(),
            messages: self
                .msgs
                .iter()
                .filter(|m| m.counted)
                .map(|m| MessageRow {
                    id: m.name.clone(),
                    from: name(m.from),
                    to: name(m.to),
                    size: m.size,
                    created: m.created as f64 / 1e6,
                    delivered: m.delivered.map(|d| d as f64 / 1e6),
                    hops: m.delivered.and(m.hops),
                })
                .collect(),
        }
    }

    /// Where each node holds what (for tests): (node, bundle IDs held).
    pub fn held(&self, i: usize) -> Vec<BundleId> {
        self.nodes[i].store.all().into_iter().map(|m| m.id).collect()
    }

    /// Wall-clock-free progress information: virtual now.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Bytes in use at node `i` (virtual).
    pub fn used(&self, i: usize) -> u64 {
        self.nodes[i].store.usage().bytes
    }
}

/// Virtual bytes on the way over node `i`'s slowest-to-drain link: the most any of its interfaces or
/// scheduled contacts has in flight at full rate.
fn bandwidth_delay(s: &Scenario, i: usize) -> u64 {
    let bdp = |rate: u64, delay: Micros| (u128::from(rate) * u128::from(delay) / u128::from(SECOND)) as u64;
    let ifaces = s.nodes[i].interfaces.iter().map(|&k| bdp(s.interfaces[k].rate, s.interfaces[k].delay));
    let plan = s.plan.iter().filter(|c| c.a == i || c.b == i).map(|c| bdp(c.rate, c.delay));
    ifaces.chain(plan).max().unwrap_or(0)
}

/// The scheduled contacts as a contact plan for contact-plan routing (both directions).
fn contact_plan(s: &Scenario) -> ContactPlan {
    let t = |us: Micros| DtnTime(T0_MS + us / 1000);
    let mut plan = ContactPlan::default();
    for c in &s.plan {
        for (x, y) in [(c.a, c.b), (c.b, c.a)] {
            plan.contacts.push(dtn_core::routing::PlannedContact {
                from: Eid::ipn(x as u64 + 1, 0),
                to: Eid::ipn(y as u64 + 1, 0),
                start: t(c.start),
                end: t(c.end),
                rate: c.rate,
                owlt_ms: c.delay / 1000,
            });
        }
    }
    plan
}
