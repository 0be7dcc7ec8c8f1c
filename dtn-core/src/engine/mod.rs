//! The router engine: one pure state machine that decides what a node does with every bundle.
//!
//! The engine is sans-IO. A shell (the daemon, the simulator, the phone library, a test) feeds it
//! [`Event`]s with the current time and executes the [`Action`]s it returns:
//!
//! ```text
//!   shell ── Event + now ──▶ Engine::handle ──▶ [Action] ──▶ shell: commit, transmit, deliver, arm timer
//!     ▲                         │ reads only                          │
//!     └── Persisted / Transfer… ┴── &dyn BundleStore ◀── commits ─────┘
//! ```
//!
//! * Time comes in with every event; randomness comes from a [`Rng`] seeded at construction; nothing
//!   iterates a hash map. The same seed and the same events give the same actions.
//! * The engine reads the store (cheap, synchronous) but never writes it: every change is an
//!   [`Action::Persist`]. Whatever must only happen once a change is durable (accepting custody, telling
//!   an application its bundle is safe, delivering, releasing the previous copy) waits for the matching
//!   [`Event::Persisted`], so the shell is free to group many batches into one commit.
//! * Routing decisions come from a [`RoutingAgent`]; the engine does the mechanics: contact summaries,
//!   the transmit queue, custody, delivery receipts, fragmentation, status reports.
//!
//! See `docs/engine.md` for the processing rules and `docs/protocol.md` for our extension formats.

mod contact;
mod custody;
mod event;
mod ingest;

use std::collections::{BTreeMap, BTreeSet};

pub use event::{Action, AduPart, BatchId, Event, Notice, PersistFailure, Piece, Submission, TransferId};

use crate::bpv7::admin::reason;
use crate::bpv7::{BundleId, CreationTimestamp, DtnTime, Eid, Limits};
use crate::rng::Rng;
use crate::routing::RoutingAgent;
use crate::store::{BundleMeta, BundleStore, Custody, Delivery, Priority, Summary, WriteOp};

use contact::{Contact, HelloDelivered, Transfer};

/// How a node behaves. [`Config::new`] gives defaults suited to a station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's ID (`dtn://name/` or `ipn:N.0`).
    pub node: Eid,
    /// Whether `now` is real DTN time. Without a clock, `now` must still be a time base that never goes
    /// backwards, across restarts too (the shell keeps it); bundles are created with time 0 and a bundle-age
    /// block.
    pub has_clock: bool,
    /// Lifetime of submitted bundles that do not set one.
    pub default_lifetime_ms: u64,
    /// Take custody of our own bundles and accept custody offered by peers.
    pub custody: bool,
    /// Submitted bundles with a larger payload are fragmented at the source (proactive fragmentation), so
    /// one large camera frame never holds up small sensor bundles for long.
    pub fragment_payload: Option<u64>,
    /// Transmissions outstanding per contact, and their bytes; more waiting bundles stay in the engine's
    /// priority queue so a newly arrived urgent bundle goes next. The byte bound is what keeps that wait short
    /// (one transmission goes out whatever its size); the count bound keeps the bookkeeping small. Each
    /// transmission waits for the peer's store to commit before it counts as done, so the window must cover
    /// a commit's latency at the link's rate: small bundles need many in flight.
    pub max_in_flight: usize,
    /// See [`Config::max_in_flight`].
    pub max_in_flight_bytes: u64,
    /// First custody retransmission timeout; doubled on each retry.
    pub custody_retry_ms: u64,
    /// Longest custody retransmission timeout.
    pub custody_retry_max_ms: u64,
    /// How long a delivery receipt is kept for a bundle this node never held (its lifetime is unknown).
    pub receipt_retention_ms: u64,
    /// How long to wait for a peer's hello before treating it as a foreign node (no summaries).
    pub hello_timeout_ms: u64,
    /// How often expired bundles are removed.
    pub sweep_interval_ms: u64,
    /// Hop limit put on submitted bundles, if any.
    pub hop_limit: Option<u8>,
    /// Decoding limits for bundles from peers.
    pub limits: Limits,
    /// Lowest priority a stored bundle needs to cross a [`LinkClass::Metered`](crate::routing::LinkClass)
    /// link, to any peer, its destination included (records the engine sends about a contact, such as
    /// hellos and offers, always go). Normal by default: sensor batches (normal) pay for the link, bulk
    /// data (camera frames) waits for a free one.
    pub metered_min_priority: Priority,
    /// Hand a whole bundle that arrives for a registered endpoint straight to the application
    /// ([`Action::DeliverDirect`]) instead of storing it first: once the application has it, only a
    /// tombstone is written. A shell turns this on only if it holds the peer's acknowledgement until then,
    /// and gives back ([`Event::DirectReturned`]) what it cannot hand over, which is then stored as usual.
    pub direct_delivery: bool,
}

impl Config {
    /// Defaults for a node called `node`.
    pub fn new(node: Eid) -> Self {
        Config {
            node: node.node_id(),
            has_clock: true,
            default_lifetime_ms: 7 * 86_400_000,
            custody: true,
            fragment_payload: Some(1 << 20),
            max_in_flight: 4096,
            max_in_flight_bytes: 8 << 20,
            custody_retry_ms: 30_000,
            custody_retry_max_ms: 3_600_000,
            receipt_retention_ms: 7 * 86_400_000,
            hello_timeout_ms: 2_000,
            sweep_interval_ms: 60_000,
            hop_limit: None,
            limits: Limits::default(),
            metered_min_priority: Priority::NORMAL,
            direct_delivery: false,
        }
    }
}

/// Node-state keys in the store.
mod keys {
    pub const SEQ: &[u8] = b"engine/seq";
    pub const ENDPOINTS: &[u8] = b"engine/endpoints";
    pub const RECEIPTS: &[u8] = b"engine/receipts";
    pub const ROUTING: &[u8] = b"engine/routing";
}

/// What to do once a batch is durable (or failed).
#[derive(Debug, Clone)]
enum After {
    /// A bundle from a peer (or a local originator) is stored.
    Stored {
        id: BundleId,
        from: Option<Eid>,
        /// Custodian to send an "accepted" signal to.
        custodian: Option<Eid>,
        local: bool,
        /// [`Engine::registrations`] when it was written: if an endpoint was registered since, a bundle stored
        /// for forwarding may be for it.
        registrations: u64,
        report_received: Option<ReportTo>,
    },
    /// A submission is stored.
    Submitted { token: u64, ids: Vec<BundleId>, local: bool, registrations: u64 },
    /// Stored bundles are now local deliveries (their endpoint was registered after they came): deliver them.
    Claimed(Vec<BundleId>),
    /// A locally made bundle (status report, routed signal) is stored.
    Originated { ids: Vec<BundleId> },
    /// Bundles to offer to peers in contact (split pieces, reassembled, custody reset).
    Enqueue(Vec<BundleId>),
    /// A delivered bundle's tombstone is durable.
    Delivered { id: BundleId, mode: crate::store::SeqMode, report: Option<ReportTo> },
    /// Notices to emit once durable.
    Notices(Vec<Notice>),
    /// Custody signals to send once durable: (custodian, disposition code, id).
    Signal(Eid, u64, BundleId),
    /// A spray transfer's copies are deducted in the store.
    CopiesGiven(BundleId),
    /// An operator's request is durable: answer it.
    Done { token: u64, ids: Vec<BundleId> },
    /// A reception status report to send once the bundle's fate is durable.
    ReportReceived(ReportTo),
}

/// A bundle handed straight to an application ([`Action::DeliverDirect`]), not stored, until the
/// application takes it or the shell gives it back.
#[derive(Debug, Clone)]
struct Direct {
    from: Eid,
    /// The custodian to tell once the application has it, if this node takes custody.
    custodian: Option<Eid>,
    expires_at: DtnTime,
    mode: crate::store::SeqMode,
    report_received: Option<ReportTo>,
    report_delivered: Option<ReportTo>,
}

/// Spray-and-wait copies of one bundle while transfers or store updates are under way. Kept in memory
/// because the store may show a count before or after a pending update lands, depending on the shell.
#[derive(Debug, Clone, Default)]
struct SprayHold {
    /// The count as of the last update handed to the store, while any is pending; every later update
    /// of the bundle's metadata carries it.
    count: Option<u32>,
    /// Count updates handed to the store and not yet durable.
    updates: u32,
    /// Handed to transfers in flight: given back if they fail or are cut.
    in_flight: u32,
}

/// Where and how to send a status report about a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportTo {
    report_to: Eid,
    id: BundleId,
    with_time: bool,
}

/// Timers the engine keeps; the shell sees only the earliest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    HelloTimeout(Eid),
    CustodyScan,
    Sweep,
}

/// Fragments of one bundle addressed to a local endpoint, waiting for the rest.
#[derive(Debug, Clone, Default)]
struct Reassembly {
    total: u64,
    pieces: BTreeMap<(u64, u64), BundleId>,
}

/// The router engine of one node. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    agent: Box<dyn RoutingAgent>,
    rng: Rng,
    now: DtnTime,
    started: bool,
    endpoints: Vec<Eid>,
    /// Endpoints registered since start: tells a bundle whose write was under way during a registration.
    registrations: u64,
    /// Bundles for an endpoint registered while they were being sent to a peer: claimed for local delivery
    /// once no transfer of them is left, so that the end of a transfer (custody, removal after forwarding)
    /// never acts on a bundle that has become a local delivery.
    deferred_claims: BTreeSet<BundleId>,
    next_seq: u64,
    next_batch: BatchId,
    next_transfer: TransferId,
    hello_seq: u64,
    receipts: Summary,
    /// The encoded delivered summary of our hellos, while neither the store's nor `receipts` changed.
    hello_delivered: Option<HelloDelivered>,
    pending: BTreeMap<BatchId, Vec<After>>,
    pending_ids: BTreeSet<BundleId>,
    /// Bundles whose removal is handed to the store but not yet durable, by batch: a metadata update
    /// read before the removal landed would fail the commit it is in.
    removing: BTreeSet<BundleId>,
    removals: BTreeMap<BatchId, Vec<BundleId>>,
    contacts: BTreeMap<Eid, Contact>,
    transfers: BTreeMap<TransferId, Transfer>,
    timers: BTreeSet<(DtnTime, Timer)>,
    armed: Option<DtnTime>,
    signals: BTreeMap<(Eid, u64), Vec<BundleId>>,
    new_receipts: Summary,
    reassembly: BTreeMap<(Eid, CreationTimestamp), Reassembly>,
    spray: BTreeMap<BundleId, SprayHold>,
    /// Bundles handed straight to applications and not yet taken or given back.
    direct: BTreeMap<BundleId, Direct>,
    /// Bundles an application took while their write (after being given back) was still under way.
    early_acks: BTreeSet<BundleId>,
    /// The [`Action::DeliverDirect`] in `out` that is to get the received bytes themselves, once the bundle
    /// decoded from them is out of the way (a large bundle is not copied for it).
    direct_fill: Option<usize>,
    /// While the shell groups events ([`Engine::begin_group`]): the one batch they all write to, once one
    /// of them has written.
    group: Option<Option<BatchId>>,
    out: Vec<Action>,
}

impl Engine {
    /// An engine for one node. `seed` determines every random choice it makes.
    pub fn new(cfg: Config, agent: Box<dyn RoutingAgent>, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        // Hellos and signals sent straight to a peer are never stored, so their sequence numbers need not be
        // durable, only unlikely to repeat after a restart.
        let hello_seq = rng.next_u64() >> 20;
        Engine {
            cfg,
            agent,
            rng,
            now: DtnTime(0),
            started: false,
            endpoints: Vec::new(),
            registrations: 0,
            deferred_claims: BTreeSet::new(),
            next_seq: 0,
            next_batch: 1,
            next_transfer: 1,
            hello_seq,
            receipts: Summary::new(),
            hello_delivered: None,
            pending: BTreeMap::new(),
            pending_ids: BTreeSet::new(),
            removing: BTreeSet::new(),
            removals: BTreeMap::new(),
            contacts: BTreeMap::new(),
            transfers: BTreeMap::new(),
            timers: BTreeSet::new(),
            armed: None,
            signals: BTreeMap::new(),
            new_receipts: Summary::new(),
            reassembly: BTreeMap::new(),
            spray: BTreeMap::new(),
            direct: BTreeMap::new(),
            early_acks: BTreeSet::new(),
            direct_fill: None,
            group: None,
            out: Vec::new(),
        }
    }

    /// This node's ID.
    pub fn node(&self) -> &Eid {
        &self.cfg.node
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The routing agent's name.
    pub fn routing(&self) -> &'static str {
        self.agent.name()
    }

    /// Peers currently in contact.
    pub fn peers(&self) -> impl Iterator<Item = &Eid> {
        self.contacts.keys()
    }

    /// Batches handed out and not yet reported durable.
    pub fn pending_batches(&self) -> usize {
        self.pending.len()
    }

    /// Processes one event at time `now` and returns what the shell must do, in order.
    pub fn handle(&mut self, store: &dyn BundleStore, now: DtnTime, event: Event) -> Vec<Action> {
        // Time never runs backwards inside the engine, whatever the shell's clock does.
        self.now = self.now.max(now);
        if !self.started && !matches!(event, Event::Start) {
            self.start(store);
        }
        match event {
            Event::Start => self.start(store),
            Event::Register(ep) => self.register(store, ep),
            Event::Unregister(ep) => self.unregister(ep),
            Event::Delete { id, token } => self.delete(store, id, token),
            Event::Submit(sub) => self.submit(sub),
            Event::SubmitBatch(subs) => self.submit_batch(subs),
            Event::DeliveryAcked { id } => self.delivery_acked(store, id),
            Event::Received { peer, bytes } => self.received(store, peer, bytes),
            Event::ReceivedPartial { peer, bytes, skip } => self.received_partial(store, peer, &bytes, skip),
            Event::DirectReturned { id, bytes } => self.direct_returned(store, id, &bytes),
            Event::ContactUp { peer, link } => self.contact_up(store, peer, link),
            Event::ContactDown { peer } => self.contact_down(peer),
            Event::ContactVolume { peer, volume } => self.contact_volume(store, peer, volume),
            Event::TransferFinished { transfer } => self.transfer_finished(store, transfer),
            Event::TransferFailed { transfer } => self.transfer_failed(store, transfer),
            Event::TransferCut { transfer, durable } => self.transfer_cut(store, transfer, durable),
            Event::Persisted(batches) => {
                for b in batches {
                    self.persisted(store, b);
                }
            }
            Event::PersistFailed { batch, failure } => self.persist_failed(batch, failure),
            Event::Evicted(metas) => self.evicted(metas),
            Event::Timer => self.timer(store),
        }
        if self.group.is_none() {
            self.flush();
        }
        std::mem::take(&mut self.out)
    }

    /// Starts a group of events that share one store batch: until [`Engine::end_group`], every
    /// [`Action::Persist`] carries the same batch ID, and the shell must commit the operations of all of them
    /// together, in the order given, as one batch, after `end_group`. Custody signals, receipts and offers
    /// are sent once for the group, and the timer is set at its end.
    ///
    /// A shell that drains a burst of inputs (many small bundles from a peer, acknowledgements, deliveries
    /// taken) saves a store transaction, a commit callback and a persisted event per input this way. The
    /// price is that the group's writes succeed or fail together, so a store that runs out of room refuses
    /// the whole group, not only the bundle that did not fit; the engine's room check before storing makes
    /// that rare.
    pub fn begin_group(&mut self) {
        self.group.get_or_insert(None);
    }

    /// Ends the group begun by [`Engine::begin_group`] and returns what is left to do for it (messages to
    /// peers, the timer). Does nothing outside a group.
    pub fn end_group(&mut self) -> Vec<Action> {
        if self.group.take().is_none() {
            return Vec::new();
        }
        self.flush();
        std::mem::take(&mut self.out)
    }

    /// The batch the current group writes to, if any of its events has written.
    pub fn group_batch(&self) -> Option<BatchId> {
        self.group.flatten()
    }

    fn flush(&mut self) {
        self.flush_signals();
        self.flush_receipts();
        self.flush_offers();
        self.rearm();
    }

    fn start(&mut self, store: &dyn BundleStore) {
        if self.started {
            return;
        }
        self.started = true;
        match store.state(keys::SEQ) {
            Ok(Some(v)) => self.next_seq = v.try_into().map(u64::from_be_bytes).unwrap_or(0),
            Ok(None) => {}
            Err(e) => self.store_error(e),
        }
        match store.state(keys::ENDPOINTS) {
            Ok(Some(v)) => self.endpoints = decode_eids(&v),
            Ok(None) => {}
            Err(e) => self.store_error(e),
        }
        match store.state(keys::RECEIPTS) {
            Ok(Some(v)) => match Summary::decode(&v) {
                Ok(s) => {
                    self.receipts = s;
                    self.hello_delivered = None;
                }
                Err(e) => self.notice(Notice::StoreError(format!("delivery receipts unreadable, starting empty: {e}"))),
            },
            Ok(None) => {}
            Err(e) => self.store_error(e),
        }
        match store.state(keys::ROUTING) {
            Ok(Some(v)) => {
                if let Err(e) = self.agent.load(&v) {
                    self.notice(Notice::StoreError(format!("routing state unreadable, starting fresh: {e}")));
                }
            }
            Ok(None) => {}
            Err(e) => self.store_error(e),
        }
        for ep in self.endpoints.clone() {
            // Claims made after a registration are written on their own; a crash may have lost them.
            let (ops, ids) = self.deliver_waiting(store, &ep);
            if !ops.is_empty() {
                self.persist(ops, vec![After::Claimed(ids)]);
            }
        }
        self.schedule(self.now_plus(self.cfg.sweep_interval_ms), Timer::Sweep);
        self.schedule_custody_scan(store);
    }

    /// Registers `ep`. Bundles for it already here are delivered: those marked for local delivery when they
    /// came (an endpoint of this node's ID) at once, and those stored for forwarding because the endpoint was
    /// not registered then (a collection endpoint, say) once they are marked local, in the same write as the
    /// registration.
    fn register(&mut self, store: &dyn BundleStore, ep: Eid) {
        let mut ops = Vec::new();
        if !self.endpoints.contains(&ep) {
            self.endpoints.push(ep.clone());
            self.endpoints.sort();
            self.registrations += 1;
            ops.push(WriteOp::PutState { key: keys::ENDPOINTS.to_vec(), value: Some(encode_eids(&self.endpoints)) });
        }
        let (mut claims, ids) = self.deliver_waiting(store, &ep);
        ops.append(&mut claims);
        if !ops.is_empty() {
            let after = if ids.is_empty() { Vec::new() } else { vec![After::Claimed(ids)] };
            self.persist(ops, after);
        }
    }

    /// Claims the stored bundles `ids` for local delivery if their destination is registered here now;
    /// returns those it claimed.
    pub(super) fn claim_ids(&mut self, store: &dyn BundleStore, ids: &[BundleId]) -> Vec<BundleId> {
        let mut metas = Vec::new();
        for id in ids {
            match store.meta(id) {
                Ok(Some(m))
                    if m.delivery == Delivery::Forward
                        && self.endpoints.contains(&m.destination)
                        && !self.removing.contains(id) =>
                {
                    metas.push(m);
                }
                Ok(_) => {}
                Err(e) => self.store_error(e),
            }
        }
        let (ops, ids) = claim(metas);
        if !ops.is_empty() {
            self.persist(ops, vec![After::Claimed(ids.clone())]);
        }
        ids
    }

    fn unregister(&mut self, ep: Eid) {
        if let Some(i) = self.endpoints.iter().position(|e| *e == ep) {
            self.endpoints.remove(i);
            let ops =
                vec![WriteOp::PutState { key: keys::ENDPOINTS.to_vec(), value: Some(encode_eids(&self.endpoints)) }];
            self.persist(ops, Vec::new());
        }
    }

    fn delete(&mut self, store: &dyn BundleStore, id: BundleId, token: u64) {
        match store.meta(&id) {
            Ok(Some(_)) if !self.pending_ids.contains(&id) => {
                if let Some(r) = self.report_wanted(store, &id, crate::bpv7::BundleFlags::REPORT_DELETION) {
                    self.status_report(r, StatusKind::Deleted, reason::NO_INFO);
                }
                let tombstone = Some(crate::store::TombstoneReason::Deleted(reason::NO_INFO as u8));
                let ops = vec![WriteOp::Remove { id: id.clone(), tombstone }];
                let notice = Notice::Deleted { id: id.clone(), reason: reason::NO_INFO };
                self.persist(ops, vec![After::Notices(vec![notice]), After::Done { token, ids: vec![id] }]);
            }
            Ok(_) => self.out.push(Action::Rejected { token, reason: format!("{id} is not stored here") }),
            Err(e) => self.out.push(Action::Rejected { token, reason: format!("store: {e}") }),
        }
    }

    /// Whether a bundle for `dest` is delivered here.
    fn is_local(&self, dest: &Eid) -> bool {
        self.endpoints.contains(dest) || dest.node_id() == self.cfg.node
    }

    /// Goes through the stored bundles for `ep`: those waiting for local delivery are handed to the
    /// application (fragments are (re)considered for reassembly), and those stored for forwarding because `ep`
    /// was not registered when they came are returned as claims: the writes that make them local deliveries,
    /// and their IDs. Bundles being sent are left for the end of their transfers ([`Engine::deferred_claims`]);
    /// bundles being written or removed are not touched (a write under way is looked at once durable).
    fn deliver_waiting(&mut self, store: &dyn BundleStore, ep: &Eid) -> (Vec<WriteOp>, Vec<BundleId>) {
        let sending: BTreeSet<BundleId> = self.transfers.values().map(|t| t.id.clone()).collect();
        let mut claims = Vec::new();
        let mut after = None;
        loop {
            let page = match store.by_destination(ep, after, 256) {
                Ok(p) => p,
                Err(e) => {
                    self.store_error(e);
                    break;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.arrival);
            for m in page {
                if self.removing.contains(&m.id) || self.pending_ids.contains(&m.id) {
                    continue;
                }
                match m.delivery {
                    Delivery::LocalPending if m.id.fragment.is_some() => {
                        self.note_fragment(store, &m.id, m.total_adu_len.unwrap_or(0));
                    }
                    Delivery::LocalPending => {
                        self.out.push(Action::Deliver { endpoint: ep.clone(), id: m.id, pieces: Vec::new() });
                    }
                    Delivery::Forward if sending.contains(&m.id) => {
                        self.deferred_claims.insert(m.id);
                    }
                    Delivery::Forward => claims.push(m),
                    Delivery::Delivered => {}
                }
            }
        }
        claim(claims)
    }

    fn delivery_acked(&mut self, store: &dyn BundleStore, id: BundleId) {
        if let Some(d) = self.direct.remove(&id) {
            return self.direct_taken(id, d);
        }
        if self.pending_ids.contains(&id) {
            // Given back and being stored: taken once the write lands.
            self.early_acks.insert(id);
            return;
        }
        if id.fragment.is_none()
            && let Some(pieces) = self.assembled(&id)
        {
            return self.pieces_delivered(store, id, pieces);
        }
        let meta = match store.meta(&id) {
            Ok(Some(m)) if m.delivery == Delivery::LocalPending => m,
            Ok(_) => return,
            Err(e) => return self.store_error(e),
        };
        let report = self.report_wanted(store, &id, crate::bpv7::BundleFlags::REPORT_DELIVERY);
        let ops = vec![WriteOp::Remove { id: id.clone(), tombstone: Some(crate::store::TombstoneReason::Delivered) }];
        self.persist(ops, vec![After::Delivered { id, mode: meta.seq_mode, report }]);
    }

    /// A bundle delivered in pieces: its fragments go, and the whole bundle's tombstone stands for them
    /// (later copies of any fragment are recognised as delivered).
    fn pieces_delivered(&mut self, store: &dyn BundleStore, id: BundleId, pieces: Vec<Piece>) {
        let Some(first) = pieces.first() else { return };
        let meta = match store.meta(&first.id) {
            Ok(Some(m)) if m.delivery == Delivery::LocalPending => m,
            Ok(_) => return,
            Err(e) => return self.store_error(e),
        };
        let report = self
            .report_wanted(store, &first.id, crate::bpv7::BundleFlags::REPORT_DELIVERY)
            .map(|r| ReportTo { id: id.clone(), ..r });
        // Every fragment goes, also those wholly overlapped by others (not among the pieces).
        let Some(entry) = self.reassembly.remove(&(id.source.clone(), id.creation)) else { return };
        let tombstone =
            |reason| crate::store::Tombstone { reason, expires_at: meta.expires_at, seq_mode: meta.seq_mode };
        let mut ops: Vec<WriteOp> = entry
            .pieces
            .into_values()
            .map(|id| WriteOp::Remove { id, tombstone: Some(crate::store::TombstoneReason::Delivered) })
            .collect();
        ops.push(WriteOp::Tombstone { id: id.clone(), tombstone: tombstone(crate::store::TombstoneReason::Delivered) });
        self.persist(ops, vec![After::Delivered { id, mode: meta.seq_mode, report }]);
    }

    /// Emits a batch and remembers what to do once it is durable.
    fn persist(&mut self, mut ops: Vec<WriteOp>, after: Vec<After>) -> BatchId {
        let batch = match self.group {
            Some(Some(b)) => b,
            _ => {
                let b = self.next_batch;
                self.next_batch += 1;
                if let Some(g) = &mut self.group {
                    *g = Some(b);
                }
                b
            }
        };
        // A bundle already being removed is neither updated nor removed again: either would fail the batch
        // (and with it a whole group of other writes) once the first removal has landed.
        ops.retain(|op| !matches!(op, WriteOp::Update(m) if self.removing.contains(&m.id)));
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(ops.len());
        for mut op in ops {
            match &mut op {
                WriteOp::Insert { meta, .. } => {
                    self.pending_ids.insert(meta.id.clone());
                }
                WriteOp::Remove { id, .. } | WriteOp::Tombstone { id, .. } => {
                    if self.removing.insert(id.clone()) {
                        removed.push(id.clone());
                    } else if matches!(op, WriteOp::Remove { .. }) {
                        continue;
                    }
                }
                // Metadata read before a pending spray update landed must not put the old count back.
                WriteOp::Update(meta) => {
                    if let Some(count) = self.spray.get(&meta.id).and_then(|h| h.count) {
                        meta.copies = count;
                    }
                }
                _ => {}
            }
            kept.push(op);
        }
        let ops = kept;
        if !removed.is_empty() {
            self.removals.entry(batch).or_default().extend(removed);
        }
        self.out.push(Action::Persist { batch, ops });
        self.pending.entry(batch).or_default().extend(after);
        batch
    }

    /// A batch's removals are settled (done, or failed and the bundles still there).
    fn removed(&mut self, batch: BatchId) {
        for id in self.removals.remove(&batch).unwrap_or_default() {
            self.removing.remove(&id);
        }
    }

    fn persisted(&mut self, store: &dyn BundleStore, batch: BatchId) {
        self.removed(batch);
        let Some(after) = self.pending.remove(&batch) else { return };
        let mut enqueue = Vec::new();
        let mut claims = Vec::new();
        for a in after {
            match a {
                After::Stored { id, from, custodian, local, registrations, report_received } => {
                    self.pending_ids.remove(&id);
                    if let Some(from) = from {
                        self.notice(Notice::Stored { id: id.clone(), from });
                    }
                    if let Some(c) = custodian {
                        self.notice(Notice::CustodyAccepted { id: id.clone() });
                        self.queue_signal(c, 0, id.clone());
                    }
                    if let Some(r) = report_received {
                        self.status_report(r, StatusKind::Received, 0);
                    }
                    if local && self.early_acks.remove(&id) {
                        self.delivery_acked(store, id);
                    } else if local {
                        self.deliver_stored(store, &id);
                    } else if registrations != self.registrations {
                        claims.push(id);
                    } else {
                        enqueue.push(id);
                    }
                }
                After::Submitted { token, ids, local, registrations } => {
                    for id in &ids {
                        self.pending_ids.remove(id);
                    }
                    if local {
                        for id in &ids {
                            self.deliver_stored(store, id);
                        }
                    } else if registrations != self.registrations {
                        claims.extend(ids.iter().cloned());
                    } else {
                        enqueue.extend(ids.iter().cloned());
                    }
                    self.out.push(Action::Accepted { token, ids });
                }
                After::Claimed(ids) => {
                    for id in &ids {
                        self.deliver_stored(store, id);
                    }
                }
                After::Originated { ids } => {
                    for id in &ids {
                        self.pending_ids.remove(id);
                    }
                    enqueue.extend(ids);
                }
                After::Enqueue(ids) => {
                    for id in &ids {
                        self.pending_ids.remove(id);
                    }
                    enqueue.extend(ids);
                }
                After::Delivered { id, mode, report } => {
                    self.pending_ids.remove(&id);
                    self.new_receipts.insert(&id, mode);
                    self.notice(Notice::Delivered { id: id.clone() });
                    if let Some(r) = report {
                        self.status_report(r, StatusKind::Delivered, 0);
                    }
                }
                After::Notices(ns) => {
                    for n in ns {
                        self.notice(n);
                    }
                }
                After::Signal(custodian, code, id) => self.queue_signal(custodian, code, id),
                After::Done { token, ids } => self.out.push(Action::Accepted { token, ids }),
                After::ReportReceived(r) => self.status_report(r, StatusKind::Received, 0),
                After::CopiesGiven(id) => {
                    if let Some(h) = self.spray.get_mut(&id) {
                        h.updates = h.updates.saturating_sub(1);
                    }
                    self.spray_settled(&id);
                }
            }
        }
        if !claims.is_empty() {
            // Written while an endpoint was being registered: those for it are claimed, the rest offered.
            let claimed = self.claim_ids(store, &claims);
            enqueue.extend(claims.into_iter().filter(|id| !claimed.contains(id)));
        }
        if !enqueue.is_empty() {
            self.offer(store, &enqueue);
        }
    }

    fn persist_failed(&mut self, batch: BatchId, failure: PersistFailure) {
        self.removed(batch);
        let Some(after) = self.pending.remove(&batch) else { return };
        let reason = match &failure {
            PersistFailure::Full => "store full".to_string(),
            PersistFailure::Other(e) => e.clone(),
        };
        self.notice(Notice::StoreError(format!("commit failed: {reason}")));
        for a in after {
            match a {
                After::Stored { id, custodian, .. } => {
                    self.pending_ids.remove(&id);
                    self.early_acks.remove(&id);
                    let refusal = match failure {
                        PersistFailure::Full => crate::proto::Refusal::StoreFull,
                        PersistFailure::Other(_) => custody::STORE_ERROR,
                    };
                    self.notice(Notice::Refused { id: id.clone(), reason: refusal });
                    if let Some(c) = custodian {
                        self.queue_signal(c, custody::refusal_code(refusal), id);
                    }
                }
                After::Submitted { token, ids, .. } => {
                    for id in &ids {
                        self.pending_ids.remove(id);
                    }
                    self.out.push(Action::Rejected { token, reason: reason.clone() });
                }
                After::Originated { ids } | After::Enqueue(ids) => {
                    for id in &ids {
                        self.pending_ids.remove(id);
                    }
                }
                // Still stored for forwarding: a later registration or restart claims them again.
                // A direct delivery's tombstone failed: the shell refuses the transfer and the peer sends it again.
                After::Delivered { id, .. } => {
                    self.pending_ids.remove(&id);
                }
                After::Notices(_) | After::Signal(..) | After::Claimed(_) | After::ReportReceived(_) => {}
                // The copies were handed over all the same: they stay deducted (the sweep forgets them once the
                // bundle is gone).
                After::CopiesGiven(..) => {}
                After::Done { token, .. } => self.out.push(Action::Rejected { token, reason: reason.clone() }),
            }
        }
    }

    /// Bundles the store evicted: expired ones count as lifetime expiry (RFC 9171 §5.13), others as
    /// depleted storage. A bundle in custody is never evicted before it expires; if a store did, that is
    /// a broken promise and reported as a store error.
    fn evicted(&mut self, metas: Vec<BundleMeta>) {
        for m in metas {
            let expired = m.expires_at <= self.now;
            if m.custody.is_custodian() && !expired {
                self.notice(Notice::StoreError(format!("the store evicted {} while this node held custody", m.id)));
            }
            self.spray.remove(&m.id);
            let reason = if expired { reason::LIFETIME_EXPIRED } else { reason::DEPLETED_STORAGE };
            self.notice(Notice::Deleted { id: m.id, reason });
        }
    }

    /// Delivers a stored bundle now if its endpoint is registered (otherwise it waits for registration).
    fn deliver_stored(&mut self, store: &dyn BundleStore, id: &BundleId) {
        let meta = match store.meta(id) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return self.store_error(e),
        };
        if meta.delivery != Delivery::LocalPending {
            return;
        }
        if id.fragment.is_some() {
            self.note_fragment(store, id, meta.total_adu_len.unwrap_or(0));
            return;
        }
        self.drop_pieces(&(id.source.clone(), id.creation));
        if let Some(ep) = self.local_endpoint(&meta.destination) {
            self.out.push(Action::Deliver { endpoint: ep, id: id.clone(), pieces: Vec::new() });
        }
    }

    /// The registered endpoint a bundle for `dest` goes to.
    fn local_endpoint(&self, dest: &Eid) -> Option<Eid> {
        // Bundles for the bare node ID wait until an application registers it; admin records never get here.
        self.endpoints.contains(dest).then(|| dest.clone())
    }

    fn timer(&mut self, store: &dyn BundleStore) {
        let now = self.now;
        let due: Vec<(DtnTime, Timer)> = self.timers.iter().take_while(|(t, _)| *t <= now).cloned().collect();
        for d in &due {
            self.timers.remove(d);
        }
        for (_, t) in due {
            match t {
                Timer::HelloTimeout(peer) => self.hello_timeout(store, peer),
                Timer::CustodyScan => self.custody_scan(store),
                Timer::Sweep => {
                    self.sweep(store);
                    self.schedule(self.now_plus(self.cfg.sweep_interval_ms), Timer::Sweep);
                }
            }
        }
    }

    fn schedule(&mut self, at: DtnTime, t: Timer) {
        self.timers.insert((at, t));
    }

    fn unschedule(&mut self, t: &Timer) {
        self.timers.retain(|(_, x)| x != t);
    }

    fn rearm(&mut self) {
        let next = self.timers.iter().next().map(|(t, _)| *t);
        if next != self.armed {
            self.armed = next;
            if let Some(t) = next {
                self.out.push(Action::SetTimer(t));
            }
        }
    }

    fn now_plus(&self, ms: u64) -> DtnTime {
        DtnTime(self.now.0.saturating_add(ms))
    }

    fn notice(&mut self, n: Notice) {
        self.out.push(Action::Notice(n));
    }

    fn store_error(&mut self, e: crate::store::StoreError) {
        self.notice(Notice::StoreError(e.to_string()));
    }

    /// A new never-reused sequence number, with the op that makes it durable.
    fn take_seq(&mut self) -> (u64, WriteOp) {
        let seq = self.next_seq;
        self.next_seq += 1;
        (seq, self.seq_state())
    }

    /// The write that makes the sequence counter durable as it stands.
    fn seq_state(&self) -> WriteOp {
        WriteOp::PutState { key: keys::SEQ.to_vec(), value: Some(self.next_seq.to_be_bytes().to_vec()) }
    }

    /// The current creation time: now, or 0 without a clock.
    fn creation_time(&self) -> DtnTime {
        if self.cfg.has_clock { self.now } else { DtnTime(0) }
    }
}

/// Which status a report asserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusKind {
    Received,
    Forwarded,
    Delivered,
    Deleted,
}

fn encode_eids(eids: &[Eid]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in eids {
        e.encode(&mut out);
    }
    out
}

fn decode_eids(mut bytes: &[u8]) -> Vec<Eid> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match Eid::decode_prefix(bytes) {
            Ok((e, n)) if n > 0 => {
                out.push(e);
                bytes = &bytes[n..];
            }
            _ => break,
        }
    }
    out
}

/// Marks bundles for local delivery, held like custody from now on so the store never evicts them before
/// the application has them (a custody transfer under way ends here: this node delivers the bundle).
fn claim(metas: Vec<BundleMeta>) -> (Vec<WriteOp>, Vec<BundleId>) {
    let ids = metas.iter().map(|m| m.id.clone()).collect();
    let ops = metas
        .into_iter()
        .map(|mut m| {
            m.delivery = Delivery::LocalPending;
            m.custody = Custody::Held;
            WriteOp::Update(m)
        })
        .collect();
    (ops, ids)
}
